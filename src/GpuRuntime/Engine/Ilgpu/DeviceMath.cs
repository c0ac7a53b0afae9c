using System.Runtime.CompilerServices;
using ILGPU;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>Sixteen bytes, read with one vectorised load from a 16-byte aligned view.</summary>
struct U4 { public uint X, Y, Z, W; }

/// <summary>Eight bytes (eight q8_0 quants).</summary>
struct U2 { public uint X, Y; }

struct Float4 { public float X, Y, Z, W; }

struct Float8 { public float V0, V1, V2, V3, V4, V5, V6, V7; }

/// <summary>
/// Scalar helpers usable inside kernels on every accelerator. Conversions are done on the bits so the CPU accelerator
/// and CUDA round exactly as System.Half and ggml do (round to nearest even), independent of hardware conversion modes.
/// </summary>
static class DeviceMath
{
    /// <summary>f16 bits → f32, exact for normal, subnormal, infinite and NaN halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToFloat(uint h)
    {
        uint sign = (h & 0x8000u) << 16, mag = h & 0x7FFFu;
        // shifting the 15 magnitude bits into an f32 and multiplying by 2^112 re-biases the exponent
        uint bits = Interop.FloatAsInt(Interop.IntAsFloat(mag << 13) * 5.192297e33f);
        if (mag >= 0x7C00u) bits = 0x7F800000u | (mag & 0x3FFu) << 13;
        return Interop.IntAsFloat(bits | sign);
    }

    /// <summary>f32 → f16 bits with round to nearest even, as (Half)x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint FloatToHalf(float f)
    {
        uint x = Interop.FloatAsInt(f);
        uint sign = (x >> 16) & 0x8000u, a = x & 0x7FFFFFFFu;
        if (a >= 0x7F800000u) return sign | (a > 0x7F800000u ? 0x7E00u : 0x7C00u);
        if (a >= 0x477FF000u) return sign | 0x7C00u; // rounds to infinity
        if (a < 0x38800000u)
        {
            // result is subnormal: adding 0.5 lines the half's last bit up with the f32's, and the FPU rounds to even
            float t = Interop.IntAsFloat(a) + 0.5f;
            return sign | (Interop.FloatAsInt(t) - 0x3F000000u);
        }
        uint odd = (a >> 13) & 1u;
        a += 0xC8000FFFu + odd; // re-bias the exponent by -112 and add the rounding bias
        return sign | (a >> 13);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToHalf(float f) => HalfToFloat(FloatToHalf(f));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToFloat(uint b) => Interop.IntAsFloat(b << 16);

    /// <summary>Round to nearest even to bf16 and back, as ggml_compute_fp32_to_bf16 (NaN stays NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToBf16(float f)
    {
        uint u = Interop.FloatAsInt(f);
        uint b = (u & 0x7FFFFFFFu) > 0x7F800000u ? (u >> 16) | 64u : (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
        return Interop.IntAsFloat((b & 0xFFFFu) << 16);
    }

    /// <summary>MathF.Round(v) (to nearest even, as ggml's nearest_int) for |v| ≤ 2^31, without a float add that
    /// could round.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundEven(float v)
    {
        float t = (int)v;
        float frac = v - t; // exact
        bool odd = ((int)t & 1) != 0;
        if (frac > 0.5f || frac == 0.5f && odd) t += 1f;
        if (frac < -0.5f || frac == -0.5f && odd) t -= 1f;
        return t;
    }

    /// <summary>An unsigned key whose ascending order is the float's descending order (the CPU sampler's sort
    /// key).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint DescendingKey(float f)
    {
        uint u = Interop.FloatAsInt(f);
        uint ascending = (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
        return ~ascending;
    }

    /// <summary>a · b + c rounded once, as the cpu backend's fused multiply-add: the product of two floats is exact
    /// in a double, so only the double sum's rounding to float can differ (when it lands on a float tie, rarely).
    /// ILGPU compiles MathF.FusedMultiplyAdd for CUDA as a call of an undefined function.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Fma(float a, float b, float c) => (float)((double)a * b + c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot8(in Float8 w, in Float4 a, in Float4 b) =>
        w.V0 * a.X + w.V1 * a.Y + w.V2 * a.Z + w.V3 * a.W + w.V4 * b.X + w.V5 * b.Y + w.V6 * b.Z + w.V7 * b.W;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Halves(in U4 u) => new()
    {
        V0 = HalfToFloat(u.X & 0xFFFFu), V1 = HalfToFloat(u.X >> 16),
        V2 = HalfToFloat(u.Y & 0xFFFFu), V3 = HalfToFloat(u.Y >> 16),
        V4 = HalfToFloat(u.Z & 0xFFFFu), V5 = HalfToFloat(u.Z >> 16),
        V6 = HalfToFloat(u.W & 0xFFFFu), V7 = HalfToFloat(u.W >> 16),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Bf16s(in U4 u) => new()
    {
        V0 = Bf16ToFloat(u.X & 0xFFFFu), V1 = Bf16ToFloat(u.X >> 16),
        V2 = Bf16ToFloat(u.Y & 0xFFFFu), V3 = Bf16ToFloat(u.Y >> 16),
        V4 = Bf16ToFloat(u.Z & 0xFFFFu), V5 = Bf16ToFloat(u.Z >> 16),
        V6 = Bf16ToFloat(u.W & 0xFFFFu), V7 = Bf16ToFloat(u.W >> 16),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Byte(uint word, int i) => (sbyte)(byte)(word >> (8 * i));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Quants(in U2 u) => new()
    {
        V0 = Byte(u.X, 0), V1 = Byte(u.X, 1), V2 = Byte(u.X, 2), V3 = Byte(u.X, 3),
        V4 = Byte(u.Y, 0), V5 = Byte(u.Y, 1), V6 = Byte(u.Y, 2), V7 = Byte(u.Y, 3),
    };

    /// <summary>Sum over the <paramref name="lanes"/> consecutive threads of a warp that share one item (lanes: 1 or a
    /// power of two ≤ the warp size).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LaneSum(float v, int lanes)
    {
        for (int m = lanes / 2; m > 0; m /= 2) v += Warp.ShuffleXor(v, m);
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double LaneSum(double v, int lanes)
    {
        for (int m = lanes / 2; m > 0; m /= 2) v += Warp.ShuffleXor(v, m);
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LaneMax(float v, int lanes)
    {
        for (int m = lanes / 2; m > 0; m /= 2) v = MathF.Max(v, Warp.ShuffleXor(v, m));
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong LaneMin(ulong v, int lanes)
    {
        for (int m = lanes / 2; m > 0; m /= 2)
        {
            ulong o = Warp.ShuffleXor(v, m);
            v = o < v ? o : v;
        }
        return v;
    }

    /// <summary>Barrier for groups of more than one thread (a one-thread group, the CPU accelerator's shape, needs
    /// none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Sync()
    {
        if (Group.DimX > 1) Group.Barrier();
    }
}
