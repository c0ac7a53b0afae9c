using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.Reference.Tests.Gguf;

/// <summary>Our conversions against ggml's reference code: same bits out for the same bits in.</summary>
public sealed class GgmlQuantReferenceTests
{
    /// <summary>A stride through all 2^32 float bit patterns plus the values where rounding decisions are
    /// made.</summary>
    static float[] FloatSweep()
    {
        var bits = new List<uint>();
        for (ulong b = 0; b <= uint.MaxValue; b += 4099) bits.Add((uint)b);
        foreach (uint s in new[] { 0u, 0x8000_0000u })
        {
            // ±0, the smallest/largest subnormals, ±inf, quiet/signalling NaNs with payloads, and the f16/bf16
            // halfway points.
            uint[] special = [0, 1, 0x7FFFFF, 0x800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF,
                0x7FA00000, 0x7F80FFFF,
                0x3F801000, 0x3F803000, 0x3F808000, 0x3F818000, 0x477FF000, 0x477FEFFF, 0x33000000, 0x33400000,
                0x387FC000, 0x00008000, 0x00018000];
            foreach (uint x in special) bits.Add(x | s);
        }
        return bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
    }

    static ushort[] U16(byte[] b) => MemoryMarshal.Cast<byte, ushort>(b).ToArray();
    static uint[] Bits(float[] f) => f.Select(BitConverter.SingleToUInt32Bits).ToArray();

    [Fact]
    public void F16_and_bf16_encode_like_ggml()
    {
        var x = FloatSweep();
        Assert.Equal(U16(GgmlNative.Quantize(GgmlType.BF16, x)), U16(GgmlQuant.Quantize(GgmlType.BF16, x)));

        Assert.Equal(U16(GgmlNative.Quantize(GgmlType.F16, x)), U16(GgmlQuant.Quantize(GgmlType.F16, x)));
    }

    [Fact]
    public void F16_and_bf16_decode_like_ggml()
    {
        var all = Enumerable.Range(0, 0x10000).Select(i => (ushort)i).ToArray();
        var bytes = MemoryMarshal.AsBytes(all.AsSpan()).ToArray();
        foreach (var t in new[] { GgmlType.F16, GgmlType.BF16 })
            Assert.Equal(Bits(GgmlNative.Dequantize(t, bytes, all.Length)),
                Bits(GgmlQuant.Dequantize(t, bytes, all.Length)));
    }

    /// <summary>Rows with the awkward cases first (zeros, ties, a lone outlier, positive and negative maxima), then
    /// random ones at many scales.</summary>
    static float[] QuantInput(int blocks32, int seed)
    {
        var rng = new Random(seed);
        var x = new float[blocks32 * 32];
        for (int b = 0; b < blocks32; b++)
        {
            var blk = x.AsSpan(b * 32, 32);
            float scale = MathF.Pow(2, rng.Next(-20, 20));
            switch (b % 8)
            {
                case 0: break; // all zero
                case 1: for (int j = 0; j < 32; j++) blk[j] = (j - 16) * 0.5f * scale; break;
                case 2: blk[rng.Next(32)] = -scale; break;
                case 3: for (int j = 0; j < 32; j++) blk[j] = (j % 3 - 1) * scale; break;
                default: for (int j = 0; j < 32; j++) blk[j] = (float)(rng.NextDouble() * 2 - 1) * scale; break;
            }
        }
        return x;
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    public void Q8_0_and_Q4_0_quantize_to_ggml_bytes(GgmlType type)
    {
        var x = QuantInput(4096, (int)type);
        Assert.Equal(GgmlNative.Quantize(type, x), GgmlQuant.Quantize(type, x));
    }

    /// <summary>Random block bytes with their f16 scale fields forced finite, so every scale/min/quant bit pattern is
    /// covered.</summary>
    static byte[] RandomBlocks(GgmlType type, int blocks, int seed)
    {
        int blockBytes = GgmlTypeTraits.Of(type).BlockBytes;
        int[] halfFields = type switch
        {
            GgmlType.Q4_K or GgmlType.Q4_1 or GgmlType.Q5_1 => [0, 2],
            GgmlType.Q6_K => [208],
            GgmlType.Q2_K => [80, 82],
            GgmlType.Q3_K => [108],
            _ => [0],
        };
        var rng = new Random(seed);
        var bytes = new byte[blocks * blockBytes];
        rng.NextBytes(bytes);
        for (int b = 0; b < blocks; b++)
            foreach (int at in halfFields)
                BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(b * blockBytes + at),
                    (Half)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-14, 8))));
        return bytes;
    }

    [Theory]
    [InlineData(GgmlType.Q8_0)]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_1)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q5_1)]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void Dequantization_matches_ggml_on_random_blocks(GgmlType type)
    {
        int blockSize = GgmlTypeTraits.Of(type).BlockSize;
        int n = 512 * blockSize;
        var bytes = RandomBlocks(type, 512, (int)type);
        Assert.Equal(Bits(GgmlNative.Dequantize(type, bytes, n)), Bits(GgmlQuant.Dequantize(type, bytes, n)));
    }

    [Theory]
    [InlineData(GgmlType.Q2_K)]
    [InlineData(GgmlType.Q3_K)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ4_XS)]
    public void Dequantization_matches_ggml_on_blocks_ggml_quantized(GgmlType type)
    {
        var x = QuantInput(8 * 64, 7);
        var bytes = GgmlNative.Quantize(type, x);
        var ours = GgmlQuant.Dequantize(type, bytes, x.Length);
        Assert.Equal(Bits(GgmlNative.Dequantize(type, bytes, x.Length)), Bits(ours));
        // And the round trip is close: a wrong nibble or scale order would be off by the whole range.
        for (int b = 0; b < x.Length / 256; b++)
        {
            float amax = 0, err = 0;
            for (int j = b * 256; j < b * 256 + 256; j++)
            { amax = MathF.Max(amax, MathF.Abs(x[j])); err = MathF.Max(err, MathF.Abs(x[j] - ours[j])); }
            // q2_K's f16 mins overflow past ~2^20 (ggml's own bytes then hold inf, which the bit check above covers)
            if (type == GgmlType.Q2_K && amax > 1 << 20) continue;
            float bound = type switch
            {
                GgmlType.Q2_K => 0.6f,
                GgmlType.Q3_K => 0.3f,
                GgmlType.Q4_K or GgmlType.IQ4_NL or GgmlType.IQ4_XS => 0.2f,
                _ => 0.05f,
            };
            Assert.True(err <= amax * bound,
                $"{type} block {b}: max error {err} for max |x| {amax}");
        }
    }

    [Fact]
    public void Every_type_has_the_name_and_block_layout_ggml_gives_it()
    {
        foreach (var t in GgmlTypeTraits.All)
            Assert.Equal(GgmlNative.Traits(t.Type), (t.Name, (long)t.BlockSize, (long)t.BlockBytes));
    }
}
