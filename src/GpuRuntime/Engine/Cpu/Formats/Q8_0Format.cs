using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q8_0 weights split once at load into quants offset by 128 (what VNNI multiplies, see <see cref="MatMulKernels.Q8"/>)
/// and f32 block scales, the same bytes as the file's blocks; the input is quantized to q8_0 blocks, as ggml does.
/// </summary>
sealed unsafe class Q8_0Weights : ICpuWeightFormat
{
    static readonly GgmlTypeTraits Q8 = GgmlTypeTraits.Q8_0;

    public GgmlType Stored => GgmlType.Q8_0;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        int bs = Q8.BlockSize;
        if (t.Columns % bs != 0) throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by {bs}");
        long rows = t.Rows, cols = t.Columns;
        var quants = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * cols), 64);
        var scales = (float*)NativeMemory.AlignedAlloc((nuint)(rows * (cols / bs) * sizeof(float)), 64);
        byte* src = file.DataPointer(t);
        long blocks = rows * (cols / bs);
        for (long b = 0; b < blocks; b++)
        {
            byte* block = src + b * Q8.BlockBytes;
            scales[b] = (float)*(Half*)block;
            for (int j = 0; j < bs; j++) quants[b * bs + j] = (byte)(block[2 + j] ^ 0x80);
        }
        return new CpuWeight(t, this, quants, scales, owned: true);
    }

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k)
    {
        int blocks = k / Q8.BlockSize;
        for (int r = r0; r < r1; r++)
            Quantize.RowQ8(x + (long)r * k, input.Quants + (long)r * k, input.Corrections + (long)r * k / 4,
                input.Scales + (long)r * blocks, k);
    }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        if (CpuBackend.FastQ8Kernels)
            MatMulKernels.Q8(w.Data, w.Scales, input.Quants, input.Corrections, input.Scales, y, bias, m, w.Columns,
                ldy, n0, n1);
        else Portable.Q8(w.Data, w.Scales, input.Quants, input.Scales, y, bias, m, w.Columns, ldy, n0, n1);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        int bs = Q8.BlockSize, blocks = dst.Length / bs;
        for (int b = 0; b < blocks; b++)
        {
            float d = w.Scales[row * blocks + b];
            byte* q = w.Data + row * dst.Length + b * bs;
            for (int j = 0; j < bs; j++) dst[b * bs + j] = d * (q[j] - 128);
        }
    }
}
