using System.Runtime.Intrinsics;
using Weft.GpuRuntime.Engine.Cpu;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The vectorised conversions and kernels of the cpu backend against scalar references, exhaustively where the
/// domain is small.</summary>
public sealed unsafe class CpuKernelTests
{
    [Fact]
    public void Every_finite_half_converts_exactly_at_every_vector_width()
    {
        var halves = new ushort[65536];
        for (int i = 0; i < halves.Length; i++) halves[i] = (ushort)i;
        fixed (ushort* h = halves)
        {
            if (Vector512.IsHardwareAccelerated) AssertExact<Vector512<float>>(h);
            if (Vector256.IsHardwareAccelerated) AssertExact<Vector256<float>>(h);
            AssertExact<Vector128<float>>(h);
        }
    }

    static void AssertExact<TVec>(ushort* h) where TVec : struct
    {
        var lanes = new float[Simd<TVec>.Count];
        fixed (float* l = lanes)
            for (int i = 0; i < 65536; i += lanes.Length)
            {
                Simd<TVec>.Store(Simd<TVec>.LoadHalf(h + i), l);
                for (int j = 0; j < lanes.Length; j++)
                {
                    var half = BitConverter.UInt16BitsToHalf((ushort)(i + j));
                    if (Half.IsFinite(half))
                        Assert.Equal(BitConverter.SingleToInt32Bits((float)half), BitConverter.SingleToInt32Bits(l[j]));
                }
            }
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
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Half)(rng.NextSingle() - 0.5f);
        for (int i = 0; i < n; i++) bias[i] = rng.NextSingle();
        var y = new float[m * n];
        var scratch = new float[4 * k];
        fixed (ushort* ws = w)
        fixed (float* xs = x, ys = y, bs = bias, sc = scratch)
            MatMulKernels.Float(new HalfRows<F16Format>(ws, k), xs, ys, bs, m, k, n, 0, n, sc);
        for (int r = 0; r < m; r++)
            for (int o = 0; o < n; o++)
            {
                double expected = bias[o];
                for (int j = 0; j < k; j++)
                    expected += (double)(float)BitConverter.UInt16BitsToHalf(w[o * k + j]) * x[r * k + j];
                Assert.Equal(expected, y[r * n + o], 1e-4);
            }
    }
}
