using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>Element access to the paged KV pool in its storage type; kernels are generic over it like over
/// weights.</summary>
interface IKvCache
{
    float Load(long i);
    /// <summary>Elements [i, i + 8); i is a multiple of 8.</summary>
    Float8 Load8(long i);
    void Store(long i, float v);
    /// <summary>Whether values are stored as f16 (the query is then rounded to f16 before the dot product, as ggml
    /// does).</summary>
    bool Half { get; }
}

readonly struct F16Cache(ArrayView<ushort> data, ArrayView<U4> vectors) : IKvCache
{
    readonly ArrayView<ushort> _data = data;
    readonly ArrayView<U4> _vectors = vectors;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long i) => DeviceMath.HalfToFloat(_data[i]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long i) => DeviceMath.Halves(_vectors.AsAligned(16)[i / 8]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(long i, float v) => _data[i] = (ushort)DeviceMath.FloatToHalf(v);

    public bool Half => true;
}

readonly struct F32Cache(ArrayView<float> data) : IKvCache
{
    readonly ArrayView<float> _data = data;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Load(long i) => _data[i];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long i) => new()
    {
        V0 = _data[i], V1 = _data[i + 1], V2 = _data[i + 2], V3 = _data[i + 3],
        V4 = _data[i + 4], V5 = _data[i + 5], V6 = _data[i + 6], V7 = _data[i + 7],
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(long i, float v) => _data[i] = v;

    public bool Half => false;
}
