using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// How the CPU backend serves one weight format: the layout after load, what is done to a matmul's input first (ggml's
/// vec_dot_type: rounded to f16/bf16, quantized to q8_0 blocks), and the kernel that multiplies. The backend asks
/// <see cref="CpuFormats"/> for the descriptor once per weight and calls it once per chunk of output rows; the loops
/// inside are generic over struct readers, so no call per row or element goes through this interface.
/// </summary>
unsafe interface ICpuWeightFormat
{
    /// <summary>The layout of the weight after load: the file's own type, or q8_0 for the formats repacked into
    /// it.</summary>
    GgmlType Stored { get; }

    /// <summary>Whether matmuls convert tiles of four rows into the per-worker f32 scratch at larger batches.</summary>
    bool PacksRows { get; }

    /// <summary>The weight as the kernels read it: the mapped bytes in place, or a repacked copy the weight
    /// owns.</summary>
    CpuWeight Load(GgufFile file, GgufTensorInfo t);

    /// <summary>Rows [r0, r1) of a matmul's input x [rows × k] made ready in <paramref name="input"/> (nothing for
    /// f32).</summary>
    void Prepare(float* x, MatMulInput input, int r0, int r1, int k);

    /// <summary>The activations the matmul reads: x itself or its rounded copy.</summary>
    float* Activations(float* x, MatMulInput input);

    /// <summary>Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias); the fast kernel where the CPU has it, else the
    /// portable one.</summary>
    void MatMul(CpuWeight w, float* x, MatMulInput input, float* y, float* bias, int m, int ldy, int n0, int n1,
        float* scratch);

    /// <summary>Row <paramref name="row"/> of the weight as f32 (an embedding lookup).</summary>
    void ReadRow(CpuWeight w, long row, Span<float> dst);
}

/// <summary>
/// A weight after load in its format's layout: f32/f16/bf16 read in place from the mapped file; q8_0 (and the formats
/// repacked into it) as quants offset by 128 and f32 block scales, both owned.
/// </summary>
sealed unsafe class CpuWeight(GgufTensorInfo info, ICpuWeightFormat format, byte* data, float* scales, bool owned)
    : DeviceWeight(info)
{
    public readonly ICpuWeightFormat Format = format;
    public readonly byte* Data = data;
    public readonly float* Scales = scales;
    public readonly bool Owned = owned;

    public void Free()
    {
        if (!Owned) return;
        NativeMemory.AlignedFree(Data);
        NativeMemory.AlignedFree(Scales);
    }
}

/// <summary>A matmul's input prepared for its weight's format: rounded floats [rows × k], or q8_0 quants and
/// scales.</summary>
sealed unsafe class MatMulInput
{
    public float* Rounded { get; private set; }
    public sbyte* Quants { get; private set; }
    /// <summary>Per block, the eight VNNI lanes' −128·Σx (see <see cref="MatMulKernels.Q8"/>).</summary>
    public int* Corrections { get; private set; }
    public float* Scales { get; private set; }
    /// <summary>Per block, q8_1's s = d·Σq (see <see cref="LegacyKernels.BlockSums"/>), for weights with a
    /// minimum.</summary>
    public float* Sums { get; private set; }
    /// <summary>q8_K activations: per block of 256, the sums of its 16 groups of 16 quants (ggml's bsums).</summary>
    public short* BlockSums { get; private set; }
    long _floats;

    /// <summary>Room for an input of <paramref name="floats"/> floats (never larger than the largest
    /// activation).</summary>
    public void Reserve(long floats)
    {
        if (floats <= _floats) return;
        Free();
        _floats = floats;
        int block = GgmlTypeTraits.Q8_0.BlockSize;
        Rounded = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        Quants = (sbyte*)NativeMemory.AlignedAlloc((nuint)floats + 64, 64);
        Corrections = (int*)NativeMemory.AlignedAlloc((nuint)(floats / 4 + 16) * sizeof(int), 64);
        Scales = (float*)NativeMemory.AlignedAlloc((nuint)(floats / block + 16) * sizeof(float), 64);
        Sums = (float*)NativeMemory.AlignedAlloc((nuint)(floats / block + 16) * sizeof(float), 64);
        BlockSums = (short*)NativeMemory.AlignedAlloc((nuint)(floats / 16 + 16) * sizeof(short), 64);
    }

    public void Free()
    {
        if (Rounded == null) return;
        NativeMemory.AlignedFree(Rounded);
        NativeMemory.AlignedFree(Quants);
        NativeMemory.AlignedFree(Corrections);
        NativeMemory.AlignedFree(Scales);
        NativeMemory.AlignedFree(Sums);
        NativeMemory.AlignedFree(BlockSums);
        Rounded = null;
        _floats = 0;
    }
}

/// <summary>The CPU backend's weight formats; a type missing here fails at load.</summary>
static class CpuFormats
{
    static readonly Dictionary<GgmlType, ICpuWeightFormat> Table = new()
    {
        [GgmlType.F32] = new F32Weights(),
        [GgmlType.F16] = new HalfWeights<ScaledF16Format>(GgmlType.F16),
        [GgmlType.BF16] = new HalfWeights<Bf16Format>(GgmlType.BF16),
        [GgmlType.Q8_0] = new Q8_0Weights(),
        [GgmlType.Q4_0] = new LegacyWeights<Q4_0Block>(GgmlType.Q4_0),
        [GgmlType.Q4_1] = new LegacyWeights<Q4_1Block>(GgmlType.Q4_1),
        [GgmlType.Q5_0] = new LegacyWeights<Q5_0Block>(GgmlType.Q5_0),
        [GgmlType.Q5_1] = new LegacyWeights<Q5_1Block>(GgmlType.Q5_1),
        [GgmlType.Q2_K] = KQuantWeights.Q2_K,
        [GgmlType.Q3_K] = KQuantWeights.Q3_K,
        [GgmlType.Q4_K] = KQuantWeights.Q4_K,
        [GgmlType.Q5_K] = KQuantWeights.Q5_K,
        [GgmlType.Q6_K] = KQuantWeights.Q6_K,
        [GgmlType.IQ4_NL] = new IQ4NLWeights(),
        [GgmlType.IQ4_XS] = KQuantWeights.IQ4_XS,
    };

    public static IEnumerable<GgmlType> Types => Table.Keys;

    public static ICpuWeightFormat? Find(GgmlType type) => Table.GetValueOrDefault(type);
}
