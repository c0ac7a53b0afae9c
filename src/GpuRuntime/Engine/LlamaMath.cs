using System.Runtime.CompilerServices;
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

    /// <summary>RMSNorm's factor from a row's sum of squares (summed in double, as ggml does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RmsScale(double sumOfSquares, int dim, float eps)
    {
        float mean = (float)(sumOfSquares / dim);
        return 1f / MathF.Sqrt(mean + eps);
    }

    /// <summary>The factor on q · k: 1 / √headDim.</summary>
    public static float AttentionScale(int headDim) => 1f / MathF.Sqrt(headDim);

    /// <summary>
    /// RoPE's cos and sin at <paramref name="position"/> for each of the headDim / 2 rotated pairs: cs[2i] = cos,
    /// cs[2i + 1] = sin. The angle advances by repeated multiplication, as ggml's rope cache does, so the angles are
    /// llama.cpp's to the bit rather than a power per pair that differs in the last bits.
    /// </summary>
    public static void RopeCosSin(ModelConfig c, int position, Span<float> cs)
    {
        float thetaScale = MathF.Pow(c.RopeFreqBase, -2f / c.RopeDim);
        var factors = c.RopeFreqFactors;
        float theta = position;
        for (int i = 0; i < c.HeadDim / 2; i++)
        {
            float angle = factors is null ? theta : theta / factors[i];
            cs[2 * i] = MathF.Cos(angle);
            cs[2 * i + 1] = MathF.Sin(angle);
            theta *= thetaScale;
        }
    }
}
