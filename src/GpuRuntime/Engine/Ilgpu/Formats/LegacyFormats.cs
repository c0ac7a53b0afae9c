using System.Runtime.CompilerServices;
using ILGPU;

namespace Weft.GpuRuntime.Engine.Ilgpu;

// ggml's 32-value blocks in the file's layout: an f16 scale d (and minimum m), for q5 32 fifth bits, then 16 bytes of
// nibbles holding values j (low) and j + 16 (high), or for q8_0 32 int8s. Eight consecutive values share their nibble
// half and block.

/// <summary>q8_0: the int8 quants and the block scale d, multiplied against q8_0 inputs as ggml does.</summary>
readonly struct Q8_0Rows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 34;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) => DeviceMath.Quants(FileBytes.Bytes8(_data, Block(r, k) + 2 + (k & 31)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}

/// <summary>q4_0: the integers q − 8 and the block scale d, multiplied against q8_0 inputs as ggml does.</summary>
readonly struct Q4_0Rows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 18;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) =>
        FileBytes.Nibbles(FileBytes.Bytes8(_data, Block(r, k) + 2 + (k & 15)), (k & 16) >> 2, 0, 1f, -8f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}

/// <summary>q5_0: the integers q − 16 and the block scale d, multiplied against q8_0 inputs as ggml does.</summary>
readonly struct Q5_0Rows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 22;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = Block(r, k);
        var qh = FileBytes.Bytes8(_data, b + 2);
        return FileBytes.Nibbles(FileBytes.Bytes8(_data, b + 6 + (k & 15)), (k & 16) >> 2, qh.X >> (k & 31), 1f,
            -16f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}

/// <summary>q4_1: the integers q, the block scale d and minimum m against q8_1 inputs, as ggml: d·dx·Σq·xq +
/// m·s.</summary>
readonly struct Q4_1Rows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 20;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) =>
        FileBytes.Nibbles(FileBytes.Bytes8(_data, Block(r, k) + 4 + (k & 15)), (k & 16) >> 2, 0, 1f, 0f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Min(long r, int k) => FileBytes.Half(_data, Block(r, k) + 2);

    public bool HasMin => true;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}

/// <summary>q5_1: q4_1 with the fifth bits of q5_0.</summary>
readonly struct Q5_1Rows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 24;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = Block(r, k);
        uint qh = _data[(b + 4) >> 2];
        return FileBytes.Nibbles(FileBytes.Bytes8(_data, b + 8 + (k & 15)), (k & 16) >> 2, qh >> (k & 31), 1f, 0f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Min(long r, int k) => FileBytes.Half(_data, Block(r, k) + 2);

    public bool HasMin => true;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}
