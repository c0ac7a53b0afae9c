using ILGPU;
using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>A weight on the device: a matrix in its format's layout, or an f32 vector.</summary>
sealed class IlgpuWeight(GgufTensorInfo info, IlgpuWeightFormat format, MemoryBuffer1D<uint, Stride1D.Dense>? data,
    MemoryBuffer1D<float, Stride1D.Dense>? floats) : DeviceWeight(info)
{
    public IlgpuWeightFormat Format { get; } = format;
    /// <summary>Storage type of a matrix; F32 for vectors.</summary>
    public GgmlType Type => Format.Stored;
    /// <summary>A matrix's bytes as 32-bit words.</summary>
    public MemoryBuffer1D<uint, Stride1D.Dense>? Data { get; } = data;
    /// <summary>A vector's values.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense>? Floats { get; } = floats;
    public bool IsMatrix => Data is not null;
    public InputPrep Prep => Format.Prep;
    /// <summary>Device memory held, for checking it against the file.</summary>
    public long DeviceBytes => (Data?.LengthInBytes ?? 0) + (Floats?.LengthInBytes ?? 0);

    public void Dispose()
    {
        Data?.Dispose();
        Floats?.Dispose();
    }
}

/// <summary>The kernels that read weights, compiled once per stored layout present in the model (see
/// <see cref="IlgpuWeightFormat"/>).</summary>
abstract class FormatKernels
{
    public abstract void Embed(KernelConfig config, IlgpuWeight table, ArrayView<int> tokens, ArrayView<float> x,
        int rows, int dim);
    public abstract void MatVec(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x,
        ArrayView<float> xs, MatMulArgs p);
    public abstract void MatMulTiled(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c,
        ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p);
}

sealed class FormatKernels<TW>(Accelerator accelerator, Func<IlgpuWeight, TW> view) : FormatKernels
    where TW : struct, IWeightRows
{
    readonly Action<KernelConfig, TW, ArrayView<int>, ArrayView<float>, int, int> _embed =
        accelerator.LoadStreamKernel<TW, ArrayView<int>, ArrayView<float>, int, int>(Kernels.Embed);
    readonly Action<KernelConfig, TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs> _matVec =
        accelerator.LoadStreamKernel<TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs>(Kernels.MatVec);
    readonly Action<KernelConfig, TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs> _tiled =
        accelerator.LoadStreamKernel<TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs>(Kernels.MatMulTiled);

    public override void Embed(KernelConfig config, IlgpuWeight table, ArrayView<int> tokens, ArrayView<float> x,
        int rows, int dim) =>
        _embed(config, view(table), tokens, x, rows, dim);

    public override void MatVec(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x,
        ArrayView<float> xs, MatMulArgs p) =>
        _matVec(config, view(a), view(b), view(c), x, xs, p);

    public override void MatMulTiled(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c,
        ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p) =>
        _tiled(config, view(a), view(b), view(c), x, xs, p);
}
