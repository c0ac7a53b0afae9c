using System.Runtime.CompilerServices;
using ILGPU;

namespace Weft.GpuRuntime.Engine.Ilgpu;

// q2_K, q3_K and the iq4 formats in the file's layout, decoded to the values ggml's dequantize_row_* gives (the
// layouts are spelled out beside those in GgmlQuant). Eight consecutive values share one scale.

/// <summary>q2_K: 16 bytes of scales (low nibble) and mins (high), one per 16 values, 64 bytes of 2-bit values
/// (value 128h + 32c + l at bits 2c of byte 32h + l), f16 d and dmin; a value is d·sc·q − dmin·m.</summary>
readonly struct Q2_KRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 84;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int i = k & 255;
        uint sc = FileBytes.Byte(_data, b + (i >> 4));
        var q = FileBytes.Bytes8(_data, b + 16 + 32 * (i >> 7) + (i & 31));
        float d = FileBytes.Half(_data, b + 80) * (int)(sc & 0xFu), m = FileBytes.Half(_data, b + 82) * (int)(sc >> 4);
        return Crumbs(q, 2 * ((i & 127) >> 5), d, m);
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Float8 Crumbs(in U2 q, int shift, float d, float m) => new()
    {
        V0 = d * (int)(FileBytes.At(q, 0) >> shift & 3u) - m, V1 = d * (int)(FileBytes.At(q, 1) >> shift & 3u) - m,
        V2 = d * (int)(FileBytes.At(q, 2) >> shift & 3u) - m, V3 = d * (int)(FileBytes.At(q, 3) >> shift & 3u) - m,
        V4 = d * (int)(FileBytes.At(q, 4) >> shift & 3u) - m, V5 = d * (int)(FileBytes.At(q, 5) >> shift & 3u) - m,
        V6 = d * (int)(FileBytes.At(q, 6) >> shift & 3u) - m, V7 = d * (int)(FileBytes.At(q, 7) >> shift & 3u) - m,
    };
}

/// <summary>q3_K: 32 bytes of high bits (bit c of byte l for value 32c + l, over both halves), 64 bytes of 2-bit
/// values laid out as q2_K's, 12 bytes of sixteen 6-bit scales offset by 32, f16 d; a value is
/// d·(sc − 32)·(q − 4 if its high bit is clear).</summary>
readonly struct Q3_KRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 110;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int i = k & 255, j = i >> 4, c = i >> 5;
        uint low = j < 8 ? FileBytes.Byte(_data, b + 96 + j) & 0xFu : FileBytes.Byte(_data, b + 96 + j - 8) >> 4;
        uint high = FileBytes.Byte(_data, b + 104 + (j & 3)) >> 2 * (j >> 2) & 3u;
        float d = FileBytes.Half(_data, b + 108) * ((int)(low | high << 4) - 32);
        var q = FileBytes.Bytes8(_data, b + 32 + 32 * (i >> 7) + (i & 31));
        uint h = FileBytes.BitPlane(FileBytes.Bytes8(_data, b + (i & 31)), c);
        int shift = 2 * (c & 3);
        return new Float8
        {
            V0 = d * Value(q, h, 0, shift), V1 = d * Value(q, h, 1, shift), V2 = d * Value(q, h, 2, shift),
            V3 = d * Value(q, h, 3, shift), V4 = d * Value(q, h, 4, shift), V5 = d * Value(q, h, 5, shift),
            V6 = d * Value(q, h, 6, shift), V7 = d * Value(q, h, 7, shift),
        };
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Value(in U2 q, uint high, int i, int shift) =>
        (int)(FileBytes.At(q, i) >> shift & 3u) - ((high >> i & 1u) != 0 ? 0 : 4);
}

/// <summary>iq4_nl: f16 d, then 16 bytes of nibbles (low: values 0-15, high: 16-31) indexing ggml's non-linear
/// table: the table's integers and d, multiplied against q8_0 inputs as ggml does.</summary>
readonly struct IQ4_NLRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 18;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 32 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k) =>
        IQ4.Values(FileBytes.Bytes8(_data, Block(r, k) + 2 + (k & 15)), (k & 16) >> 2, 1f);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(long r, int k) => FileBytes.Half(_data, Block(r, k));

    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    long Block(long r, int k) => r * _rowBytes + k / 32 * BlockBytes;
}

/// <summary>iq4_xs: f16 d, the high bit pairs of eight 6-bit sub-block scales (u16), their low nibbles (4 bytes),
/// then per 32-value sub-block iq4_nl's 16 bytes of nibbles; a value is d·(sc − 32)·table[q].</summary>
readonly struct IQ4_XSRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 136;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int ib = (k & 255) >> 5;
        uint low = FileBytes.Byte(_data, b + 4 + (ib >> 1)) >> 4 * (ib & 1) & 0xFu;
        uint high = (FileBytes.Byte(_data, b + 2 + (ib >> 2)) >> 2 * (ib & 3)) & 3u;
        float d = FileBytes.Half(_data, b) * ((int)(low | high << 4) - 32);
        return IQ4.Values(FileBytes.Bytes8(_data, b + 8 + 16 * ib + (k & 15)), (k & 16) >> 2, d);
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

static class IQ4
{
    /// <summary>scale · table[nibble] for the eight nibbles at bit <paramref name="shift"/> of eight bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Values(in U2 q, int shift, float scale) => new()
    {
        V0 = scale * Value(FileBytes.At(q, 0) >> shift & 0xFu), V1 = scale * Value(FileBytes.At(q, 1) >> shift & 0xFu),
        V2 = scale * Value(FileBytes.At(q, 2) >> shift & 0xFu), V3 = scale * Value(FileBytes.At(q, 3) >> shift & 0xFu),
        V4 = scale * Value(FileBytes.At(q, 4) >> shift & 0xFu), V5 = scale * Value(FileBytes.At(q, 5) >> shift & 0xFu),
        V6 = scale * Value(FileBytes.At(q, 6) >> shift & 0xFu), V7 = scale * Value(FileBytes.At(q, 7) >> shift & 0xFu),
    };

    /// <summary>ggml's kvalues_iq4nl[n], four int8s to a word (kernels hold no arrays of constants).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Value(uint n)
    {
        uint word = n < 8 ? (n < 4 ? 0xBFAD9881u : 0xF6EADDCFu) : (n < 12 ? 0x26190D01u : 0x71594535u);
        return (sbyte)(word >> (int)(n & 3) * 8 & 0xFFu);
    }
}
