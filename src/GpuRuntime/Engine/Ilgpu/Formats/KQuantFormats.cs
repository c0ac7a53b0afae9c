using System.Runtime.CompilerServices;
using ILGPU;

namespace Weft.GpuRuntime.Engine.Ilgpu;

// ggml's 256-value super-blocks in the file's layout, decoded to the values ggml's dequantize_row_* gives and
// multiplied against q8_K inputs as ggml does (the sums of its sub-block products, scales and mins folded into the
// values). Eight consecutive values share one sub-block scale.

/// <summary>q4_K: f16 d and dmin, 12 bytes of 6-bit scales and mins for eight 32-value sub-blocks, then 128 bytes of
/// nibbles (values 64c + l low, 64c + 32 + l high, of byte 32c + l); a value is d·sc·q − dmin·m.</summary>
readonly struct Q4_KRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 144;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int sub = (k & 255) >> 5;
        var q = FileBytes.Bytes8(_data, b + 16 + (sub >> 1) * 32 + (k & 31));
        return KQuant.Decode(_data, b, sub, q, 0);
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

/// <summary>q5_K: q4_K with 32 bytes of fifth bits before the nibbles (bit s of byte l for value 32s + l).</summary>
readonly struct Q5_KRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 176;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int sub = (k & 255) >> 5;
        var q = FileBytes.Bytes8(_data, b + 48 + (sub >> 1) * 32 + (k & 31));
        return KQuant.Decode(_data, b, sub, q, FileBytes.BitPlane(FileBytes.Bytes8(_data, b + 16 + (k & 31)), sub));
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;
}

/// <summary>q6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales (one per 16 values), f16 d last;
/// value 128n + 32g + l takes nibble g / 2 of ql[64n + 32(g mod 2) + l] and bits 2g of qh[32n + l], minus 32, times
/// d · scale.</summary>
readonly struct Q6_KRows(ArrayView<uint> data, int columns) : IWeightRows
{
    const int BlockBytes = 210;
    readonly ArrayView<uint> _data = data;
    readonly long _rowBytes = columns / 256 * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Float8 Load8(long r, int k)
    {
        long b = r * _rowBytes + (k >> 8) * BlockBytes;
        int n = (k & 255) >> 7, g = (k & 127) >> 5, l = k & 31;
        var ql = FileBytes.Bytes8(_data, b + 64 * n + (g & 1) * 32 + l);
        var qh = FileBytes.Bytes8(_data, b + 128 + 32 * n + l);
        float ds = FileBytes.Half(_data, b + 208) * (sbyte)FileBytes.Byte(_data, b + 192 + 8 * n + (l >> 4) + 2 * g);
        int shift = (g >> 1) * 4, hs = 2 * g;
        return new Float8
        {
            V0 = ds * Six(ql, qh, 0, shift, hs), V1 = ds * Six(ql, qh, 1, shift, hs),
            V2 = ds * Six(ql, qh, 2, shift, hs), V3 = ds * Six(ql, qh, 3, shift, hs),
            V4 = ds * Six(ql, qh, 4, shift, hs), V5 = ds * Six(ql, qh, 5, shift, hs),
            V6 = ds * Six(ql, qh, 6, shift, hs), V7 = ds * Six(ql, qh, 7, shift, hs),
        };
    }

    public float Scale(long r, int k) => 1f;
    public bool Quantized => true;
    public float Min(long r, int k) => 0f;
    public bool HasMin => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Six(in U2 ql, in U2 qh, int i, int shift, int hs) =>
        (int)(FileBytes.At(ql, i) >> shift & 0xFu | (FileBytes.At(qh, i) >> hs & 3u) << 4) - 32;
}

static class KQuant
{
    /// <summary>Eight nibbles of sub-block <paramref name="sub"/> of the q4_K/q5_K super-block at byte
    /// <paramref name="b"/> as d·sc·q − dmin·m, the products in ggml's order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Decode(ArrayView<uint> data, long b, int sub, in U2 q, uint fifth)
    {
        // 6-bit scale and min of the sub-block, as ggml's get_scale_min_k4 unpacks them from bytes 4..15
        long s = b + 4;
        uint sc, m;
        if (sub < 4)
        {
            sc = FileBytes.Byte(data, s + sub) & 63u;
            m = FileBytes.Byte(data, s + sub + 4) & 63u;
        }
        else
        {
            uint hi = FileBytes.Byte(data, s + sub + 4);
            sc = hi & 0xFu | FileBytes.Byte(data, s + sub - 4) >> 6 << 4;
            m = hi >> 4 | FileBytes.Byte(data, s + sub) >> 6 << 4;
        }
        float d = FileBytes.Half(data, b) * (int)sc, min = FileBytes.Half(data, b + 2) * (int)m;
        return FileBytes.Nibbles(q, (sub & 1) * 4, fifth, d, -min);
    }
}
