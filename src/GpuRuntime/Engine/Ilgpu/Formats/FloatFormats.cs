using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>f32/f16/bf16 matrices, read as stored in 16-byte loads.</summary>
static class FloatFormat
{
    /// <summary>f32 weights take the input as it is.</summary>
    public static readonly StoredFormat<F32Rows> F32 =
        new(GgmlType.F32, InputPrep.None, (d, c) => new(d.Cast<U4>(), c));
    /// <summary>f16 and bf16 weights take the input rounded to their own format, as ggml does.</summary>
    public static readonly StoredFormat<F16Rows> F16 =
        new(GgmlType.F16, InputPrep.F16, (d, c) => new(d.Cast<U4>(), c));
    public static readonly StoredFormat<Bf16Rows> Bf16 =
        new(GgmlType.BF16, InputPrep.Bf16, (d, c) => new(d.Cast<U4>(), c));
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
            V0 = Interop.IntAsFloat(a.X), V1 = Interop.IntAsFloat(a.Y),
            V2 = Interop.IntAsFloat(a.Z), V3 = Interop.IntAsFloat(a.W),
            V4 = Interop.IntAsFloat(b.X), V5 = Interop.IntAsFloat(b.Y),
            V6 = Interop.IntAsFloat(b.Z), V7 = Interop.IntAsFloat(b.W),
        };
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

readonly struct F16Rows(ArrayView<U4> data, int columns) : IWeightRows
{
    readonly ArrayView<U4> _data = data;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Halves(_data.AsAligned(16)[(r * _columns + k) / 8]);

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

readonly struct Bf16Rows(ArrayView<U4> data, int columns) : IWeightRows
{
    readonly ArrayView<U4> _data = data;
    readonly int _columns = columns;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Bf16s(_data.AsAligned(16)[(r * _columns + k) / 8]);

    public float Scale(long r, int k) => 1f;
    public bool Quantized => false;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

