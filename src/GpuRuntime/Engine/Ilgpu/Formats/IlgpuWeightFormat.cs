using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// How the ILGPU backend serves one weight format: how a matrix is uploaded (every format so far as the file stores
/// it, see <see cref="StoredFormat{TW}"/>), the layout it then has, what the matmul's input is rounded or quantized to
/// first (<see cref="InputPrep"/>), and the kernel set compiled for its <see cref="IWeightRows"/> struct (once per
/// stored layout in the model).
/// </summary>
abstract class IlgpuWeightFormat
{
    /// <summary>The layout on the device.</summary>
    public abstract GgmlType Stored { get; }
    public abstract InputPrep Prep { get; }
    public abstract unsafe IlgpuWeight Upload(Accelerator accelerator, GgufTensorInfo t, byte* src);
    public abstract FormatKernels CreateKernels(Accelerator accelerator);
}

/// <summary>
/// How a kernel reads a weight matrix in its storage format. Kernels are generic over this, so each format gets its own
/// compiled kernel with the format's loads inlined. Rows hold <c>Columns</c> elements, a multiple of 32. A format
/// multiplied against quantized inputs (q8_0, q8_1 or q8_K, as ggml does) is <see cref="Quantized"/>: each
/// 32-column block's sum of weights times integer inputs is scaled by the weights' and the input's block scales
/// (plus, for q4_1/q5_1, the weights' minimum times q8_1's block sum). The legacy formats give their integers and
/// block scale; the K-quants give values (16- and 32-value sub-block scales and mins applied) with scale 1: at
/// batch 1 a GPU waits on memory, not on the decoding.
/// </summary>
interface IWeightRows
{
    /// <summary>Elements [k, k + 8) of row r (k a multiple of 8) as floats; for a quantized format its integers (see
    /// <see cref="Scale"/>).</summary>
    Float8 Load8(long r, int k);
    /// <summary>The scale of the 32-element block holding column k of row r (1 where Load8 gives values).</summary>
    float Scale(long r, int k);
    bool Quantized { get; }
    /// <summary>The minimum of the 32-element block holding column k of row r (q4_1, q5_1), added to each value
    /// after its scale.</summary>
    float Min(long r, int k);
    bool HasMin { get; }
}

/// <summary>The ILGPU backend's matrix formats; a type missing here fails at load.</summary>
static class IlgpuFormats
{
    static readonly Dictionary<GgmlType, IlgpuWeightFormat> Table = new()
    {
        [GgmlType.F32] = FloatFormat.F32,
        [GgmlType.F16] = FloatFormat.F16,
        [GgmlType.BF16] = FloatFormat.Bf16,
        // the quantized formats in the file's layout, read in place (see LegacyFormats.cs, KQuantFormats.cs,
        // LowBitFormats.cs)
        [GgmlType.Q8_0] = new StoredFormat<Q8_0Rows>(GgmlType.Q8_0, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.Q4_0] = new StoredFormat<Q4_0Rows>(GgmlType.Q4_0, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.Q4_1] = new StoredFormat<Q4_1Rows>(GgmlType.Q4_1, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.Q5_0] = new StoredFormat<Q5_0Rows>(GgmlType.Q5_0, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.Q5_1] = new StoredFormat<Q5_1Rows>(GgmlType.Q5_1, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.Q2_K] = new StoredFormat<Q2_KRows>(GgmlType.Q2_K, InputPrep.Q8K, (d, c) => new(d, c)),
        [GgmlType.Q3_K] = new StoredFormat<Q3_KRows>(GgmlType.Q3_K, InputPrep.Q8K, (d, c) => new(d, c)),
        [GgmlType.Q4_K] = new StoredFormat<Q4_KRows>(GgmlType.Q4_K, InputPrep.Q8K, (d, c) => new(d, c)),
        [GgmlType.Q5_K] = new StoredFormat<Q5_KRows>(GgmlType.Q5_K, InputPrep.Q8K, (d, c) => new(d, c)),
        [GgmlType.Q6_K] = new StoredFormat<Q6_KRows>(GgmlType.Q6_K, InputPrep.Q8K, (d, c) => new(d, c)),
        [GgmlType.IQ4_NL] = new StoredFormat<IQ4_NLRows>(GgmlType.IQ4_NL, InputPrep.Q8, (d, c) => new(d, c)),
        [GgmlType.IQ4_XS] = new StoredFormat<IQ4_XSRows>(GgmlType.IQ4_XS, InputPrep.Q8K, (d, c) => new(d, c)),
    };

    public static IEnumerable<GgmlType> Types => Table.Keys;

    public static IlgpuWeightFormat? Find(GgmlType type) => Table.GetValueOrDefault(type);
}
