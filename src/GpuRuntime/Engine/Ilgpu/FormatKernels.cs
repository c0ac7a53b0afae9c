using ILGPU;
using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>A weight on the device: a matrix in its storage format (q8_0 as quants and scales), or an f32 vector.</summary>
sealed class IlgpuWeight(GgufTensorInfo info, GgmlType type, MemoryBuffer1D<uint, Stride1D.Dense>? data, MemoryBuffer1D<float, Stride1D.Dense>? floats)
    : DeviceWeight(info)
{
    /// <summary>Storage type of a matrix (q4_0/q4_K/q6_K are repacked to q8_0); F32 for vectors.</summary>
    public GgmlType Type { get; } = type;
    /// <summary>Matrix elements as 32-bit words (q8_0: the quants).</summary>
    public MemoryBuffer1D<uint, Stride1D.Dense>? Data { get; } = data;
    /// <summary>A vector's values, or q8_0's block scales.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense>? Floats { get; } = floats;
    public bool IsMatrix => Data is not null;

    public InputPrep Prep => Type switch
    {
        GgmlType.F16 => InputPrep.F16,
        GgmlType.BF16 => InputPrep.Bf16,
        GgmlType.Q8_0 => InputPrep.Q8,
        _ => InputPrep.None,
    };

    public void Dispose()
    {
        Data?.Dispose();
        Floats?.Dispose();
    }
}

/// <summary>The kernels that read weights, compiled once per storage format present in the model.</summary>
abstract class FormatKernels
{
    public abstract void Embed(KernelConfig config, IlgpuWeight table, ArrayView<int> tokens, ArrayView<float> x, int rows, int dim);
    public abstract void MatVec(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p);
    public abstract void MatMulTiled(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p);

    public static FormatKernels Create(Accelerator accelerator, GgmlType type) => type switch
    {
        GgmlType.F32 => new FormatKernels<F32Rows>(accelerator, w => new F32Rows(w.Data!.View.AsContiguous().Cast<U4>(), w.Columns)),
        GgmlType.F16 => new FormatKernels<F16Rows>(accelerator, w => new F16Rows(w.Data!.View.AsContiguous().Cast<U4>(), w.Columns)),
        GgmlType.BF16 => new FormatKernels<Bf16Rows>(accelerator, w => new Bf16Rows(w.Data!.View.AsContiguous().Cast<U4>(), w.Columns)),
        GgmlType.Q8_0 => new FormatKernels<Q8Rows>(accelerator, w => new Q8Rows(w.Data!.View.AsContiguous().Cast<U2>(), w.Floats!.View, w.Columns)),
        _ => throw new NotSupportedException($"no ILGPU kernels for weights stored as {type}"),
    };
}

sealed class FormatKernels<TW>(Accelerator accelerator, Func<IlgpuWeight, TW> view) : FormatKernels where TW : struct, IWeightRows
{
    readonly Action<KernelConfig, TW, ArrayView<int>, ArrayView<float>, int, int> _embed =
        accelerator.LoadStreamKernel<TW, ArrayView<int>, ArrayView<float>, int, int>(Kernels.Embed);
    readonly Action<KernelConfig, TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs> _matVec =
        accelerator.LoadStreamKernel<TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs>(Kernels.MatVec);
    readonly Action<KernelConfig, TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs> _tiled =
        accelerator.LoadStreamKernel<TW, TW, TW, ArrayView<Float4>, ArrayView<float>, MatMulArgs>(Kernels.MatMulTiled);

    public override void Embed(KernelConfig config, IlgpuWeight table, ArrayView<int> tokens, ArrayView<float> x, int rows, int dim) =>
        _embed(config, view(table), tokens, x, rows, dim);

    public override void MatVec(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p) =>
        _matVec(config, view(a), view(b), view(c), x, xs, p);

    public override void MatMulTiled(KernelConfig config, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p) =>
        _tiled(config, view(a), view(b), view(c), x, xs, p);
}
