using System.Runtime.CompilerServices;
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
}

/// <summary>f16 (<see cref="Simd{TVec}.LoadHalf"/>).</summary>
unsafe readonly struct F16Format : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TVec>(ushort* p) where TVec : struct => Simd<TVec>.LoadHalf(p);
    public static float Scalar(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
    public static void Round(float* src, float* dst, long n) => HalfMath.RoundToHalf(src, dst, n);
}

/// <summary>bf16: the upper half of an f32, so widening and shifting is the whole conversion.</summary>
unsafe readonly struct Bf16Format : IHalfFormat
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load<TVec>(ushort* p) where TVec : struct => Simd<TVec>.LoadBf16(p);
    public static float Scalar(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
    public static void Round(float* src, float* dst, long n) => HalfMath.RoundToBf16(src, dst, n);
}

/// <summary>f16 or bf16 weights, read in place; the input is rounded to the same format, as ggml does.</summary>
sealed unsafe class HalfWeights<TFormat>(GgmlType type) : ICpuWeightFormat where TFormat : struct, IHalfFormat
{
    public GgmlType Stored => type;
    public bool PacksRows => true;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t) => new(t, this, file.DataPointer(t), null, owned: false);

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k) =>
        TFormat.Round(x + (long)r0 * k, input.Rounded + (long)r0 * k, (long)(r1 - r0) * k);

    public float* Activations(float* x, MatMulInput input) => input.Rounded;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        int k = w.Columns;
        MatMulKernels.Float(new HalfRows<TFormat>((ushort*)w.Data, k), x, y, bias, m, k, ldy, n0, n1, scratch);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst) =>
        GgmlQuant.Dequantize(type, new ReadOnlySpan<byte>((ushort*)w.Data + row * dst.Length, dst.Length * 2), dst);
}
