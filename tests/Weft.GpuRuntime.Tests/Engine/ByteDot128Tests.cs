using System.Runtime.Intrinsics;
using Weft.GpuRuntime.Engine.Cpu;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>The 128-bit byte dots: the widening fallbacks (the Arm64 and plain-SIMD branches' shape) against the
/// intrinsics this machine runs, and both against scalar sums.</summary>
public sealed class ByteDot128Tests
{
    [Fact]
    public void Byte_dot_lanes_sum_the_four_products_of_their_bytes_on_every_branch()
    {
        var rng = new Random(11);
        var u = new byte[16];
        var s = new sbyte[16];
        for (int trial = 0; trial < 1000; trial++)
        {
            for (int i = 0; i < 16; i++)
            {
                // the kernels' extremes first: the largest quant against ±128
                u[i] = trial == 0 ? (byte)127 : (byte)rng.Next(128);
                s[i] = trial == 0 ? (sbyte)(i % 2 == 0 ? -128 : 127) : (sbyte)rng.Next(-128, 128);
            }
            var acc = Vector128.Create(rng.Next(-1000, 1000));
            var expected = new int[4];
            for (int lane = 0; lane < 4; lane++)
            {
                expected[lane] = acc[lane];
                for (int j = 4 * lane; j < 4 * lane + 4; j++) expected[lane] += u[j] * s[j];
            }
            var uv = Vector128.Create(u);
            var sv = Vector128.Create(s);
            Assert.Equal(expected, ToArray(ByteDot128.Add(acc, uv, sv)));
            Assert.Equal(expected, ToArray(ByteDot128.AddWidening(acc, uv, sv)));
        }
    }

    [Fact]
    public void Short_pairs_equal_pmaddwd_on_every_branch()
    {
        var rng = new Random(12);
        var a = new short[8];
        var b = new short[8];
        for (int trial = 0; trial < 1000; trial++)
        {
            for (int i = 0; i < 8; i++)
            {
                a[i] = (short)rng.Next(-2032, 2033);
                b[i] = (short)rng.Next(-128, 128);
            }
            var expected = Enumerable.Range(0, 4).Select(i => a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1]);
            Assert.Equal(expected, ToArray(ByteDot128.Pairs(Vector128.Create(a), Vector128.Create(b))));
            Assert.Equal(expected, ToArray(ByteDot128.PairsWidening(Vector128.Create(a), Vector128.Create(b))));
        }
    }

    static int[] ToArray(Vector128<int> v) => [v[0], v[1], v[2], v[3]];
}
