using Weft.GpuRuntime.Engine.Cpu;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The legacy block kernels (q4_0 …) against a dot product of ggml's reference dequantization.</summary>
public sealed unsafe class LegacyKernelTests
{
    [Fact]
    public void Every_finite_half_scale_converts_exactly_one_at_a_time_and_eight_at_a_time()
    {
        for (int i = 0; i < 65536; i++)
        {
            var half = BitConverter.UInt16BitsToHalf((ushort)i);
            if (!Half.IsFinite(half)) continue;
            ushort bits = (ushort)i;
            int expected = BitConverter.SingleToInt32Bits((float)half);
            Assert.Equal(expected, BitConverter.SingleToInt32Bits(HalfMath.F16((byte*)&bits)));
            var eight = HalfMath.ToSingle(System.Runtime.Intrinsics.Vector256.Create((int)(short)bits));
            Assert.Equal(expected, BitConverter.SingleToInt32Bits(eight[i % 8]));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(37)]
    public void Q4_0_kernels_equal_a_dot_product_of_the_dequantized_blocks(int m) =>
        Check<Q4_0Block>(GgmlType.Q4_0, m);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void Q4_1_kernels_equal_a_dot_product_of_the_dequantized_blocks(int m) =>
        Check<Q4_1Block>(GgmlType.Q4_1, m);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void Q5_0_kernels_equal_a_dot_product_of_the_dequantized_blocks(int m) =>
        Check<Q5_0Block>(GgmlType.Q5_0, m);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void Q5_1_kernels_equal_a_dot_product_of_the_dequantized_blocks(int m) =>
        Check<Q5_1Block>(GgmlType.Q5_1, m);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(16)]
    public void Q4_0_in_eight_row_groups_gives_the_bits_of_the_file_layout_kernel(int m)
    {
        Assert.SkipUnless(Q4_0x8Kernels.Fast, "the eight-row kernel needs AVX2 and FMA");
        const int k = 256, n = 24;
        var rng = new Random(m + 100);
        var w = new byte[n * k / 32 * 18];
        rng.NextBytes(w);
        for (int b = 0; b < w.Length; b += 18)
            BitConverter.TryWriteBytes(w.AsSpan(b), (Half)((rng.NextSingle() - 0.5f) * 0.1f));
        var x = Enumerable.Range(0, m * k).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => rng.NextSingle()).ToArray();
        var xq = new sbyte[m * k];
        var xc = new int[m * k / 4];
        var xd = new float[m * k / 32];
        var packed = new byte[w.Length];
        var unpacked = new byte[w.Length];
        var inPlace = new float[m * n];
        var grouped = new float[m * n];
        fixed (byte* ws = w, pw = packed)
        fixed (float* xs = x, ds = xd, ys = inPlace, gs = grouped, bs = bias)
        fixed (sbyte* qs = xq)
        fixed (int* cs = xc)
        {
            for (int r = 0; r < m; r++) Quantize.RowQ8(xs + r * k, qs + r * k, cs + r * k / 4, ds + r * k / 32, k);
            Q4_0x8Kernels.Repack(ws, pw, n, k);
            for (int row = 0; row < n; row++)
                Q4_0x8Kernels.Unpack(pw, row, k, unpacked.AsSpan(row * k / 32 * 18, k / 32 * 18));
            LegacyKernels.MatMul<Q4_0Block>(ws, qs, cs, ds, null, ys, bs, m, k, n, 0, n);
            // two chunks, as the worker pool hands them out
            Q4_0x8Kernels.MatMul(pw, qs, cs, ds, gs, bs, m, k, n, 0, 8);
            Q4_0x8Kernels.MatMul(pw, qs, cs, ds, gs, bs, m, k, n, 8, n);
        }
        Assert.Equal(w, unpacked);
        Assert.Equal(inPlace, grouped);
    }

    static void Check<TBlock>(GgmlType type, int m) where TBlock : struct, ILegacyBlock
    {
        const int k = 256, n = 22; // output rows not a multiple of the tiles of four
        var rng = new Random(m);
        var traits = GgmlTypeTraits.Of(type);
        // random blocks: any bit pattern is a valid quant, scales (and minimums) are random halves of either sign
        var w = new byte[n * traits.RowBytes(k)];
        rng.NextBytes(w);
        for (int b = 0; b < w.Length; b += traits.BlockBytes)
            for (int at = 0; at < (TBlock.HasMin ? 4 : 2); at += 2)
                BitConverter.TryWriteBytes(w.AsSpan(b + at), (Half)((rng.NextSingle() - 0.5f) * 0.1f));
        var x = new float[m * k];
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() - 0.5f;
        var bias = new float[n];
        for (int i = 0; i < n; i++) bias[i] = rng.NextSingle();
        var xq = new sbyte[m * k];
        var xc = new int[m * k / 4];
        var xd = new float[m * k / 32];
        var xsum = new float[m * k / 32];
        var fast = new float[m * n];
        var portable = new float[m * n];
        var solo = new float[n];
        fixed (byte* ws = w)
        fixed (float* xs = x, ds = xd, ss = xsum, ys = fast, ps = portable, os = solo, bs = bias)
        fixed (sbyte* qs = xq)
        fixed (int* cs = xc)
        {
            for (int r = 0; r < m; r++)
            {
                Quantize.RowQ8(xs + r * k, qs + r * k, cs + r * k / 4, ds + r * k / 32, k);
                LegacyKernels.BlockSums(xs + r * k, cs + r * k / 4, ss + r * k / 32, k);
            }
            LegacyKernels.Portable<TBlock>(ws, qs, ds, ss, ps, bs, m, k, n, 0, n);
            // the process's path (AVX-VNNI, AVX2, 128-bit: CI runs these tests under each)
            LegacyKernels.MatMul<TBlock>(ws, qs, cs, ds, ss, ys, bs, m, k, n, 0, n);
            // the last activation row alone: bit for bit what it got in the batch
            int last = m - 1;
            LegacyKernels.MatMul<TBlock>(ws, qs + last * k, cs + last * k / 4, ds + last * k / 32,
                ss + last * k / 32, os, bs, 1, k, n, 0, n);
        }
        Assert.Equal(fast.AsSpan((m - 1) * n, n).ToArray(), solo);
        // both paths add in ggml's order, fused exactly where the portable path fuses, so they agree to the bit
        Assert.Equal(portable, fast);
        var wf = GgmlQuant.Dequantize(type, w, (long)n * k);
        for (int r = 0; r < m; r++)
            for (int o = 0; o < n; o++)
            {
                double expected = bias[o], magnitude = Math.Abs(bias[o]);
                for (int j = 0; j < k; j++)
                {
                    // with a minimum, m·Σ(dx·qx) is q8_1's m·s instead, s = d·Σq rounded to f16 as ggml stores it
                    int at = (o * k + j) / 32 * traits.BlockBytes;
                    double min = TBlock.HasMin ? (double)BitConverter.ToHalf(w, at + 2) : 0;
                    double t = (wf[o * k + j] - min) * xd[(r * k + j) / 32] * xq[r * k + j];
                    if (TBlock.HasMin && j % 32 == 0) t += min * xsum[(r * k + j) / 32];
                    expected += t;
                    magnitude += Math.Abs(t);
                }
                Assert.Equal(expected, portable[r * n + o], 1e-5 * magnitude);
            }
    }
}
