using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

static unsafe class Quantize
{
    /// <summary>
    /// A row of activations to q8_0 the way ggml's AVX path does for its dot products: per block of 32, the scale
    /// stored as f16 is max|x| / 127, the quants are x · 127 / max|x| rounded to nearest even. Also, per block, the
    /// eight lanes' −128·Σx that the VNNI kernels start from (<paramref name="c"/>, 8 ints per block).
    /// </summary>
    public static void RowQ8(float* x, sbyte* q, int* c, float* d, int k)
    {
        for (int b = 0; b < k / 32; b++)
        {
            float* xs = x + b * 32;
            float amax;
            if (Vector512.IsHardwareAccelerated && AvxVnni.IsSupported)
            {
                var v0 = Vector512.Load(xs);
                var v1 = Vector512.Load(xs + 16);
                amax = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1)) is var m ? MaxAcross(m) : 0;
                float id = amax != 0 ? 127f / amax : 0f;
                var q0 = Vector512.ConvertToInt32(Vector512.Round(v0 * id));
                var q1 = Vector512.ConvertToInt32(Vector512.Round(v1 * id));
                var packed = Vector512.Narrow(Vector512.Narrow(q0, q1), Vector512<short>.Zero).GetLower().AsSByte();
                packed.Store(q + b * 32);
                Vector256.Negate(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Create((byte)128),
                    packed)).Store(c + b * 8);
            }
            else
            {
                amax = 0;
                for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(xs[j]));
                float id = amax != 0 ? 127f / amax : 0f;
                for (int j = 0; j < 32; j++) q[b * 32 + j] = (sbyte)MathF.Round(xs[j] * id, MidpointRounding.ToEven);
                for (int lane = 0; lane < 8; lane++)
                    c[b * 8 + lane] = -128 * (q[b * 32 + 4 * lane] + q[b * 32 + 4 * lane + 1] + q[b * 32 + 4 * lane + 2]
                        + q[b * 32 + 4 * lane + 3]);
            }
            d[b] = (float)(Half)(amax / 127f);
        }
    }

    /// <summary>
    /// A row of activations to q8_K blocks of 256 as ggml's quantize_row_q8_K_ref (what its x86 build runs): the value
    /// of largest magnitude (the first, if tied) maps to −127, quants are x · (−127 / max) rounded to nearest even, the
    /// scale is the reciprocal of that factor; <paramref name="bsums"/> gets the sums of each 16 quants.
    /// </summary>
    public static void RowQ8K(float* x, sbyte* q, float* d, short* bsums, int k)
    {
        for (int b = 0; b < k / 256; b++, x += 256, q += 256, bsums += 16)
        {
            // in 128-bit vectors, the width every path has: scalar, this took 4% of a batch-16 decode step (300m
            // Q4_K_M)
            float max = LargestFirst(x);
            if (max == 0)
            {
                d[b] = 0;
                new Span<sbyte>(q, 256).Clear();
                new Span<short>(bsums, 16).Clear();
                continue;
            }
            float iscale = -127f / max;
            var scale = Vector128.Create(iscale);
            for (int g = 0; g < 16; g++)
            {
                Vector128<int> q0 = NearestInt(Vector128.Load(x + 16 * g) * scale),
                    q1 = NearestInt(Vector128.Load(x + 16 * g + 4) * scale),
                    q2 = NearestInt(Vector128.Load(x + 16 * g + 8) * scale),
                    q3 = NearestInt(Vector128.Load(x + 16 * g + 12) * scale);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).Store(q + 16 * g);
                bsums[g] = (short)Vector128.Sum((q0 + q1) + (q2 + q3));
            }
            d[b] = 1 / iscale;
        }
    }

    /// <summary>The first of the 256 values with the largest magnitude, NaNs skipped as ggml's comparisons skip
    /// them.</summary>
    static float LargestFirst(float* x)
    {
        // four chains: one waited on each max's latency
        Vector128<float> a0 = Vector128<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < 256; j += 16)
        {
            a0 = Vector128.Max(a0, Vector128.Abs(Vector128.Load(x + j)));
            a1 = Vector128.Max(a1, Vector128.Abs(Vector128.Load(x + j + 4)));
            a2 = Vector128.Max(a2, Vector128.Abs(Vector128.Load(x + j + 8)));
            a3 = Vector128.Max(a3, Vector128.Abs(Vector128.Load(x + j + 12)));
        }
        var amax = Vector128.Max(Vector128.Max(a0, a1), Vector128.Max(a2, a3));
        var all = Vector128.Create(MathF.Max(MathF.Max(amax[0], amax[1]), MathF.Max(amax[2], amax[3])));
        for (int j = 0; j < 256; j += 4)
        {
            uint hit = Vector128.Equals(Vector128.Abs(Vector128.Load(x + j)), all).ExtractMostSignificantBits();
            if (hit != 0) return x[j + BitOperations.TrailingZeroCount(hit)];
        }
        // a NaN among them carried through the maxima
        float max = 0, largest = 0;
        for (int j = 0; j < 256; j++)
            if (MathF.Abs(x[j]) > largest)
                (largest, max) = (MathF.Abs(x[j]), x[j]);
        return max;
    }

    /// <summary>min(127, v rounded to nearest even), as ggml's nearest_int: the float sum with 1.5 · 2^23 leaves the
    /// rounded value in the low mantissa bits (|v| ≤ 127 here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<int> NearestInt(Vector128<float> v) =>
        Vector128.Min(((v + Vector128.Create(12582912f)).AsInt32() & Vector128.Create(0x007FFFFF))
            - Vector128.Create(0x00400000), Vector128.Create(127));

    static float MaxAcross(Vector512<float> v)
    {
        var m = Vector256.Max(v.GetLower(), v.GetUpper());
        var m2 = Vector128.Max(m.GetLower(), m.GetUpper());
        return MathF.Max(MathF.Max(m2[0], m2[1]), MathF.Max(m2[2], m2[3]));
    }
}
