using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q5_K weights read in place from the mapped file (5.5 bits a value); the input is quantized to q8_K blocks and
/// multiplied as ggml does (see <see cref="KQuantKernels"/>).
/// </summary>
sealed unsafe class Q5_KWeights : ICpuWeightFormat
{
    static readonly GgmlTypeTraits Traits = GgmlTypeTraits.Of(GgmlType.Q5_K);

    public GgmlType Stored => GgmlType.Q5_K;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        if (t.Columns % Traits.BlockSize != 0)
            throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by {Traits.BlockSize}");
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
        KQuantKernels.Q5K(w.Data, input.Quants, input.Scales, input.BlockSums, y, bias, m, w.Columns, ldy, n0, n1);

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        int bytes = (int)Traits.RowBytes(dst.Length);
        Traits.Dequantize!(new ReadOnlySpan<byte>(w.Data + row * bytes, bytes), dst);
    }
}
