using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Weft.Models.Gguf;

/// <summary>
/// Reference conversions between f32 and the ggml storage types, bit-compatible with ggml's reference code
/// (ggml-quants.c). These are the oracle for the fast kernels, not the hot path.
/// </summary>
public static class GgmlQuant
{
    /// <summary>Converts <paramref name="dst"/>.Length elements stored as <paramref name="type"/> to f32.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        var traits = GgmlTypeTraits.Of(type);
        long need = traits.RowBytes(dst.Length);
        if (src.Length < need)
            throw new ArgumentException($"{dst.Length} {type} elements need {need} bytes, got {src.Length}");
        var dequantize = traits.Dequantize
            ?? throw new NotSupportedException($"reading {type} tensors is not supported");
        dequantize(src[..(int)need], dst);
    }

    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> src, long elements)
    {
        var dst = new float[elements];
        Dequantize(type, src, dst);
        return dst;
    }

    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> x)
    {
        var traits = GgmlTypeTraits.Of(type);
        var dst = new byte[traits.RowBytes(x.Length)];
        var quantize = traits.Quantize ?? throw new NotSupportedException($"writing {type} tensors is not supported");
        quantize(x, dst);
        return dst;
    }

    internal static void DequantizeF32(ReadOnlySpan<byte> src, Span<float> dst) =>
        MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);

    internal static void QuantizeF32(ReadOnlySpan<float> x, Span<byte> dst) => MemoryMarshal.AsBytes(x).CopyTo(dst);

    internal static void DequantizeF16(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var h = MemoryMarshal.Cast<byte, Half>(src);
        for (int i = 0; i < dst.Length; i++) dst[i] = (float)h[i];
    }

    internal static void QuantizeF16(ReadOnlySpan<float> x, Span<byte> dst)
    {
        var h = MemoryMarshal.Cast<byte, Half>(dst);
        for (int i = 0; i < x.Length; i++) h[i] = SingleToHalf(x[i]);
    }

    internal static void DequantizeBF16(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var b = MemoryMarshal.Cast<byte, ushort>(src);
        for (int i = 0; i < dst.Length; i++) dst[i] = BFloat16ToSingle(b[i]);
    }

    internal static void QuantizeBF16(ReadOnlySpan<float> x, Span<byte> dst)
    {
        var b = MemoryMarshal.Cast<byte, ushort>(dst);
        for (int i = 0; i < x.Length; i++) b[i] = SingleToBFloat16(x[i]);
    }

    /// <summary>Round to nearest even; every NaN becomes ggml's quiet NaN 0x7E00 with its sign (Half's cast would
    /// keep payload bits).</summary>
    public static Half SingleToHalf(float f) => float.IsNaN(f)
        ? BitConverter.UInt16BitsToHalf((ushort)(0x7E00 | (BitConverter.SingleToUInt32Bits(f) >> 16 & 0x8000)))
        : (Half)f;

    public static float BFloat16ToSingle(ushort b) => BitConverter.Int32BitsToSingle(b << 16);

    /// <summary>Round to nearest even, as ggml_compute_fp32_to_bf16; NaN stays a quiet NaN.</summary>
    public static ushort SingleToBFloat16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    static (int BlockSize, int BlockBytes) Layout(GgmlType type)
    {
        var t = GgmlTypeTraits.Of(type);
        return (t.BlockSize, t.BlockBytes);
    }

    static float F16(ReadOnlySpan<byte> b) => (float)BinaryPrimitives.ReadHalfLittleEndian(b);

    internal static void DequantizeQ8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q8_0);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk);
            for (int j = 0; j < bs; j++) dst[b * bs + j] = d * (sbyte)blk[2 + j];
        }
    }

    internal static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q8_0);
        for (int b = 0; b < x.Length / bs; b++)
        {
            var xs = x.Slice(b * bs, bs);
            float amax = 0;
            foreach (var v in xs) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            var blk = dst.Slice(b * bb, bb);
            BinaryPrimitives.WriteHalfLittleEndian(blk, (Half)d);
            for (int j = 0; j < bs; j++)
                blk[2 + j] = (byte)(sbyte)MathF.Round(xs[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    internal static void DequantizeQ4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q4_0);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk);
            for (int j = 0; j < bs / 2; j++)
            {
                dst[b * bs + j] = ((blk[2 + j] & 0x0F) - 8) * d;
                dst[b * bs + j + bs / 2] = ((blk[2 + j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>q4_1: f16 scale d and minimum m, then nibbles as in q4_0; a value is q·d + m.</summary>
    internal static void DequantizeQ4_1(ReadOnlySpan<byte> src, Span<float> dst) => DequantizeLegacy(src, dst,
        GgmlType.Q4_1, hasMin: true, highBits: false);

    /// <summary>q5_0: f16 scale, 32 fifth bits, then nibbles as in q4_0; a value is (q − 16)·d.</summary>
    internal static void DequantizeQ5_0(ReadOnlySpan<byte> src, Span<float> dst) => DequantizeLegacy(src, dst,
        GgmlType.Q5_0, hasMin: false, highBits: true);

    /// <summary>q5_1: f16 scale and minimum, 32 fifth bits, then nibbles; a value is q·d + m.</summary>
    internal static void DequantizeQ5_1(ReadOnlySpan<byte> src, Span<float> dst) => DequantizeLegacy(src, dst,
        GgmlType.Q5_1, hasMin: true, highBits: true);

    static void DequantizeLegacy(ReadOnlySpan<byte> src, Span<float> dst, GgmlType type, bool hasMin, bool highBits)
    {
        var (bs, bb) = Layout(type);
        int qs = (hasMin ? 4 : 2) + (highBits ? 4 : 0);
        int offset = hasMin ? 0 : highBits ? 16 : 8;
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk), m = hasMin ? F16(blk[2..]) : 0;
            uint qh = highBits ? BinaryPrimitives.ReadUInt32LittleEndian(blk[(qs - 4)..]) : 0;
            for (int j = 0; j < bs / 2; j++)
            {
                int x0 = (blk[qs + j] & 0x0F) | (int)((qh >> j) & 1) << 4;
                int x1 = (blk[qs + j] >> 4) | (int)((qh >> (j + bs / 2)) & 1) << 4;
                // ggml writes q·d + m for the formats with a minimum, (q − offset)·d for the others
                dst[b * bs + j] = hasMin ? x0 * d + m : (x0 - offset) * d;
                dst[b * bs + j + bs / 2] = hasMin ? x1 * d + m : (x1 - offset) * d;
            }
        }
    }

    internal static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q4_0);
        for (int b = 0; b < x.Length / bs; b++)
        {
            var xs = x.Slice(b * bs, bs);
            float amax = 0, max = 0;
            foreach (var v in xs)
                if (MathF.Abs(v) > amax) { amax = MathF.Abs(v); max = v; }
            float d = max / -8f, id = d != 0 ? 1f / d : 0f;
            var blk = dst.Slice(b * bb, bb);
            BinaryPrimitives.WriteHalfLittleEndian(blk, (Half)d);
            for (int j = 0; j < bs / 2; j++)
            {
                int x0 = Math.Min(15, (int)(sbyte)(xs[j] * id + 8.5f));
                int x1 = Math.Min(15, (int)(sbyte)(xs[j + bs / 2] * id + 8.5f));
                blk[2 + j] = (byte)(x0 | (x1 << 4));
            }
        }
    }

    static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    internal static void DequantizeQ4_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q4_K);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk), dmin = F16(blk[2..]);
            var scales = blk.Slice(4, 12);
            var q = blk.Slice(16, 128);
            var y = dst.Slice(b * bs, bs);
            int yi = 0, qi = 0;
            for (int j = 0, s = 0; j < bs; j += 64, s += 2, qi += 32)
            {
                var (sc1, m1) = ScaleMinK4(s, scales);
                var (sc2, m2) = ScaleMinK4(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++) y[yi++] = d1 * (q[qi + l] & 0xF) - min1;
                for (int l = 0; l < 32; l++) y[yi++] = d2 * (q[qi + l] >> 4) - min2;
            }
        }
    }

    /// <summary>
    /// q5_K: q4_K's scales and mins with a fifth bit per value in qh (bit c of qh[l] for chunk c of 32).
    /// </summary>
    internal static void DequantizeQ5_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q5_K);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk), dmin = F16(blk[2..]);
            var scales = blk.Slice(4, 12);
            var qh = blk.Slice(16, 32);
            var q = blk.Slice(48, 128);
            var y = dst.Slice(b * bs, bs);
            int yi = 0, qi = 0;
            for (int j = 0, s = 0; j < bs; j += 64, s += 2, qi += 32)
            {
                var (sc1, m1) = ScaleMinK4(s, scales);
                var (sc2, m2) = ScaleMinK4(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++) y[yi++] = d1 * ((q[qi + l] & 0xF) + ((qh[l] >> s & 1) << 4)) - min1;
                for (int l = 0; l < 32; l++)
                    y[yi++] = d2 * ((q[qi + l] >> 4) + ((qh[l] >> (s + 1) & 1) << 4)) - min2;
            }
        }
    }

    internal static void DequantizeQ6_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q6_K);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            var ql = blk[..128];
            var qh = blk.Slice(128, 64);
            var sc = MemoryMarshal.Cast<byte, sbyte>(blk.Slice(192, 16));
            float d = F16(blk[208..]);
            var y = dst.Slice(b * bs, bs);
            for (int n = 0; n < 2; n++)
            {
                var l0 = ql[(n * 64)..]; var h0 = qh[(n * 32)..]; var s0 = sc[(n * 8)..]; var y0 = y[(n * 128)..];
                for (int l = 0; l < 32; l++)
                {
                    int i = l / 16;
                    int q1 = ((l0[l] & 0xF) | (((h0[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((l0[l + 32] & 0xF) | (((h0[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4)) - 32;
                    y0[l] = d * s0[i] * q1;
                    y0[l + 32] = d * s0[i + 2] * q2;
                    y0[l + 64] = d * s0[i + 4] * q3;
                    y0[l + 96] = d * s0[i + 6] * q4;
                }
            }
        }
    }

    /// <summary>
    /// q2_K: per 16 values a byte of 4-bit scale (low) and 4-bit min (high); qs[64] holds four 2-bit values per byte,
    /// byte l of each 32 giving values l, l+32, l+64, l+96 of its 128 (shift 0, 2, 4, 6); f16 d and dmin last.
    /// </summary>
    internal static void DequantizeQ2_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q2_K);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            var scales = blk[..16];
            var qs = blk.Slice(16, 64);
            float d = F16(blk[80..]), dmin = F16(blk[82..]);
            var y = dst.Slice(b * bs, bs);
            for (int i = 0; i < bs; i++)
            {
                int group = i / 16, half = i / 128, shift = 2 * (i % 128 / 32), l = i % 32;
                float dl = d * (scales[group] & 0xF), ml = dmin * (scales[group] >> 4);
                y[i] = dl * (qs[32 * half + l] >> shift & 3) - ml;
            }
        }
    }

    /// <summary>The sixteen 6-bit scales of a q3_K block, stored offset by 32: low nibbles in bytes 0..7, high bit
    /// pairs in bytes 8..11 (ggml's kmask shuffle).</summary>
    static int ScaleQ3K(ReadOnlySpan<byte> s, int j)
    {
        int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        int high = s[8 + j % 4] >> (2 * (j / 4)) & 3;
        return (low | high << 4) - 32;
    }

    /// <summary>
    /// q3_K: hmask[32] (bit c of byte l: the high bit of value l (+16) of 32-chunk c), qs[64] 2-bit values laid out
    /// as q2_K's, twelve bytes of 6-bit scales, f16 d; a value is its 2 bits, less 4 where the high bit is clear.
    /// </summary>
    internal static void DequantizeQ3_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.Q3_K);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            var hmask = blk[..32];
            var qs = blk.Slice(32, 64);
            var scales = blk.Slice(96, 12);
            float d = F16(blk[108..]);
            var y = dst.Slice(b * bs, bs);
            for (int i = 0; i < bs; i++)
            {
                int half = i / 128, chunk = i / 32, l = i % 32;
                float dl = d * ScaleQ3K(scales, i / 16);
                int q = (qs[32 * half + l] >> (2 * (chunk % 4)) & 3) - ((hmask[l] >> chunk & 1) != 0 ? 0 : 4);
                y[i] = dl * q;
            }
        }
    }

    /// <summary>The sixteen values iq4_nl and iq4_xs nibbles index (ggml's kvalues_iq4nl: denser near zero).</summary>
    public static ReadOnlySpan<sbyte> IQ4Values => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89,
        113];

    /// <summary>iq4_nl: f16 d, then 16 bytes of nibbles (low: values 0-15, high: 16-31) indexing
    /// <see cref="IQ4Values"/>.</summary>
    internal static void DequantizeIQ4_NL(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.IQ4_NL);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk);
            for (int j = 0; j < 16; j++)
            {
                dst[b * bs + j] = d * IQ4Values[blk[2 + j] & 0xF];
                dst[b * bs + j + 16] = d * IQ4Values[blk[2 + j] >> 4];
            }
        }
    }

    /// <summary>
    /// iq4_xs: f16 d, 16 bits of scale high pairs, 4 bytes of scale low nibbles (6-bit scales offset by 32, one per 32
    /// values), then per 32 values iq4_nl's 16 bytes of nibbles.
    /// </summary>
    internal static void DequantizeIQ4_XS(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var (bs, bb) = Layout(GgmlType.IQ4_XS);
        for (int b = 0; b < dst.Length / bs; b++)
        {
            var blk = src.Slice(b * bb, bb);
            float d = F16(blk);
            int high = BinaryPrimitives.ReadUInt16LittleEndian(blk[2..]);
            for (int ib = 0; ib < 8; ib++)
            {
                int ls = (blk[4 + ib / 2] >> (4 * (ib % 2)) & 0xF) | (high >> (2 * ib) & 3) << 4;
                float dl = d * (ls - 32);
                var qs = blk.Slice(8 + 16 * ib, 16);
                var y = dst.Slice(b * bs + 32 * ib, 32);
                for (int j = 0; j < 16; j++)
                {
                    y[j] = dl * IQ4Values[qs[j] & 0xF];
                    y[j + 16] = dl * IQ4Values[qs[j] >> 4];
                }
            }
        }
    }
}
