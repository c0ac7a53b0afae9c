using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Weft.GpuRuntime.Engine.Cpu;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The vectorised conversions and kernels of the cpu backend against scalar references, exhaustively where the
/// domain is small.</summary>
public sealed unsafe class CpuKernelTests
{
    [Fact]
    public void Every_finite_half_converts_exactly_at_every_vector_width_for_weights_and_for_the_cache()
    {
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        fixed (ushort* h = halves)
            foreach (bool cached in new[] { false, true })
            {
                if (Vector512.IsHardwareAccelerated) AssertExact<Vector512<float>>(h, cached);
                if (Vector256.IsHardwareAccelerated) AssertExact<Vector256<float>>(h, cached);
                AssertExact<Vector128<float>>(h, cached);
            }
    }

    static void AssertExact<TVec>(ushort* h, bool cached) where TVec : struct
    {
        var lanes = new float[Simd<TVec>.Count];
        fixed (float* l = lanes)
            for (int i = 0; i < 65536; i += lanes.Length)
            {
                Simd<TVec>.Store(cached ? Simd<TVec>.LoadCachedHalf(h + i) : Simd<TVec>.LoadHalf(h + i), l);
                for (int j = 0; j < lanes.Length; j++)
                {
                    var half = BitConverter.UInt16BitsToHalf((ushort)(i + j));
                    if (Half.IsFinite(half))
                        Assert.Equal(BitConverter.SingleToInt32Bits((float)half), BitConverter.SingleToInt32Bits(l[j]));
                }
            }
    }

    [Fact]
    public void Every_half_below_64_scaled_at_load_widens_to_its_exact_value_at_every_vector_width()
    {
        // every bit pattern whose value is finite and below 64 in magnitude: zeros, subnormals, normals, both signs
        var below = Enumerable.Range(0, 65536).Select(i => (ushort)i).Where(h => (h & 0x7C00) <= 20 << 10).ToArray();
        var scaled = new ushort[below.Length];
        fixed (ushort* src = below, dst = scaled)
        {
            Assert.True(ScaledF16Format.TryScale(src, dst, below.Length));
            if (Vector512.IsHardwareAccelerated) AssertScaledExact<Vector512<float>>(below, dst);
            if (Vector256.IsHardwareAccelerated) AssertScaledExact<Vector256<float>>(below, dst);
            AssertScaledExact<Vector128<float>>(below, dst);
        }
        for (int i = 0; i < below.Length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits((float)BitConverter.UInt16BitsToHalf(below[i])),
                BitConverter.SingleToInt32Bits(ScaledF16Format.Scalar(scaled[i])));
    }

    static void AssertScaledExact<TVec>(ushort[] halves, ushort* scaled) where TVec : struct
    {
        var lanes = new float[Simd<TVec>.Count];
        fixed (float* l = lanes)
            for (int i = 0; i + lanes.Length <= halves.Length; i += lanes.Length)
            {
                Simd<TVec>.Store(Simd<TVec>.LoadScaledHalf(scaled + i), l);
                for (int j = 0; j < lanes.Length; j++)
                    Assert.Equal(BitConverter.SingleToInt32Bits((float)BitConverter.UInt16BitsToHalf(halves[i + j])),
                        BitConverter.SingleToInt32Bits(l[j]));
            }
    }

    [Theory]
    [InlineData(64f, 3)]
    [InlineData(-70000f, 8)] // -inf as a half
    [InlineData(float.NaN, 17)]
    public void A_matrix_with_a_value_of_64_or_more_is_not_scaled(float value, int at)
    {
        var halves = Enumerable.Repeat(BitConverter.HalfToUInt16Bits((Half)0.5f), 24).ToArray();
        halves[at] = BitConverter.HalfToUInt16Bits((Half)value);
        var scaled = new ushort[halves.Length];
        fixed (ushort* src = halves, dst = scaled)
            Assert.False(ScaledF16Format.TryScale(src, dst, halves.Length));
    }

    [Fact]
    public void Rounding_to_half_and_bf16_matches_the_scalar_conversion()
    {
        var rng = new Random(3);
        var x = new float[1 << 16];
        for (int i = 0; i < x.Length; i++)
            x[i] = (i % 4) switch
            {
                0 => (rng.NextSingle() - 0.5f) * 8,                                  // ordinary activations
                1 => (rng.NextSingle() - 0.5f) * 1e-4f,                              // around the f16 subnormal range
                2 => BitConverter.Int32BitsToSingle(rng.Next() & ~0x1FFF | 0x1000),  // exact f16 ties
                _ => (rng.NextSingle() - 0.5f) * 140000f,                            // beyond the f16 range
            };
        var half = new float[x.Length];
        var bf16 = new float[x.Length];
        fixed (float* src = x, h = half, b = bf16)
        {
            HalfMath.RoundToHalf(src, h, x.Length);
            HalfMath.RoundToBf16(src, b, x.Length);
        }
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal((float)(Half)x[i], half[i]);
            Assert.Equal(GgmlQuant.BFloat16ToSingle(GgmlQuant.SingleToBFloat16(x[i])), bf16[i]);
        }
    }

    [Fact]
    public void Activation_quantization_is_ggmls_q8_0()
    {
        var rng = new Random(5);
        const int k = 4096;
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (rng.NextSingle() - 0.5f) * (1 + i % 7);
        x[100] = 0; // a block may hold exact zeros and ties
        for (int i = 32; i < 64; i++) x[i] = 0; // and an all-zero block has scale 0
        var q = new sbyte[k];
        var c = new int[k / 4];
        var d = new float[k / 32];
        fixed (float* xs = x, ds = d)
        fixed (sbyte* qs = q)
        fixed (int* cs = c)
            Quantize.RowQ8(xs, qs, cs, ds, k);
        for (int b = 0; b < k / 32; b++)
        {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[b * 32 + j]));
            Assert.Equal((float)(Half)(amax / 127f), d[b]);
            float id = amax != 0 ? 127f / amax : 0;
            for (int j = 0; j < 32; j++)
                Assert.Equal((sbyte)MathF.Round(x[b * 32 + j] * id, MidpointRounding.ToEven), q[b * 32 + j]);
            // the VNNI correction: −128 times the sum of each lane's four quants
            for (int lane = 0; lane < 8; lane++)
                Assert.Equal(-128 * (q[b * 32 + 4 * lane] + q[b * 32 + 4 * lane + 1] + q[b * 32 + 4 * lane + 2]
                    + q[b * 32 + 4 * lane + 3]), c[b * 8 + lane]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(7)]
    [InlineData(33)]
    public void Matmul_kernels_agree_with_a_plain_dot_product(int m)
    {
        const int k = 96, n = 22; // rows not a multiple of the tiles, columns not a multiple of the vector width
        var rng = new Random(m);
        var w = new ushort[n * k];
        var x = new float[m * k];
        var bias = new float[n];
        for (int i = 0; i < w.Length; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() - 0.5f));
        // zeros and subnormals among the weights, which the scaled copy must keep exact
        for (int i = 0; i < w.Length; i += 7)
            w[i] = (ushort)(i % 3 == 0 ? 0 : rng.Next(1, 1024) | (i % 2 == 0 ? 0x8000 : 0));
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Half)(rng.NextSingle() - 0.5f);
        for (int i = 0; i < n; i++) bias[i] = rng.NextSingle();
        var y = new float[m * n];
        var fromScaled = new float[m * n];
        var scaled = new ushort[w.Length];
        var scratch = new float[4 * k];
        fixed (ushort* ws = w, ss = scaled)
        fixed (float* xs = x, ys = y, bs = bias, sc = scratch, fs = fromScaled)
        {
            MatMulKernels.Float(new HalfRows<F16Format>(ws, k), xs, ys, bs, m, k, n, 0, n, sc);
            Assert.True(ScaledF16Format.TryScale(ws, ss, w.Length));
            MatMulKernels.Float(new HalfRows<ScaledF16Format>(ss, k), xs, fs, bs, m, k, n, 0, n, sc);
        }
        Assert.Equal(y, fromScaled); // the same f32 weights, so the same bits
        for (int r = 0; r < m; r++)
            for (int o = 0; o < n; o++)
            {
                double expected = bias[o];
                for (int j = 0; j < k; j++)
                    expected += (double)(float)BitConverter.UInt16BitsToHalf(w[o * k + j]) * x[r * k + j];
                Assert.Equal(expected, y[r * n + o], 1e-4);
            }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(5)]
    public void Matrix_vector_product_over_rows_apart_gives_each_output_the_bits_a_batch_gives_it(int m)
    {
        // rows of 2 KiB: the matrix-vector kernel reads eight rows 16 apart over the first 128 rows, then 9 apart over
        // the next 72, then the three left over one at a time; a batch reads four consecutive rows at a time
        const int k = 1024, n = 203;
        var rng = new Random(m);
        var w = new ushort[n * k];
        var x = new float[m * k];
        var bias = new float[n];
        for (int i = 0; i < w.Length; i++) w[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() - 0.5f));
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() - 0.5f;
        for (int i = 0; i < n; i++) bias[i] = rng.NextSingle();
        var alone = new float[n];
        var batch = new float[m * n];
        var scratch = new float[4 * k];
        fixed (ushort* ws = w)
        fixed (float* xs = x, ys = alone, yb = batch, bs = bias, sc = scratch)
        {
            MatMulKernels.Float(new HalfRows<F16Format>(ws, k), xs, ys, bs, 1, k, n, 0, n, sc);
            MatMulKernels.Float(new HalfRows<F16Format>(ws, k), xs, yb, bs, m, k, n, 0, n, sc);
        }
        Assert.Equal(alone, batch.AsSpan(0, n).ToArray());
        for (int o = 0; o < n; o += 29)
        {
            double expected = bias[o];
            for (int j = 0; j < k; j++) expected += (double)(float)BitConverter.UInt16BitsToHalf(w[o * k + j]) * x[j];
            Assert.Equal(expected, alone[o], 1e-3);
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(16)]
    public void Q8_0_kernel_gives_each_batch_row_the_bits_it_gets_alone_and_the_exact_integer_dots(int m)
    {
        const int k = 160, n = 14; // groups of four weight rows and two left over; a block count not a multiple of 4
        const int blocks = k / 32;
        var rng = new Random(m);
        var w = new byte[n * k];
        var wd = new float[n * blocks];
        var x = new float[m * k];
        var bias = new float[n];
        rng.NextBytes(w);
        for (int i = 0; i < k; i++) w[i] = 0; // −128 everywhere in the first row: its magnitude only fits unsigned
        for (int i = 0; i < wd.Length; i++) wd[i] = (float)(Half)(rng.NextSingle() * 0.01f);
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() - 0.5f;
        for (int i = 0; i < n; i++) bias[i] = rng.NextSingle();
        var q = new sbyte[m * k];
        var c = new int[m * k / 4];
        var d = new float[m * blocks];
        var batched = new float[m * n];
        var alone = new float[n];
        fixed (byte* ws = w)
        fixed (float* wds = wd, xs = x, bs = bias, ds = d, ys = batched, ya = alone)
        fixed (sbyte* qs = q)
        fixed (int* cs = c)
        {
            for (int r = 0; r < m; r++)
                Quantize.RowQ8(xs + r * k, qs + r * k, cs + r * k / 4, ds + r * blocks, k);
            MatMulKernels.Q8(ws, wds, qs, cs, ds, ys, bs, m, k, n, 0, n);
            for (int r = 0; r < m; r++)
            {
                MatMulKernels.Q8(ws, wds, qs + r * k, cs + r * k / 4, ds + r * blocks, ya, bs, 1, k, n, 0, n);
                for (int o = 0; o < n; o++)
                {
                    Assert.Equal(alone[o], batched[r * n + o]);
                    double expected = bias[o];
                    for (int b = 0; b < blocks; b++)
                    {
                        int dot = 0;
                        for (int j = b * 32; j < b * 32 + 32; j++) dot += (w[o * k + j] - 128) * q[r * k + j];
                        expected += (double)wd[o * blocks + b] * d[r * blocks + b] * dot;
                    }
                    Assert.Equal(expected, batched[r * n + o], 1e-4);
                }
            }
        }
    }

    /// <summary>
    /// ggml's q8_0 dot product (vec_dot_q8_0_q8_0 and llamafile's tinyBLAS on x86) keeps eight float lanes of four
    /// bytes each, adds dw·dx × the lane's integer sum per block with one fused multiply-add, and sums the lanes as
    /// hsum_float_8: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). The kernel must give those bits exactly, on
    /// every path (the 128-bit one included).
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    public void Q8_0_kernel_sums_each_output_in_the_order_of_ggmls_q8_0_dot_product(int m)
    {
        Assert.SkipWhen(MatMulKernels.Q8Path == Q8Kernel.None, "no q8_0 kernel on this CPU");
        const int k = 256, n = 8, blocks = k / 32;
        var rng = new Random(7 + m);
        var w = new byte[n * k];
        var wd = new float[n * blocks];
        var x = new float[m * k];
        rng.NextBytes(w);
        for (int i = 0; i < wd.Length; i++) wd[i] = (float)(Half)(rng.NextSingle() * 0.01f);
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() - 0.5f;
        var q = new sbyte[m * k];
        var c = new int[m * k / 4];
        var d = new float[m * blocks];
        var y = new float[m * n];
        fixed (byte* ws = w)
        fixed (float* wds = wd, xs = x, ds = d, ys = y)
        fixed (sbyte* qs = q)
        fixed (int* cs = c)
        {
            for (int r = 0; r < m; r++)
                Quantize.RowQ8(xs + r * k, qs + r * k, cs + r * k / 4, ds + r * blocks, k);
            MatMulKernels.Q8(ws, wds, qs, cs, ds, ys, null, m, k, n, 0, n);
        }
        // without FMA (x64 below AVX2) ggml's AVX build multiplies and adds apart, and so does the kernel
        bool fused = Fma.IsSupported || AdvSimd.IsSupported;
        var lanes = new float[8];
        for (int r = 0; r < m; r++)
            for (int o = 0; o < n; o++)
            {
                Array.Clear(lanes);
                for (int b = 0; b < blocks; b++)
                    for (int l = 0; l < 8; l++)
                    {
                        int dot = 0, j0 = b * 32 + 4 * l;
                        for (int j = j0; j < j0 + 4; j++) dot += (w[o * k + j] - 128) * q[r * k + j];
                        float scale = wd[o * blocks + b] * d[r * blocks + b];
                        lanes[l] = fused ? MathF.FusedMultiplyAdd(dot, scale, lanes[l]) : dot * scale + lanes[l];
                    }
                float expected = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
                    + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(y[r * n + o]));
            }
    }
}
