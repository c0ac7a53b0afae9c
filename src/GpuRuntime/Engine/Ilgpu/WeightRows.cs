using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// How a kernel reads a weight matrix in its storage format. Kernels are generic over this, so each format gets its own
/// compiled kernel with the format's loads inlined. Rows hold <c>Columns</c> elements, a multiple of 32.
/// </summary>
interface IWeightRows
{
    /// <summary>Elements [k, k + 8) of row r as floats; for q8_0 the integer quants (see <see cref="Scale"/>).</summary>
    Float8 Load8(long r, int k);
    /// <summary>The scale of the 32-element block holding column k of row r (1 for unquantized formats).</summary>
    float Scale(long r, int k);
    bool Quantized { get; }
}

readonly struct F32Rows(ArrayView<U4> data, int columns) : IWeightRows
{
    readonly ArrayView<U4> _data = data;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        var view = _data.AsAligned(16);
        long i = (r * _columns + k) / 4;
        U4 a = view[i], b = view[i + 1];
        return new Float8
        {
            V0 = Interop.IntAsFloat(a.X), V1 = Interop.IntAsFloat(a.Y), V2 = Interop.IntAsFloat(a.Z), V3 = Interop.IntAsFloat(a.W),
            V4 = Interop.IntAsFloat(b.X), V5 = Interop.IntAsFloat(b.Y), V6 = Interop.IntAsFloat(b.Z), V7 = Interop.IntAsFloat(b.W),
        };
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
}

readonly struct F16Rows(ArrayView<U4> data, int columns) : IWeightRows
{
    readonly ArrayView<U4> _data = data;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Halves(_data.AsAligned(16)[(r * _columns + k) / 8]);

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
}

readonly struct Bf16Rows(ArrayView<U4> data, int columns) : IWeightRows
{
    readonly ArrayView<U4> _data = data;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Bf16s(_data.AsAligned(16)[(r * _columns + k) / 8]);

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
}

/// <summary>q8_0 split at upload into its quants and its (f16, stored exactly as f32) block scales, so quants load aligned.</summary>
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
