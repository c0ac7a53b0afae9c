using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q4_0, q4_1, q5_0 and q5_1 weights read in place from the file (4.5 to 6 bits a value: the quants unpack in a few
/// instructions in the order ggml's blocks hold them), except q4_0 matrices with rows a multiple of 8, which are
/// repacked once at load into ggml's eight-row groups where the CPU runs that kernel (<see cref="Q4_0x8Kernels"/>;
/// the weight then owns the copy); the input is quantized to q8_0 blocks, plus q8_1's block sums for the formats with
/// a minimum, as ggml does.
/// </summary>
sealed unsafe class LegacyWeights<TBlock>(GgmlType type) : ICpuWeightFormat where TBlock : struct, ILegacyBlock
{
    public GgmlType Stored => type;
    public bool PacksRows => false;

    public CpuWeight Load(GgufFile file, GgufTensorInfo t)
    {
        if (t.Columns % 32 != 0) throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by 32");
        if (!Grouped(t.Rows)) return new CpuWeight(t, this, file.DataPointer(t), null, owned: false);
        var packed = (byte*)NativeMemory.AlignedAlloc((nuint)t.ByteSize, 64);
        Q4_0x8Kernels.Repack(file.DataPointer(t), packed, t.Rows, (int)t.Columns);
        return new CpuWeight(t, this, packed, null, owned: true);
    }

    /// <summary>Whether a matrix of this many rows is held in eight-row groups.</summary>
    static bool Grouped(long rows) => typeof(TBlock) == typeof(Q4_0Block) && Q4_0x8Kernels.Fast && rows % 8 == 0;

    public void Prepare(float* x, MatMulInput input, int r0, int r1, int k)
    {
        int blocks = k / 32;
        for (int r = r0; r < r1; r++)
        {
            float* xr = x + (long)r * k;
            int* c = input.Corrections + (long)r * k / 4;
            Quantize.RowQ8(xr, input.Quants + (long)r * k, c, input.Scales + (long)r * blocks, k);
            if (TBlock.HasMin) LegacyKernels.BlockSums(xr, c, input.Sums + (long)r * blocks, k);
        }
    }

    public float* Activations(float* x, MatMulInput input) => x;

    public void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch)
    {
        if (Grouped(w.Rows))
            Q4_0x8Kernels.MatMul(w.Data, input.Quants, input.Corrections, input.Scales, y, bias, m, w.Columns, ldy, n0,
                n1);
        else
            LegacyKernels.MatMul<TBlock>(w.Data, input.Quants, input.Corrections, input.Scales, input.Sums, y, bias, m,
                w.Columns, ldy, n0, n1);
    }

    public void ReadRow(CpuWeight w, long row, Span<float> dst)
    {
        long rowBytes = GgmlTypeTraits.RowBytes(type, dst.Length);
        if (!Grouped(w.Rows))
        {
            GgmlQuant.Dequantize(type, new ReadOnlySpan<byte>(w.Data + row * rowBytes, (int)rowBytes), dst);
            return;
        }
        Span<byte> blocks = stackalloc byte[(int)rowBytes];
        Q4_0x8Kernels.Unpack(w.Data, row, dst.Length, blocks);
        GgmlQuant.Dequantize(type, blocks, dst);
    }
}
