using Weft.GpuRuntime.Engine.Cpu;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The K-quant kernels against scalar references written from ggml's block layouts, on random
/// superblocks.</summary>
public sealed unsafe class KQuantKernelTests
{
    /// <summary>Random blocks: every quant and scale byte random, the f16 scales small and positive.</summary>
    static byte[] RandomBlocks(Random rng, int blocks, int blockBytes, int[] halfOffsets)
    {
        var w = new byte[blocks * blockBytes];
        rng.NextBytes(w);
        for (int b = 0; b < blocks; b++)
            foreach (int o in halfOffsets)
                BitConverter.TryWriteBytes(w.AsSpan(b * blockBytes + o), (Half)(0.001f + 0.01f * rng.NextSingle()));
        return w;
    }

    /// <summary>Activations as q8_K: quants, scales, group sums.</summary>
    static (sbyte[] Q, float[] D, short[] Sums) Activations(Random rng, int m, int k)
    {
        var x = Enumerable.Range(0, m * k).Select(_ => rng.NextSingle() * 4 - 2).ToArray();
        var q = new sbyte[m * k];
        var d = new float[m * k / 256];
        var sums = new short[m * k / 16];
        fixed (float* px = x, pd = d)
        fixed (sbyte* pq = q)
        fixed (short* ps = sums)
            for (int r = 0; r < m; r++)
                Quantize.RowQ8K(px + r * k, pq + r * k, pd + r * (k / 256), ps + r * (k / 16), k);
        return (q, d, sums);
    }

    [Theory]
    [InlineData(1, 256)]
    [InlineData(3, 768)]
    [InlineData(6, 1024)]
    [InlineData(9, 512)]
    [InlineData(13, 512)]
    public void Q6_K_kernel_equals_the_scalar_path_bit_for_bit(int m, int k) =>
        FastEqualsPortable(m, k, KQuantKernels.Q6KBlockBytes, [208], &KQuantKernels.Q6K, &KQuantKernels.Q6KPortable);

    [Theory]
    [InlineData(1, 256)]
    [InlineData(3, 768)]
    [InlineData(6, 1024)]
    [InlineData(9, 512)]
    public void Q5_K_kernel_equals_the_scalar_path_bit_for_bit(int m, int k) =>
        FastEqualsPortable(m, k, KQuantKernels.Q5KBlockBytes, [0, 2], &KQuantKernels.Q5K, &KQuantKernels.Q5KPortable);

    [Theory]
    [InlineData(1, 256)]
    [InlineData(3, 768)]
    [InlineData(6, 1024)]
    [InlineData(9, 512)]
    public void Q6_K_128_bit_kernel_equals_the_scalar_path_bit_for_bit(int m, int k) =>
        FastEqualsPortable(m, k, KQuantKernels.Q6KBlockBytes, [208], &KQuantKernels.Q6K128,
            &KQuantKernels.Q6KPortable);

    [Theory]
    [InlineData(1, 256)]
    [InlineData(3, 768)]
    [InlineData(6, 1024)]
    [InlineData(9, 512)]
    public void Q5_K_128_bit_kernel_equals_the_scalar_path_bit_for_bit(int m, int k) =>
        FastEqualsPortable(m, k, KQuantKernels.Q5KBlockBytes, [0, 2], &KQuantKernels.Q5K128,
            &KQuantKernels.Q5KPortable);

    [Theory]
    [InlineData(1, 256)]
    [InlineData(3, 768)]
    [InlineData(6, 1024)]
    [InlineData(9, 512)]
    [InlineData(13, 512)]
    public void Q4_K_kernels_at_both_widths_equal_the_scalar_path_bit_for_bit(int m, int k)
    {
        FastEqualsPortable(m, k, KQuantKernels.Q4KBlockBytes, [0, 2], &KQuantKernels.Q4K, &KQuantKernels.Q4KPortable);
        FastEqualsPortable(m, k, KQuantKernels.Q4KBlockBytes, [0, 2], &KQuantKernels.Q4K128,
            &KQuantKernels.Q4KPortable);
    }

    static void FastEqualsPortable(int m, int k, int blockBytes, int[] halfOffsets,
        delegate*<byte*, sbyte*, float*, short*, float*, float*, int, int, int, int, int, void> fastKernel,
        delegate*<byte*, sbyte*, float*, short*, float*, float*, int, int, int, int, int, void> portableKernel)
    {
        const int rows = 8;
        var rng = new Random(m * k);
        var w = RandomBlocks(rng, rows * k / 256, blockBytes, halfOffsets);
        var (q, d, sums) = Activations(rng, m, k);
        var bias = Enumerable.Range(0, rows).Select(i => i * 0.25f).ToArray();
        var fast = new float[m * rows];
        var scalar = new float[m * rows];
        fixed (byte* pw = w)
        fixed (sbyte* pq = q)
        fixed (float* pd = d, pf = fast, pr = scalar, pb = bias)
        fixed (short* ps = sums)
        {
            fastKernel(pw, pq, pd, ps, pf, pb, m, k, rows, 0, rows);
            portableKernel(pw, pq, pd, ps, pr, pb, m, k, rows, 0, rows);
        }
        Assert.Equal(scalar, fast);
        Assert.Contains(fast, v => v != 0);
    }

    [Theory]
    [InlineData(1, 256, 8)]
    [InlineData(1, 512, 7)]
    [InlineData(5, 768, 8)]
    [InlineData(8, 1024, 6)]
    public void Q4_K_kernel_follows_ggml_gemv_chains_per_superblock_for_every_row_of_the_batch(int m, int k, int rows)
    {
        var rng = new Random(m + k);
        var w = RandomBlocks(rng, rows * k / 256, KQuantKernels.Q4KBlockBytes, [0, 2]);
        var (q, d, sums) = Activations(rng, m, k);
        var y = new float[m * rows];
        var y128 = new float[m * rows];
        fixed (byte* pw = w)
        fixed (sbyte* pq = q)
        fixed (float* pd = d, py = y, py128 = y128)
        fixed (short* ps = sums)
        {
            // the rows in two chunks, the second not a multiple of four
            KQuantKernels.Q4K(pw, pq, pd, ps, py, null, m, k, rows, 0, 4);
            KQuantKernels.Q4K(pw, pq, pd, ps, py, null, m, k, rows, 4, rows);
            KQuantKernels.Q4K128(pw, pq, pd, ps, py128, null, m, k, rows, 0, 4);
            KQuantKernels.Q4K128(pw, pq, pd, ps, py128, null, m, k, rows, 4, rows);
        }
        Assert.Equal(y, y128);
        for (int r = 0; r < m; r++)
            for (int n = 0; n < rows; n++)
                Assert.Equal(Q4KReference(w.AsSpan(n * k / 256 * 144, k / 256 * 144), q.AsSpan(r * k, k),
                    d[(r * k / 256)..], sums[(r * k / 16)..]), y[r * rows + n]);
    }

    static float Q4KReference(ReadOnlySpan<byte> w, ReadOnlySpan<sbyte> x, float[] xd, short[] xsums)
    {
        float acc = 0, accMin = 0;
        for (int b = 0; b < x.Length / 256; b++)
        {
            var blk = w.Slice(b * 144, 144);
            var sc = blk.Slice(4, 12);
            int[] isum = new int[4], imin = new int[4];
            for (int j = 0; j < 8; j++)
            {
                int scale = j < 4 ? sc[j] & 63 : (sc[j + 4] & 0xF) | (sc[j - 4] >> 6) << 4;
                int min = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
                int dot = 0;
                for (int l = 0; l < 32; l++)
                {
                    int quant = j % 2 == 0 ? blk[16 + 32 * (j / 2) + l] & 0xF : blk[16 + 32 * (j / 2) + l] >> 4;
                    dot += quant * x[b * 256 + 32 * j + l];
                }
                isum[j / 2] += scale * dot;
                imin[j / 2] += min * (xsums[b * 16 + 2 * j] + xsums[b * 16 + 2 * j + 1]);
            }
            float dw = (float)BitConverter.ToHalf(blk) * xd[b], dm = (float)BitConverter.ToHalf(blk[2..]) * xd[b];
            acc = MathF.FusedMultiplyAdd(isum.Sum(), dw, acc);
            accMin = MathF.FusedMultiplyAdd(imin.Sum(), dm, accMin);
        }
        return acc - accMin;
    }
}
