using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>f32 weights, read in place; the input is used as it is.</summary>
sealed unsafe class F32Weights : ICpuWeightFormat
{
    public GgmlType Stored => GgmlType.F32;
    public bool PacksRows => true;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t) => new(t, this, file.DataPointer(t), null, owned: false);

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k) { }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        int k = w.Columns;
        MatMulKernels.Float(new F32Rows((float*)w.Data, k), x, y, bias, m, k, ldy, n0, n1, scratch);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst) =>
        new ReadOnlySpan<float>((float*)w.Data + row * dst.Length, dst.Length).CopyTo(dst);
}
