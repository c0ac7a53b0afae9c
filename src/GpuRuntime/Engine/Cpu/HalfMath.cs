using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>f16/bf16 ↔ f32 conversions: the activations rounded to the weights' format, and the f16 block scales of
/// quantized weights widened (rows of a 16-bit cache or matrix widen in <see cref="Simd{TVec}"/>).</summary>
static class HalfMath
{
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

    /// <summary>
    /// The f16 at p as f32, for block scales (no inf/NaN there). Exponent and mantissa move into place and the
    /// exponent is rebiased by an integer add; a subnormal half is renormalised by a float subtraction of normal
    /// values. .NET's own conversion is a call per value, and <see cref="Simd{TVec}.LoadCachedHalf"/>'s multiply by
    /// 2^112 takes a microcode assist (~3x slower kernels, measured) on the subnormal scales llama.cpp's quantizer
    /// writes for small minimums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float F16(byte* p)
    {
        int h = *(short*)p, o = (h & 0x7FFF) << 13;
        float f = o < 1 << 23 ? BitConverter.Int32BitsToSingle(o + (113 << 23)) - 6.1035156e-05f
            : BitConverter.Int32BitsToSingle(o + (112 << 23));
        return BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(f) | (h & int.MinValue));
    }

    /// <summary>Eight f16 bit patterns, sign-extended to 32 bits, as f32 (<see cref="F16"/>'s arithmetic).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToSingle(Vector256<int> h)
    {
        var o = (h & Vector256.Create(0x7FFF)) << 13;
        var normal = (o + Vector256.Create(112 << 23)).AsSingle();
        var tiny = (o + Vector256.Create(113 << 23)).AsSingle() - Vector256.Create(6.1035156e-05f);
        var f = Vector256.ConditionalSelect(Vector256.LessThan(o, Vector256.Create(1 << 23)).AsSingle(), tiny, normal);
        return (f.AsInt32() | (h & Vector256.Create(int.MinValue))).AsSingle();
    }
}
