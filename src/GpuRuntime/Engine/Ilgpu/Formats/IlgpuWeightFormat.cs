using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// How the ILGPU backend serves one weight format: how a matrix is uploaded (as stored, or repacked), the layout it
/// then has, what the matmul's input is rounded or quantized to first (<see cref="InputPrep"/>, ggml's vec_dot_type),
/// and the kernel set compiled for its <see cref="IWeightRows"/> struct (once per stored layout in the model).
/// </summary>
abstract class IlgpuWeightFormat
{
    /// <summary>The layout on the device: the file's own type, or q8_0 for the formats repacked into it.</summary>
    public abstract GgmlType Stored { get; }
    public abstract InputPrep Prep { get; }
    public abstract unsafe IlgpuWeight Upload(Accelerator accelerator, GgufTensorInfo t, byte* src);
    public abstract FormatKernels CreateKernels(Accelerator accelerator);
}

/// <summary>
/// How a kernel reads a weight matrix in its storage format. Kernels are generic over this, so each format gets its own
/// compiled kernel with the format's loads inlined. Rows hold <c>Columns</c> elements, a multiple of 32.
/// </summary>
interface IWeightRows
{
    /// <summary>Elements [k, k + 8) of row r as floats; for q8_0 the integer quants (see
    /// <see cref="Scale"/>).</summary>
    Float8 Load8(long r, int k);
    /// <summary>The scale of the 32-element block holding column k of row r (1 for unquantized formats).</summary>
    float Scale(long r, int k);
    bool Quantized { get; }
}

/// <summary>The ILGPU backend's matrix formats; a type missing here fails at load.</summary>
static class IlgpuFormats
{
    static readonly Dictionary<GgmlType, IlgpuWeightFormat> Table = new()
    {
        [GgmlType.F32] = FloatFormat.F32,
        [GgmlType.F16] = FloatFormat.F16,
        [GgmlType.BF16] = FloatFormat.Bf16,
        [GgmlType.Q8_0] = new Q8_0Format(GgmlType.Q8_0),
        // repacked to q8_0 at upload (the CPU backend multiplies the legacy formats in their own layout)
        [GgmlType.Q4_0] = new Q8_0Format(GgmlType.Q4_0),
        [GgmlType.Q4_1] = new Q8_0Format(GgmlType.Q4_1),
        [GgmlType.Q5_0] = new Q8_0Format(GgmlType.Q5_0),
        [GgmlType.Q5_1] = new Q8_0Format(GgmlType.Q5_1),
        [GgmlType.Q2_K] = new Q8_0Format(GgmlType.Q2_K),
        [GgmlType.Q3_K] = new Q8_0Format(GgmlType.Q3_K),
        [GgmlType.Q4_K] = new Q8_0Format(GgmlType.Q4_K),
        [GgmlType.Q5_K] = new Q8_0Format(GgmlType.Q5_K),
        [GgmlType.Q6_K] = new Q8_0Format(GgmlType.Q6_K),
        [GgmlType.IQ4_NL] = new Q8_0Format(GgmlType.IQ4_NL),
        [GgmlType.IQ4_XS] = new Q8_0Format(GgmlType.IQ4_XS),
    };

    public static IEnumerable<GgmlType> Types => Table.Keys;

    public static IlgpuWeightFormat? Find(GgmlType type) => Table.GetValueOrDefault(type);
}
