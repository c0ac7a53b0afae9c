using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// A 16-bit float format of weights: how a vector of them becomes f32 in registers, one of them as a scalar, and how
/// activations are rounded to it first (ggml's vec_dot_type is the weight's own type).
/// </summary>
unsafe interface IHalfFormat
{
    static abstract TVec Load<TVec>(ushort* p) where TVec : struct;
    static abstract float Scalar(ushort bits);
    static abstract void Round(float* src, float* dst, long n);

    /// <summary>The matrix as the kernels read it: the file's bits in place, or a copy in this format's layout (for
    /// which <paramref name="format"/> stands).</summary>
    static abstract CpuWeight Load(GgufFile file, GgufTensorInfo t, ICpuWeightFormat format);
}

/// <summary>f16 (<see cref="Simd{TVec}.LoadHalf"/>).</summary>
unsafe readonly struct F16Format : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TVec>(ushort* p) where TVec : struct => Simd<TVec>.LoadHalf(p);
    public static float Scalar(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
    public static void Round(float* src, float* dst, long n) => HalfMath.RoundToHalf(src, dst, n);
    public static CpuWeight Load(GgufFile file, GgufTensorInfo t, ICpuWeightFormat format) =>
        new(t, format, file.DataPointer(t), null, owned: false);
}

/// <summary>
/// f16 weights copied at load as 2^10 times their values, which is exact for a matrix whose values all stay below 64
/// in magnitude (trained weights rarely pass a few units) and leaves none of them subnormal, so that the kernels
/// widen them in three operations (<see cref="Simd{TVec}.LoadScaledHalf"/>) rather than eight. A matrix with a larger
/// value (or an inf or NaN) is read in place as <see cref="F16Format"/>. A whole batch-1 step of an f16 model 1280
/// wide went from 28.7-31.7 to 23.5-24.9 ms.
/// </summary>
unsafe readonly struct ScaledF16Format : IHalfFormat
{
    /// <summary>What the copy's values are multiplied by.</summary>
    const float Scale = 1024f;

    /// <summary>The largest exponent field a value may have: 20 (below 64), so that 30 after scaling stays
    /// finite.</summary>
    const int LargestExponent = 20;

    static readonly HalfWeights<F16Format> InPlace = new(GgmlType.F16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TVec>(ushort* p) where TVec : struct => Simd<TVec>.LoadScaledHalf(p);
    public static float Scalar(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits) / Scale;
    public static void Round(float* src, float* dst, long n) => HalfMath.RoundToHalf(src, dst, n);

    public static CpuWeight Load(GgufFile file, GgufTensorInfo t, ICpuWeightFormat format)
    {
        var copy = (ushort*)NativeMemory.AlignedAlloc((nuint)t.ByteSize, 64);
        if (TryScale((ushort*)file.DataPointer(t), copy, t.ElementCount))
            return new(t, format, (byte*)copy, null, owned: true);
        NativeMemory.AlignedFree(copy);
        return InPlace.Load(file, t);
    }

    /// <summary>dst = 2^10 · src, half by half; false where a value is 64 or more in magnitude.</summary>
    public static bool TryScale(ushort* src, ushort* dst, long n)
    {
        const ushort exponent = 0x7C00, exponentOne = 0x0400;
        var fields = Vector128.Create(exponent);
        var largest = Vector128.Create((ushort)(LargestExponent * exponentOne));
        var ten = Vector128.Create((ushort)(10 * exponentOne));
        long i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var h = Vector128.Load(src + i);
            var e = h & fields;
            if (Vector128.GreaterThanAny(e, largest)) return false;
            var normal = ~Vector128.Equals(e, Vector128<ushort>.Zero);
            // the normal ones (and zeros) are exact: ten added to the exponent
            if (Vector128.EqualsAll(normal | Vector128.Equals(h & Vector128.Create((ushort)0x7FFF), default),
                Vector128<ushort>.AllBitsSet))
                (h + (ten & normal)).Store(dst + i);
            else
                for (long j = i; j < i + 8; j++) dst[j] = ScaleOne(src[j]);
        }
        for (; i < n; i++)
        {
            if ((src[i] & exponent) > LargestExponent * exponentOne) return false;
            dst[i] = ScaleOne(src[i]);
        }
        return true;
    }

    static ushort ScaleOne(ushort bits) => BitConverter.HalfToUInt16Bits(
        (Half)((float)BitConverter.UInt16BitsToHalf(bits) * Scale));
}

/// <summary>bf16: the upper half of an f32, so widening and shifting is the whole conversion.</summary>
unsafe readonly struct Bf16Format : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TVec>(ushort* p) where TVec : struct => Simd<TVec>.LoadBf16(p);
    public static float Scalar(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
    public static void Round(float* src, float* dst, long n) => HalfMath.RoundToBf16(src, dst, n);
    public static CpuWeight Load(GgufFile file, GgufTensorInfo t, ICpuWeightFormat format) =>
        new(t, format, file.DataPointer(t), null, owned: false);
}

/// <summary>f16 or bf16 weights, read in place or as <typeparamref name="TFormat"/> copies them; the input is rounded
/// to the same format, as ggml does.</summary>
sealed unsafe class HalfWeights<TFormat>(GgmlType type) : ICpuWeightFormat where TFormat : struct, IHalfFormat
{
    public GgmlType Stored => type;
    public bool PacksRows => true;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t) => TFormat.Load(file, t, this);

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k) =>
        TFormat.Round(x + (long)r0 * k, input.Rounded + (long)r0 * k, (long)(r1 - r0) * k);

    public float* Activations(float* x, MatMulInput input) => input.Rounded;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        int k = w.Columns;
        MatMulKernels.Float(new HalfRows<TFormat>((ushort*)w.Data, k), x, y, bias, m, k, ldy, n0, n1, scratch);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        ushort* bits = (ushort*)w.Data + row * dst.Length;
        for (int i = 0; i < dst.Length; i++) dst[i] = TFormat.Scalar(bits[i]);
    }
}
