using System.Buffers.Binary;
using Weft.Models.Gguf;

namespace Weft.Models.Tests.Gguf;

public sealed class GgmlQuantTests
{
    static ushort F16Bits(float x) => BinaryPrimitives.ReadUInt16LittleEndian(GgmlQuant.Quantize(GgmlType.F16, [x]));
    static ushort Bf16Bits(float x) => BinaryPrimitives.ReadUInt16LittleEndian(GgmlQuant.Quantize(GgmlType.BF16, [x]));
    static float FromF16(ushort bits) => GgmlQuant.Dequantize(GgmlType.F16, BitConverter.GetBytes(bits), 1)[0];
    static float FromBf16(ushort bits) => GgmlQuant.Dequantize(GgmlType.BF16, BitConverter.GetBytes(bits), 1)[0];

    [Theory]
    [InlineData(1f, 0x3C00)]
    [InlineData(-2f, 0xC000)]
    [InlineData(0f, 0x0000)]
    [InlineData(-0f, 0x8000)]
    [InlineData(1 + 1f / 2048, 0x3C00)]       // exactly halfway between 1 and 1+2^-10: ties to the even 1
    [InlineData(1 + 3f / 2048, 0x3C02)]       // halfway between 1+2^-10 and 1+2^-9: ties to the even 1+2^-9
    [InlineData(1 + 1f / 2048 + 1f / 65536, 0x3C01)] // just above halfway rounds up
    [InlineData(65504f, 0x7BFF)]              // largest half
    [InlineData(65519f, 0x7BFF)]              // below the midpoint to 65536
    [InlineData(65520f, 0x7C00)]              // the midpoint ties to even, which is infinity
    [InlineData(float.PositiveInfinity, 0x7C00)]
    [InlineData(float.NegativeInfinity, 0xFC00)]
    [InlineData(5.9604645e-8f, 0x0001)]       // 2^-24, smallest subnormal half
    [InlineData(2.9802322e-8f, 0x0000)]       // 2^-25, halfway to the smallest subnormal: ties to even zero
    [InlineData(4.4703484e-8f, 0x0001)]       // 1.5 × 2^-25 rounds up
    [InlineData(6.097555e-5f, 0x03FF)]        // largest subnormal half
    [InlineData(6.1035156e-5f, 0x0400)]       // 2^-14, smallest normal half
    public void F16_rounds_to_nearest_even(float x, int bits) => Assert.Equal((ushort)bits, F16Bits(x));

    [Fact]
    public void F16_special_values_decode_exactly()
    {
        Assert.Equal(MathF.Pow(2, -24), FromF16(0x0001));
        Assert.Equal(1023 * MathF.Pow(2, -24), FromF16(0x03FF));
        Assert.Equal(65504f, FromF16(0x7BFF));
        Assert.Equal(float.PositiveInfinity, FromF16(0x7C00));
        Assert.True(float.IsNegative(FromF16(0x8000)) && FromF16(0x8000) == 0);
        Assert.True(float.IsNaN(FromF16(0x7E00)));
        Assert.True(float.IsNaN(FromF16(0x7C01)));
        // As ggml: every NaN, quiet or signalling, whatever its payload, becomes the quiet NaN 0x7E00 with its sign.
        Assert.Equal(0x7E00, F16Bits(BitConverter.UInt32BitsToSingle(0x7FC00000)));
        Assert.Equal(0x7E00, F16Bits(BitConverter.UInt32BitsToSingle(0x7F800001)));
        Assert.Equal(0x7E00, F16Bits(BitConverter.UInt32BitsToSingle(0x7FFFFFFF)));
        Assert.Equal(0xFE00, F16Bits(BitConverter.UInt32BitsToSingle(0xFFC12345)));
        // Every finite half survives half -> f32 -> half unchanged.
        for (int b = 0; b < 0x10000; b++)
        {
            if ((b & 0x7C00) == 0x7C00) continue;
            Assert.Equal((ushort)b, F16Bits(FromF16((ushort)b)));
        }
    }

    [Theory]
    [InlineData(1f, 0x3F80)]
    [InlineData(-0f, 0x8000)]
    [InlineData(1 + 1f / 256, 0x3F80)]          // halfway between 1 and 1+2^-7: ties to even
    [InlineData(1 + 3f / 256, 0x3F82)]          // halfway between 1+2^-7 and 1+2^-6: ties to even
    [InlineData(1 + 1f / 256 + 1f / 65536, 0x3F81)]
    [InlineData(float.MaxValue, 0x7F80)]        // rounds past the largest bf16 to infinity
    [InlineData(float.NegativeInfinity, 0xFF80)]
    public void Bf16_rounds_to_nearest_even(float x, int bits) => Assert.Equal((ushort)bits, Bf16Bits(x));

    [Theory]
    [InlineData(0x00000001u, 0x0000)]           // f32 subnormals round like any other value
    [InlineData(0x00008000u, 0x0000)]           // halfway, even below: down
    [InlineData(0x00018000u, 0x0002)]           // halfway, odd below: up
    [InlineData(0x807FFFFFu, 0x8080)]           // largest negative subnormal rounds up to -2^-126
    // a signalling NaN whose payload is all below bit 16 must stay NaN, not become inf
    [InlineData(0x7F800001u, 0x7FC0)]
    [InlineData(0xFFC00000u, 0xFFC0)]
    // NaN payloads are truncated, not rounded (rounding would carry into the sign)
    [InlineData(0x7FFFFFFFu, 0x7FFF)]
    public void Bf16_handles_subnormals_and_nan(uint f32Bits, int bits)
    {
        Assert.Equal((ushort)bits, Bf16Bits(BitConverter.UInt32BitsToSingle(f32Bits)));
        Assert.Equal((ushort)bits, GgmlQuant.SingleToBFloat16(BitConverter.UInt32BitsToSingle(f32Bits)));
    }

    [Fact]
    public void Bf16_decodes_by_widening()
    {
        Assert.Equal(1f, FromBf16(0x3F80));
        Assert.Equal(-2.5f, FromBf16(0xC020));
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x00010000), FromBf16(0x0001));
        Assert.True(float.IsNaN(FromBf16(0x7FC0)));
        for (int b = 0; b < 0x10000; b++)
            Assert.Equal((uint)b << 16, BitConverter.SingleToUInt32Bits(GgmlQuant.BFloat16ToSingle((ushort)b)));
    }

    [Fact]
    public void Q8_0_known_block_rounds_half_away_from_zero()
    {
        var x = new float[32];
        float[] head = [127, -127, 63.5f, 2.5f, -2.5f, 0.5f, -0.5f, 0.49f, 1.5f, 100.2f, -100.7f];
        head.CopyTo(x, 0);
        var blk = GgmlQuant.Quantize(GgmlType.Q8_0, x);

        Assert.Equal(34, blk.Length);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(blk)); // d = amax / 127 = 1
        sbyte[] q = [127, -127, 64, 3, -3, 1, -1, 0, 2, 100, -101];
        for (int j = 0; j < 32; j++) Assert.Equal(j < q.Length ? q[j] : 0, (sbyte)blk[2 + j]);
        var y = GgmlQuant.Dequantize(GgmlType.Q8_0, blk, 32);
        for (int j = 0; j < 32; j++) Assert.Equal(j < q.Length ? q[j] : 0f, y[j]);
    }

    [Fact]
    public void Q8_0_all_zero_block_has_zero_scale()
    {
        var blk = GgmlQuant.Quantize(GgmlType.Q8_0, new float[64]);
        Assert.All(blk, b => Assert.Equal(0, b));
        Assert.All(GgmlQuant.Dequantize(GgmlType.Q8_0, blk, 64), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Q4_0_known_blocks()
    {
        // Largest magnitude is -8, so d = max / -8 = 1 and each value maps to min(15, trunc(x + 8.5)) - 8.
        var x = new float[64];
        float[] head = [-8, 7, 7.6f, 0.4f, 0.5f, -0.5f, -7.5f, 3.2f];
        head.CopyTo(x, 0);
        x[20] = 5;
        // Second block: largest magnitude is +8, so d = -1; -8 would need q = 16 and clamps to -7.
        x[32] = 8; x[33] = -8; x[34] = 4; x[48] = -3.4f;
        var bytes = GgmlQuant.Quantize(GgmlType.Q4_0, x);

        Assert.Equal(36, bytes.Length);
        Assert.Equal(0x3C00, BinaryPrimitives.ReadUInt16LittleEndian(bytes));
        Assert.Equal(0xBC00, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(18)));
        Assert.Equal(0x80, bytes[2]);          // x[0] -> 0 in the low nibble, x[16] = 0 -> 8 in the high nibble
        Assert.Equal(0xD9, bytes[2 + 4]);      // x[4] = 0.5 -> 9, x[20] = 5 -> 13
        var y = GgmlQuant.Dequantize(GgmlType.Q4_0, bytes, 64);
        float[] expectHead = [-8, 7, 7, 0, 1, 0, -7, 3];
        for (int j = 0; j < 32; j++) Assert.Equal(j < 8 ? expectHead[j] : j == 20 ? 5 : 0, y[j]);
        Assert.Equal(8f, y[32]);
        Assert.Equal(-7f, y[33]);
        Assert.Equal(4f, y[34]);
        Assert.Equal(-3f, y[48]);               // -3.4 * -1 + 8.5 = 11.9 -> 11 -> (11 - 8) * -1
    }

    static float[] RandomBlocks(int blocks, int seed)
    {
        var rng = new Random(seed);
        var x = new float[blocks * 32];
        for (int b = 0; b < blocks; b++)
        {
            // Scales from 1e-6 to 1e4 and an occasional outlier, the cases where the f16 scale matters.
            float scale = MathF.Pow(10, rng.Next(-6, 5));
            for (int j = 0; j < 32; j++)
                x[b * 32 + j] = (float)(rng.NextDouble() * 2 - 1) * scale * (rng.Next(16) == 0 ? 10 : 1);
        }
        return x;
    }

    [Fact]
    public void Q8_0_error_is_within_half_a_step_plus_scale_rounding()
    {
        var x = RandomBlocks(400, 1);
        var bytes = GgmlQuant.Quantize(GgmlType.Q8_0, x);
        var y = GgmlQuant.Dequantize(GgmlType.Q8_0, bytes, x.Length);
        for (int b = 0; b < x.Length / 32; b++)
        {
            var xs = x.AsSpan(b * 32, 32);
            float d = TensorMaxAbs(xs) / 127f;
            float dh = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(b * 34));
            // y = q·dh with |q·d - x| ≤ d/2 (rounding) and |q·dh - q·d| ≤ 127·|dh - d|
            // (the scale stored as f16).
            float bound = 0.5f * d * 1.0001f + 127 * MathF.Abs(dh - d);
            for (int j = 0; j < 32; j++) Assert.True(MathF.Abs(xs[j] - y[b * 32 + j]) <= bound,
                $"block {b} element {j}: {xs[j]} -> {y[b * 32 + j]}, bound {bound}");
        }
    }

    [Fact]
    public void Q4_0_error_is_within_half_a_step_except_at_the_clamped_end()
    {
        var x = RandomBlocks(400, 2);
        var bytes = GgmlQuant.Quantize(GgmlType.Q4_0, x);
        var y = GgmlQuant.Dequantize(GgmlType.Q4_0, bytes, x.Length);
        for (int b = 0; b < x.Length / 32; b++)
        {
            var xs = x.AsSpan(b * 32, 32);
            float max = 0;
            foreach (var v in xs) if (MathF.Abs(v) > MathF.Abs(max)) max = v;
            float d = max / -8, dh = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.AsSpan(b * 18));
            for (int j = 0; j < 32; j++)
            {
                // Levels are -8..7 steps of d; the end opposite the largest value has no level 8 and clamps to 7.
                bool clamped = xs[j] / d + 8.5f >= 16;
                float bound = (clamped ? 1f : 0.5f) * MathF.Abs(d) * 1.0001f + 8 * MathF.Abs(dh - d);
                Assert.True(MathF.Abs(xs[j] - y[b * 32 + j]) <= bound,
                    $"block {b} element {j}: {xs[j]} -> {y[b * 32 + j]}, bound {bound}");
            }
        }
    }

    static float TensorMaxAbs(ReadOnlySpan<float> x)
    {
        float m = 0;
        foreach (var v in x) m = MathF.Max(m, MathF.Abs(v));
        return m;
    }

    // ---- K-quants: blocks built from the documented layout, expected values computed from the definition ----

    /// <summary>
    /// block_q4_K: f16 d, f16 dmin, 12 bytes of eight 6-bit (scale, min) pairs, 128 bytes of nibbles. Sub-block s
    /// (32 values) is d·scale[s]·q − dmin·min[s]. Pairs 0-3 sit in the low 6 bits of bytes 0-3 (scales) and 4-7
    /// (mins); pairs 4-7 keep their low 4 bits in bytes 8-11 (scale low nibble, min high nibble) and their top 2 bits
    /// in the spare top bits of bytes 0-3 (scales) and 4-7 (mins). Each 64 values share 32 bytes: low nibbles first.
    /// </summary>
    static byte[] PackQ4K(Half d, Half dmin, int[] sc, int[] mn, int[] q)
    {
        var blk = new byte[144];
        BinaryPrimitives.WriteHalfLittleEndian(blk, d);
        BinaryPrimitives.WriteHalfLittleEndian(blk.AsSpan(2), dmin);
        var s = blk.AsSpan(4, 12);
        for (int j = 0; j < 4; j++)
        {
            s[j] = (byte)(sc[j] | (sc[j + 4] >> 4) << 6);
            s[j + 4] = (byte)(mn[j] | (mn[j + 4] >> 4) << 6);
            s[j + 8] = (byte)((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
        }
        for (int e = 0; e < 256; e++)
        {
            int at = 16 + e / 64 * 32 + e % 32;
            blk[at] |= (byte)(e / 32 % 2 == 0 ? q[e] : q[e] << 4);
        }
        return blk;
    }

    [Fact]
    public void Q4_K_dequantizes_hand_built_blocks()
    {
        int[] sc0 = [1, 2, 3, 63, 17, 40, 5, 33], mn0 = [0, 1, 63, 2, 20, 7, 48, 9];
        int[] sc1 = [63, 0, 31, 32, 16, 15, 1, 62], mn1 = [5, 63, 0, 16, 47, 32, 0, 63];
        int[] q0 = Enumerable.Range(0, 256).Select(e => (e * 7 + e / 32) % 16).ToArray();
        int[] q1 = Enumerable.Range(0, 256).Select(e => 15 - e % 16).ToArray();
        byte[] src = [.. PackQ4K((Half)0.5f, (Half)0.25f, sc0, mn0, q0),
            .. PackQ4K((Half)(-0.125f), (Half)2f, sc1, mn1, q1)];

        var y = GgmlQuant.Dequantize(GgmlType.Q4_K, src, 512);

        for (int e = 0; e < 256; e++)
        {
            Assert.Equal(0.5f * sc0[e / 32] * q0[e] - 0.25f * mn0[e / 32], y[e]);
            Assert.Equal(-0.125f * sc1[e / 32] * q1[e] - 2f * mn1[e / 32], y[256 + e]);
        }
        // Spot values worked by hand: element 0 is 0.5·1·0 − 0;
        // element 100 (sub-block 3, q = 700 % 16 + 3 = 15) is 0.5·63·15 − 0.25·2.
        Assert.Equal(0f, y[0]);
        Assert.Equal(472f, y[100]);
        // Block 1, element 200 (sub-block 6: scale 1, min 0; q = 15 − 8 = 7): −0.125·7.
        Assert.Equal(-0.875f, y[256 + 200]);
    }

    /// <summary>
    /// block_q6_K: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales, f16 d. Value e is
    /// d·scale[e/16]·(q6 − 32). Each half of 128 values uses 64 ql and 32 qh bytes; within a half, value 32g + l
    /// (g = 0..3, l = 0..31) takes ql byte l (+32 for odd g), low nibble for g &lt; 2 and high nibble otherwise, and
    /// bits 2g..2g+1 of qh byte l.
    /// </summary>
    static byte[] PackQ6K(Half d, sbyte[] scales, int[] q)
    {
        var blk = new byte[210];
        for (int e = 0; e < 256; e++)
        {
            int half = e / 128, g = e % 128 / 32, l = e % 32;
            int ql = half * 64 + l + (g % 2 == 1 ? 32 : 0);
            blk[ql] |= (byte)(g < 2 ? q[e] & 0xF : (q[e] & 0xF) << 4);
            blk[128 + half * 32 + l] |= (byte)((q[e] >> 4) << (2 * g));
        }
        for (int i = 0; i < 16; i++) blk[192 + i] = (byte)scales[i];
        BinaryPrimitives.WriteHalfLittleEndian(blk.AsSpan(208), d);
        return blk;
    }

    [Fact]
    public void Q6_K_dequantizes_hand_built_blocks()
    {
        sbyte[] sc0 = [-128, 127, -1, 1, 2, -3, 50, -50, 7, 8, 9, -10, 11, 12, -13, 14];
        sbyte[] sc1 = [1, 2, 3, 4, 5, 6, 7, 8, -8, -7, -6, -5, -4, -3, -2, -1];
        int[] q0 = Enumerable.Range(0, 256).Select(e => (e * 11 + 3) % 64).ToArray();
        int[] q1 = Enumerable.Range(0, 256).Select(e => 63 - e % 64).ToArray();
        byte[] src = [.. PackQ6K((Half)0.25f, sc0, q0), .. PackQ6K((Half)(-3f), sc1, q1)];

        var y = GgmlQuant.Dequantize(GgmlType.Q6_K, src, 512);

        for (int e = 0; e < 256; e++)
        {
            Assert.Equal(0.25f * sc0[e / 16] * (q0[e] - 32), y[e]);
            Assert.Equal(-3f * sc1[e / 16] * (q1[e] - 32), y[256 + e]);
        }
        // By hand: element 0 has q = 3, scale −128: 0.25·−128·(3 − 32) = 928.
        // Element 255 has q = (2805 + 3) % 64 = 56, scale 14: 0.25·14·24 = 84.
        Assert.Equal(928f, y[0]);
        Assert.Equal(84f, y[255]);
        // Block 1, element 0: q = 63, scale 1: −3·1·31.
        Assert.Equal(-93f, y[256]);
    }

    [Fact]
    public void Conversions_reject_partial_blocks_short_input_and_unsupported_types()
    {
        Assert.Throws<ArgumentException>(() => GgmlQuant.Quantize(GgmlType.Q8_0, new float[33]));
        Assert.Throws<ArgumentException>(() => GgmlQuant.Dequantize(GgmlType.Q4_K, new byte[144], 255));
        Assert.Throws<ArgumentException>(() => GgmlQuant.Dequantize(GgmlType.Q6_K, new byte[209], 256));
        Assert.Throws<ArgumentException>(() => GgmlQuant.Dequantize(GgmlType.F32, new byte[7], 2));
        Assert.Throws<NotSupportedException>(() => GgmlQuant.Dequantize(GgmlType.Q8_1, new byte[36], 32));
        Assert.Throws<NotSupportedException>(() => GgmlQuant.Quantize(GgmlType.Q4_K, new float[256]));
    }
}
