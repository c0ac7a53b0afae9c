using System.Runtime.Intrinsics;
using Weft.GpuRuntime.Engine.Cpu;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The emulated fused multiply-add of the 128-bit kernels against the rounded-once result.</summary>
public sealed class Fused128Tests
{
    [Fact]
    public void Emulated_multiply_add_rounds_once_like_fma_on_random_and_near_tie_operands()
    {
        var rng = new Random(13);
        float Any() => (rng.NextSingle() - 0.5f) * MathF.Pow(2, rng.Next(-40, 40));
        var a = new float[4];
        var b = new float[4];
        var c = new float[4];
        for (int trial = 0; trial < 200_000; trial++)
        {
            for (int i = 0; i < 4; i++)
            {
                a[i] = Any();
                b[i] = Any();
                // a·b's own rounding, give or take an ulp-sized nudge: the sums that land on or near ties
                float ab = a[i] * b[i];
                c[i] = trial % 2 == 0 ? Any() : -ab + (rng.Next(3) - 1) * MathF.BitIncrement(MathF.Abs(ab)) * 1e-7f;
            }
            var got = Fused128.Emulated(Vector128.Create(a), Vector128.Create(b), Vector128.Create(c));
            for (int i = 0; i < 4; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(MathF.FusedMultiplyAdd(a[i], b[i], c[i])),
                    BitConverter.SingleToInt32Bits(got[i]));
        }
    }

    [Fact]
    public void Emulated_multiply_add_rounds_once_where_results_fall_below_the_normal_range()
    {
        // float's subnormals have fewer mantissa bits: their midpoints are not where a normal float's are
        var rng = new Random(14);
        float Tiny() => (rng.NextSingle() - 0.5f) * MathF.Pow(2, rng.Next(-76, -60));
        for (int trial = 0; trial < 100_000; trial++)
        {
            float[] a = [Tiny(), Tiny(), Tiny(), 1f], b = [Tiny(), Tiny(), Tiny(), 1f];
            float[] c = [Tiny() * 1e-5f, -a[1] * b[1], 0, 2f];
            var got = Fused128.Emulated(Vector128.Create(a), Vector128.Create(b), Vector128.Create(c));
            for (int i = 0; i < 4; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(MathF.FusedMultiplyAdd(a[i], b[i], c[i])),
                    BitConverter.SingleToInt32Bits(got[i]));
        }
    }

    [Fact]
    public void Emulated_multiply_add_breaks_an_exact_tie_by_a_term_a_double_sum_would_lose()
    {
        // (1 + 2^-12)² = 1 + 2^-11 + 2^-24: half an ulp of f32 above 1 + 2^-11, so ±2^-60 decides the rounding
        float a = 1 + MathF.Pow(2, -12), tiny = MathF.Pow(2, -60);
        var got = Fused128.Emulated(Vector128.Create(a), Vector128.Create(a), Vector128.Create(tiny, -tiny, 0, 0));
        for (int i = 0; i < 4; i++)
            Assert.Equal(MathF.FusedMultiplyAdd(a, a, i == 0 ? tiny : i == 1 ? -tiny : 0), got[i]);
        Assert.NotEqual(got[0], got[2]);
    }
}
