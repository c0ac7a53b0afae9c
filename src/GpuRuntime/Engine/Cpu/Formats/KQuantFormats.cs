using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The formats ggml multiplies against q8_K activations (q2_K to q6_K, iq4_xs), read in place from the mapped file:
/// the input is quantized to q8_K blocks and multiplied as ggml does by the type's kernel (<see cref="KQuantKernels"/>,
/// <see cref="KQuantLowBitKernels"/>, <see cref="IQ4Kernels"/>), called once per chunk of output rows.
/// </summary>
sealed unsafe class KQuantWeights(
    GgmlType type,
    delegate*<byte*, sbyte*, float*, short*, float*, float*, int, int, int, int, int, void> kernel) : ICpuWeightFormat
{
    readonly GgmlTypeTraits _traits = GgmlTypeTraits.Of(type);

    public static readonly KQuantWeights Q2_K = new(GgmlType.Q2_K, &KQuantLowBitKernels.Q2K);
    public static readonly KQuantWeights Q3_K = new(GgmlType.Q3_K, &KQuantLowBitKernels.Q3K);
    public static readonly KQuantWeights Q4_K = new(GgmlType.Q4_K, &KQuantKernels.Q4K);
    public static readonly KQuantWeights Q5_K = new(GgmlType.Q5_K, &KQuantKernels.Q5K);
    public static readonly KQuantWeights Q6_K = new(GgmlType.Q6_K, &KQuantKernels.Q6K);
    public static readonly KQuantWeights IQ4_XS = new(GgmlType.IQ4_XS, &IQ4Kernels.IQ4XS);

    public GgmlType Stored => type;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        if (t.Columns % _traits.BlockSize != 0)
            throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by {_traits.BlockSize}");
        return new CpuWeight(t, this, file.DataPointer(t), null, owned: false);
    }

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k)
    {
        for (int r = r0; r < r1; r++)
            Quantize.RowQ8K(x + (long)r * k, input.Quants + (long)r * k, input.Scales + (long)r * (k / 256),
                input.BlockSums + (long)r * (k / 16), k);
    }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch) =>
        kernel(w.Data, input.Quants, input.Scales, input.BlockSums, y, bias, m, w.Columns, ldy, n0, n1);

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        int bytes = (int)_traits.RowBytes(dst.Length);
        _traits.Dequantize!(new ReadOnlySpan<byte>(w.Data + row * bytes, bytes), dst);
    }
}
