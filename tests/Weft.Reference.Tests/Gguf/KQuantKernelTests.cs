using System.Runtime.Intrinsics.X86;
using Weft.GpuRuntime.Engine.Cpu;
using Weft.Models.Gguf;

namespace Weft.Reference.Tests.Gguf;

/// <summary>The CPU backend's q8_K activations and K-quant dot products against ggml-cpu's own, bit for bit.</summary>
public sealed unsafe class KQuantKernelTests
{
    static float[] Random(Random rng, int n, float scale) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    [Theory]
    [InlineData(256)]
    [InlineData(768)]
    [InlineData(2048)]
    public void Activations_quantize_to_the_q8_K_blocks_of_ggml(int k) =>
        AssertQuantizesAsGgml(Random(new Random(k), k, 3f));

    /// <summary>The first value of the largest magnitude sets the scale's sign (−m before m in the first block, m
    /// before −m in the second), products exactly halfway between two integers round to even, a NaN is passed over
    /// in the search for the largest (third block), and a block of zeros quantizes to zeros.</summary>
    [Fact]
    public void Activations_with_tied_magnitudes_halfway_products_and_a_nan_quantize_as_ggml_s()
    {
        const float m = 127f / 128f; // the factor −127 / max is then ±128 exactly
        var x = Random(new Random(7), 1024, 0.9f);
        (x[10], x[200]) = (-m, m);
        (x[20], x[21], x[22]) = (2.5f / 128, 3.5f / 128, -2.5f / 128);
        (x[256 + 3], x[256 + 255]) = (m, -m);
        x[512 + 40] = float.NaN;
        Array.Clear(x, 768, 256);
        AssertQuantizesAsGgml(x);
    }

    static void AssertQuantizesAsGgml(float[] x)
    {
        int k = x.Length;
        var q = new sbyte[k];
        var d = new float[k / 256];
        var sums = new short[k / 16];
        fixed (float* px = x, pd = d)
        fixed (sbyte* pq = q)
        fixed (short* ps = sums)
            Quantize.RowQ8K(px, pq, pd, ps, k);

        var theirs = GgmlNative.QuantizeQ8K(x);
        for (int b = 0; b < k / 256; b++)
        {
            var block = theirs.AsSpan(b * 292, 292);
            Assert.Equal(BitConverter.ToSingle(block), d[b]);
            Assert.Equal(block.Slice(4, 256).ToArray().Select(v => (sbyte)v), q.Skip(b * 256).Take(256));
            for (int g = 0; g < 16; g++) Assert.Equal(BitConverter.ToInt16(block.Slice(260 + 2 * g)), sums[b * 16 + g]);
        }
    }

    [Theory]
    [InlineData(GgmlType.Q6_K, 256)]
    [InlineData(GgmlType.Q6_K, 768)]
    [InlineData(GgmlType.Q6_K, 4096)]
    [InlineData(GgmlType.Q5_K, 256)]
    [InlineData(GgmlType.Q5_K, 2048)]
    [InlineData(GgmlType.Q3_K, 256)]
    [InlineData(GgmlType.Q3_K, 2048)]
    [InlineData(GgmlType.Q2_K, 256)]
    [InlineData(GgmlType.Q2_K, 2048)]
    [InlineData(GgmlType.IQ4_XS, 256)]
    [InlineData(GgmlType.IQ4_XS, 2048)]
    public void Dot_products_equal_ggml_cpu_bit_for_bit(GgmlType type, int k)
    {
        var rng = new Random(k + (int)type);
        const int rows = 5, batch = 6;
        var weights = Enumerable.Range(0, rows).SelectMany(_ => GgmlNative.Quantize(type, Random(rng, k, 0.05f)))
            .ToArray();
        var x = Random(rng, batch * k, 2f);
        long rowBytes = GgmlTypeTraits.RowBytes(type, k);
        var q = new sbyte[batch * k];
        var d = new float[batch * k / 256];
        var sums = new short[batch * k / 16];
        var y = new float[batch * rows];
        fixed (float* px = x, pd = d, py = y)
        fixed (sbyte* pq = q)
        fixed (short* ps = sums)
        fixed (byte* pw = weights)
        {
            for (int r = 0; r < batch; r++)
                Quantize.RowQ8K(px + r * k, pq + r * k, pd + r * (k / 256), ps + r * (k / 16), k);
            switch (type)
            {
                case GgmlType.Q6_K: KQuantKernels.Q6K(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows); break;
                case GgmlType.Q5_K: KQuantKernels.Q5K(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows); break;
                case GgmlType.Q3_K: KQuantLowBitKernels.Q3K(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows); break;
                case GgmlType.IQ4_XS: IQ4Kernels.IQ4XS(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows); break;
                // the vec_dot order (AVX-512 builds multiply repacked q2_K, in the order the parity tests check)
                case GgmlType.Q2_K when Avx2.IsSupported && Fma.IsSupported:
                    KQuantLowBitKernels.Q2KAvx2(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows, repacked: false);
                    break;
                default: KQuantLowBitKernels.Q2KPortable(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows); break;
            }
        }
        for (int r = 0; r < batch; r++)
        {
            var xq = GgmlNative.QuantizeQ8K(x.AsSpan(r * k, k));
            for (int n = 0; n < rows; n++)
                Assert.Equal(GgmlNative.VecDotQ8K(type, weights.AsSpan((int)(n * rowBytes), (int)rowBytes), xq, k),
                    y[r * rows + n]);
        }
    }

    /// <summary>
    /// iq4_nl against q8_0 activations: with AVX2 against ggml's gemv over the rows repacked as its AVX2 builds repack
    /// them, without against its vec_dot (what its AVX build runs).
    /// </summary>
    [Theory]
    [InlineData(256)]
    [InlineData(2048)]
    [InlineData(800)]
    public void Iq4_nl_products_equal_ggml_cpu_bit_for_bit(int k)
    {
        var rng = new Random(k);
        const int rows = 8, batch = 5;
        var weights = Enumerable.Range(0, rows)
            .SelectMany(_ => GgmlNative.Quantize(GgmlType.IQ4_NL, Random(rng, k, 0.05f))).ToArray();
        var x = Random(rng, batch * k, 2f);
        var q = new sbyte[batch * k];
        var c = new int[batch * k / 4];
        var d = new float[batch * k / 32];
        var y = new float[batch * rows];
        fixed (float* px = x, pd = d, py = y)
        fixed (sbyte* pq = q)
        fixed (int* pc = c)
        fixed (byte* pw = weights)
        {
            for (int r = 0; r < batch; r++) Quantize.RowQ8(px + r * k, pq + r * k, pc + r * k / 4, pd + r * k / 32, k);
            IQ4Kernels.IQ4NL(pw, pq, pd, py, null, batch, k, rows, 0, rows);
        }
        int rowBytes = (int)GgmlTypeTraits.RowBytes(GgmlType.IQ4_NL, k);
        for (int r = 0; r < batch; r++)
        {
            var xq = GgmlNative.QuantizeQ8_0(x.AsSpan(r * k, k));
            var theirs = Avx2.IsSupported && Fma.IsSupported
                ? GgmlNative.GemvIQ4NL8x8(weights, xq, k)
                : Enumerable.Range(0, rows)
                    .Select(n => GgmlNative.VecDotIQ4NL(weights.AsSpan(n * rowBytes, rowBytes), xq, k)).ToArray();
            Assert.Equal(theirs, y.Skip(r * rows).Take(rows));
        }
    }

    /// <summary>q2_K in the order of ggml's AVX-512 builds, which repack it: against ggml's gemv over the rows
    /// repacked as they repack them (its AVX2 code, which every build with AVX2 carries).</summary>
    [Theory]
    [InlineData(256)]
    [InlineData(2048)]
    public void Q2_K_products_in_the_repacked_order_equal_ggml_s_gemv(int k)
    {
        Assert.SkipUnless(Avx2.IsSupported && Fma.IsSupported, "the repacked order is an AVX2 kernel's");
        var rng = new Random(k);
        const int rows = 8, batch = 5;
        var weights = Enumerable.Range(0, rows)
            .SelectMany(_ => GgmlNative.Quantize(GgmlType.Q2_K, Random(rng, k, 0.05f))).ToArray();
        var x = Random(rng, batch * k, 2f);
        var q = new sbyte[batch * k];
        var d = new float[batch * k / 256];
        var sums = new short[batch * k / 16];
        var y = new float[batch * rows];
        fixed (float* px = x, pd = d, py = y)
        fixed (sbyte* pq = q)
        fixed (short* ps = sums)
        fixed (byte* pw = weights)
        {
            for (int r = 0; r < batch; r++)
                Quantize.RowQ8K(px + r * k, pq + r * k, pd + r * (k / 256), ps + r * (k / 16), k);
            KQuantLowBitKernels.Q2KAvx2(pw, pq, pd, ps, py, null, batch, k, rows, 0, rows, repacked: true);
        }
        for (int r = 0; r < batch; r++)
            Assert.Equal(GgmlNative.GemvQ2K8x8(weights, GgmlNative.QuantizeQ8K(x.AsSpan(r * k, k)), k),
                y.Skip(r * rows).Take(rows));
    }
}
