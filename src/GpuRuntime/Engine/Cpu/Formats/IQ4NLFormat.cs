using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// iq4_nl weights read in place from the file (4.5 bits a value); the input is quantized to q8_0 blocks, ggml's
/// vec_dot_type for iq4_nl, and multiplied by <see cref="IQ4Kernels.IQ4NL"/>.
/// </summary>
sealed unsafe class IQ4NLWeights : ICpuWeightFormat
{
    public GgmlType Stored => GgmlType.IQ4_NL;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        if (t.Columns % 32 != 0) throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by 32");
        return new CpuWeight(t, this, file.DataPointer(t), null, owned: false);
    }

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k)
    {
        for (int r = r0; r < r1; r++)
            Quantize.RowQ8(x + (long)r * k, input.Quants + (long)r * k, input.Corrections + (long)r * k / 4,
                input.Scales + (long)r * (k / 32), k);
    }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch) =>
        IQ4Kernels.IQ4NL(w.Data, input.Quants, input.Scales, y, bias, m, w.Columns, ldy, n0, n1);

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        long rowBytes = GgmlTypeTraits.RowBytes(GgmlType.IQ4_NL, dst.Length);
        GgmlQuant.Dequantize(GgmlType.IQ4_NL, new ReadOnlySpan<byte>(w.Data + row * rowBytes, (int)rowBytes), dst);
    }
}
