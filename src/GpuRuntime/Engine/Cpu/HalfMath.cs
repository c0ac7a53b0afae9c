using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// Vectorised f16/bf16 → f32 conversion. TensorPrimitives.ConvertToSingle(Half) runs at scalar speed (~4.5 GB/s
/// measured here), too slow for a loop that streams every weight each step; this widens the bits and rescales:
/// shifting the 15 magnitude bits into an f32 and multiplying by 2^112 re-biases the exponent, exact for normal and
/// subnormal halves alike (weights hold no inf/NaN).
/// </summary>
static class HalfMath
{
    static readonly Vector512<float> Rebias = Vector512.Create(5.192297e33f); // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Load32(ushort* h, out Vector512<float> lo, out Vector512<float> hi)
    {
        var (a, b) = Vector512.Widen(Vector512.Load(h));
        lo = Convert(a);
        hi = Convert(b);
    }

    /// <summary>
    /// 16 halves to f32 in four 512-bit operations (only two ports execute them, and this runs once per weight):
    /// sign-extended to 32 bits and shifted left by 13, the sign lands in bit 31 (its copies in bits 28–30 are masked
    /// off) and exponent and mantissa in place; the multiply by 2^112 rebiases the exponent, subnormals included.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Load16(ushort* h)
    {
        var x = Avx512F.ConvertToVector512Int32(Vector256.Load((short*)h));
        return ((x << 13) & Vector512.Create(unchecked((int)0x8FFFE000))).AsSingle() * Rebias;
    }

    /// <summary>16 bf16 values to f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> LoadBf16(ushort* h) =>
        (Avx512F.ConvertToVector512UInt32(Vector256.Load(h)) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Convert(Vector512<uint> u)
    {
        var sign = (u & Vector512.Create(0x8000u)) << 16;
        var mag = ((u & Vector512.Create(0x7FFFu)) << 13).AsSingle() * Rebias;
        return (mag.AsUInt32() | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void LoadBf16x32(ushort* h, out Vector512<float> lo, out Vector512<float> hi)
    {
        var (a, b) = Vector512.Widen(Vector512.Load(h));
        lo = (a << 16).AsSingle();
        hi = (b << 16).AsSingle();
    }

    /// <summary>
    /// Rounds n floats to the nearest f16 value (ties to even), kept as f32: what ggml's conversion of activations to
    /// f16 yields. Normal range: round the mantissa to 10 bits; below the smallest normal half the step is a fixed
    /// 2^-24, which adding and subtracting 0.5 rounds to; beyond the largest half, infinity.
    /// </summary>
    public static unsafe void RoundToHalf(float* src, float* dst, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var x = Vector512.Load(src + i);
                var u = x.AsUInt32();
                var sign = u & Vector512.Create(0x80000000u);
                var abs = (u & Vector512.Create(0x7FFFFFFFu)).AsSingle();
                var normal = ((u + Vector512.Create(0xFFFu) + ((u >> 13) & Vector512<uint>.One))
                    & Vector512.Create(0xFFFFE000u)).AsSingle();
                var tiny = ((abs + Vector512.Create(0.5f)) - Vector512.Create(0.5f)).AsUInt32() | sign;
                var r = Vector512.ConditionalSelect(
                    Vector512.LessThan(abs, Vector512.Create(6.1035156e-05f)).AsSingle(), tiny.AsSingle(), normal);
                r = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(abs, Vector512.Create(65520f)).AsSingle(),
                    (Vector512.Create(0x7F800000u) | sign).AsSingle(), r);
                r = Vector512.ConditionalSelect(Vector512.IsNaN(x), x, r);
                r.Store(dst + i);
            }
        for (; i < n; i++) dst[i] = (float)(Half)src[i];
    }

    /// <summary>Rounds n floats to the nearest bf16 value (ties to even), kept as f32, as ggml's conversion
    /// does.</summary>
    public static unsafe void RoundToBf16(float* src, float* dst, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
            {
                var x = Vector512.Load(src + i);
                var u = x.AsUInt32();
                var r = ((u + Vector512.Create(0x7FFFu) + ((u >> 16) & Vector512<uint>.One))
                    & Vector512.Create(0xFFFF0000u)).AsSingle();
                Vector512.ConditionalSelect(Vector512.IsNaN(x), x, r).Store(dst + i);
            }
        for (; i < n; i++)
            dst[i] = BitConverter.Int32BitsToSingle(Weft.Models.Gguf.GgmlQuant.SingleToBFloat16(src[i]) << 16);
    }

    /// <summary>Converts n halves (any n) to f32.</summary>
    public static unsafe void ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Load32(src + i, out var lo, out var hi);
            lo.Store(dst + i);
            hi.Store(dst + i + 16);
        }
        for (; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
    }

    public static unsafe void Bf16ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            LoadBf16x32(src + i, out var lo, out var hi);
            lo.Store(dst + i);
            hi.Store(dst + i + 16);
        }
        for (; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }
}
