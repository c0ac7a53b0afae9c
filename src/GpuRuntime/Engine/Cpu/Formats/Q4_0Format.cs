using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q4_0 weights read in place from the file (4.5 bits a value: nothing gained by a copy, since the nibbles unpack in
/// two instructions in the order ggml's blocks hold them); the input is quantized to q8_0 blocks, as ggml does.
/// </summary>
sealed unsafe class Q4_0Weights : ICpuWeightFormat
{
    public GgmlType Stored => GgmlType.Q4_0;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        if (t.Columns % 32 != 0) throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by 32");
        return new CpuWeight(t, this, file.DataPointer(t), null, owned: false);
    }

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k)
    {
        int blocks = k / 32;
        for (int r = r0; r < r1; r++)
            Quantize.RowQ8(x + (long)r * k, input.Quants + (long)r * k, input.Corrections + (long)r * k / 4,
                input.Scales + (long)r * blocks, k);
    }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        if (CpuBackend.FastQ8Kernels)
            LegacyKernels.MatMul<Q4_0Block>(w.Data, input.Quants, input.Corrections, input.Scales, y, bias, m,
                w.Columns, ldy, n0, n1);
        else LegacyKernels.Portable<Q4_0Block>(w.Data, input.Quants, input.Scales, y, bias, m, w.Columns, ldy, n0, n1);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        long rowBytes = GgmlTypeTraits.RowBytes(GgmlType.Q4_0, dst.Length);
        GgmlQuant.Dequantize(GgmlType.Q4_0, new ReadOnlySpan<byte>(w.Data + row * rowBytes, (int)rowBytes), dst);
    }
}
