using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// q8_0 matrices, and the formats repacked into q8_0 at upload (see <see cref="Q8_0Repack"/>): quants and f32 block
/// scales in separate buffers; the input is quantized to q8_0 blocks, as ggml does.
/// </summary>
sealed class Q8_0Format(GgmlType source) : IlgpuWeightFormat
{
    public override GgmlType Stored => GgmlType.Q8_0;
    public override InputPrep Prep => InputPrep.Q8;

    public override unsafe IlgpuWeight Upload(Accelerator accelerator, GgufTensorInfo t, byte* src)
    {
        long rows = t.Rows, cols = t.Columns;
        var quants = new byte[rows * cols];
        var scales = new float[rows * (cols / GgmlTypeTraits.Q8_0.BlockSize)];
        fixed (byte* q = quants)
        fixed (float* s = scales)
            Q8_0Repack.Split(source, src, rows, cols, q, s, flip: 0);
        var data = accelerator.Allocate1D<uint>(quants.LongLength / 4);
        fixed (byte* q = quants) data.View.CopyFromCPU(ref *(uint*)q, quants.LongLength / 4);
        return new IlgpuWeight(t, this, data, accelerator.Allocate1D(scales));
    }

    public override FormatKernels CreateKernels(Accelerator accelerator) =>
        new FormatKernels<Q8Rows>(accelerator,
            w => new Q8Rows(w.Data!.View.AsContiguous().Cast<U2>(), w.Floats!.View, w.Columns));
}

/// <summary>q8_0 split at upload into its quants and its (f16, stored exactly as f32) block scales, so quants load
/// aligned.</summary>
readonly struct Q8Rows(ArrayView<U2> quants, ArrayView<float> scales, int columns) : IWeightRows
{
    readonly ArrayView<U2> _quants = quants;
    readonly ArrayView<float> _scales = scales;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Quants(_quants.AsAligned(8)[(r * _columns + k) / 8]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => _scales[r * (_columns / 32) + k / 32];

    public bool Quantized => true;
}
