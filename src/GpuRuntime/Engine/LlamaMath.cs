using System.Runtime.CompilerServices;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.Models;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// The scalar math both backends must do alike, written once: the CPU backend calls it on the host, the ILGPU kernels
/// call it on the device (ILGPU compiles static methods it reaches), so the two cannot drift apart.
/// </summary>
public static class LlamaMath
{
    /// <summary>silu(gate) * up</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SwiGlu(float gate, float up) => gate / (1f + MathF.Exp(-gate)) * up;

    /// <summary>
    /// gelu(gate) * up with ggml's CPU GELU: the tanh approximation looked up in an f16 table (GGML_GELU_FP16), so
    /// the input and the GELU are both rounded to f16, and inputs beyond ±10 are 0 or passed through.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeGlu(float gate, float up)
    {
        if (gate <= -10f) return 0f;
        if (gate >= 10f) return gate * up;
        float x = DeviceMath.RoundToHalf(gate);
        // ggml's table was built with 1 + a·x·x contracted into one fused multiply-add: without it, one entry of
        // the 63k differs (gelu(-1.9990234); GeluTableTests)
        float inner = MathF.FusedMultiplyAdd(0.044715f * x, x, 1f);
        float gelu = 0.5f * x * (1f + MathF.Tanh(0.7978845608028654f * x * inner));
        return DeviceMath.RoundToHalf(gelu) * up;
    }

    /// <summary>cap · tanh(x / cap) as ggml computes it: a scale by the float 1/cap, tanhf, a scale by cap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SoftCap(float x, float inverseCap, float cap) => MathF.Tanh(x * inverseCap) * cap;

    /// <summary>RMSNorm's factor from a row's sum of squares (summed in double, as ggml does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RmsScale(double sumOfSquares, int dim, float eps)
    {
        float mean = (float)(sumOfSquares / dim);
        return 1f / MathF.Sqrt(mean + eps);
    }

    /// <summary>
    /// RoPE's cos and sin of base <paramref name="freqBase"/> and linear scale <paramref name="freqScale"/> (1 / the
    /// factor; 1 for none) at <paramref name="position"/> for each of the
    /// RopeDim / 2 rotated pairs (fewer than headDim / 2 with partial RoPE): cs[2i] = cos, cs[2i + 1] = sin. The
    /// angle advances by repeated multiplication, as ggml's rope cache does, so the angles are llama.cpp's to the bit
    /// rather than a power per pair that differs in the last bits. Both are then multiplied by the config's
    /// attention factor (ggml's mscale in rope_yarn).
    /// </summary>
    public static void RopeCosSin(ModelConfig c, float freqBase, float freqScale, int position, Span<float> cs)
    {
        float thetaScale = MathF.Pow(freqBase, -2f / c.RopeDim);
        var factors = c.RopeFreqFactors;
        float mscale = c.RopeAttentionFactor;
        float theta = position;
        for (int i = 0; i < c.RopeDim / 2; i++)
        {
            // ggml's rope_yarn without extrapolation: freq_scale · (theta / freq_factor)
            float angle = freqScale * (factors is null ? theta : theta / factors[i]);
            cs[2 * i] = MathF.Cos(angle) * mscale;
            cs[2 * i + 1] = MathF.Sin(angle) * mscale;
            theta *= thetaScale;
        }
    }
}
