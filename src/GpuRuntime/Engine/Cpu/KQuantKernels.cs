using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// K-quant weights in their file layout against q8_K activations, with ggml's x86 numerics: per superblock of 256 an
/// exact integer sum in eight lanes (lane L holds the products of bytes 4L..4L+3 of every 32-value chunk, each 16
/// values weighted by their 6-bit or 8-bit scale), then per lane acc += (d_w · d_x) × sum in f32, and at the end
/// ggml's horizontal sum ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Random-weight models have flat logits, so the
/// greedy tokens only match llama.cpp's when this order is kept.
/// </summary>
static unsafe class KQuantKernels
{
    /// <summary>Bytes of a q6_K block: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.</summary>
    public const int Q6KBlockBytes = 210;

    /// <summary>Whether the AVX2 kernels run; else the portable path, which computes the same values one at a
    /// time.</summary>
    public static bool Fast => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q6_K weights w [N × k] in place.</summary>
    public static void Q6K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast)
        {
            Q6KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q6KBlockBytes;
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((ushort)0x0303);
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int r = 0; r < m; r += 4)
            {
                // a short last group repeats its last row: the extra results are simply not stored
                int r1 = Math.Min(r + 1, m - 1), r2 = Math.Min(r + 2, m - 1), r3 = Math.Min(r + 3, m - 1);
                sbyte* x0 = xq + (long)r * k, x1 = xq + (long)r1 * k, x2 = xq + (long)r2 * k, x3 = xq + (long)r3 * k;
                float* d0 = xd + (long)r * blocks, d1 = xd + (long)r1 * blocks, d2 = xd + (long)r2 * blocks,
                    d3 = xd + (long)r3 * blocks;
                short* g0 = xsums + (long)r * (k / 16), g1 = xsums + (long)r1 * (k / 16),
                    g2 = xsums + (long)r2 * (k / 16), g3 = xsums + (long)r3 * (k / 16);
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = wr + b * Q6KBlockBytes;
                    sbyte* sc = (sbyte*)blk + 192;
                    Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
                    for (int half = 0; half < 2; half++)
                    {
                        var ql0 = Vector256.Load(blk + 64 * half);
                        var ql1 = Vector256.Load(blk + 64 * half + 32);
                        var qh = Vector256.Load(blk + 128 + 32 * half).AsUInt16();
                        var q = (ql0 & m4) | ((qh & m2) << 4).AsByte();
                        int o = b * 256 + 128 * half, c = 8 * half;
                        Chunk(q, sc[c], sc[c + 1], x0 + o, x1 + o, x2 + o, x3 + o, ref s0, ref s1, ref s2, ref s3);
                        q = (ql1 & m4) | (((qh >> 2) & m2) << 4).AsByte();
                        Chunk(q, sc[c + 2], sc[c + 3], x0 + o + 32, x1 + o + 32, x2 + o + 32, x3 + o + 32,
                            ref s0, ref s1, ref s2, ref s3);
                        q = ((ql0.AsUInt16() >> 4).AsByte() & m4) | (((qh >> 4) & m2) << 4).AsByte();
                        Chunk(q, sc[c + 4], sc[c + 5], x0 + o + 64, x1 + o + 64, x2 + o + 64, x3 + o + 64,
                            ref s0, ref s1, ref s2, ref s3);
                        q = ((ql1.AsUInt16() >> 4).AsByte() & m4) | (((qh >> 6) & m2) << 4).AsByte();
                        Chunk(q, sc[c + 6], sc[c + 7], x0 + o + 96, x1 + o + 96, x2 + o + 96, x3 + o + 96,
                            ref s0, ref s1, ref s2, ref s3);
                    }
                    // the −32 offset of the quants, through the activations' group sums: lane L takes groups 2L, 2L+1
                    var scales = Avx2.ConvertToVector256Int16(Vector128.Load(sc));
                    s0 -= Avx2.MultiplyAddAdjacent(scales, Vector256.Load(g0 + 16 * b)) << 5;
                    s1 -= Avx2.MultiplyAddAdjacent(scales, Vector256.Load(g1 + 16 * b)) << 5;
                    s2 -= Avx2.MultiplyAddAdjacent(scales, Vector256.Load(g2 + 16 * b)) << 5;
                    s3 -= Avx2.MultiplyAddAdjacent(scales, Vector256.Load(g3 + 16 * b)) << 5;
                    float dw = (float)*(Half*)(blk + 208);
                    a0 = Fma.MultiplyAdd(Vector256.Create(d0[b] * dw), Vector256.ConvertToSingle(s0), a0);
                    a1 = Fma.MultiplyAdd(Vector256.Create(d1[b] * dw), Vector256.ConvertToSingle(s1), a1);
                    a2 = Fma.MultiplyAdd(Vector256.Create(d2[b] * dw), Vector256.ConvertToSingle(s2), a2);
                    a3 = Fma.MultiplyAdd(Vector256.Create(d3[b] * dw), Vector256.ConvertToSingle(s3), a3);
                }
                float add = bias == null ? 0 : bias[n];
                y[(long)r * ldy + n] = HorizontalSum(a0) + add;
                if (r + 1 < m) y[(long)(r + 1) * ldy + n] = HorizontalSum(a1) + add;
                if (r + 2 < m) y[(long)(r + 2) * ldy + n] = HorizontalSum(a2) + add;
                if (r + 3 < m) y[(long)(r + 3) * ldy + n] = HorizontalSum(a3) + add;
            }
        }
    }

    /// <summary>
    /// One 32-value chunk of q6_K quants (0..63 here, the offset comes later) against four activation rows, as ggml's
    /// AVX2 path: byte products summed in pairs (|pair| ≤ 2·63·127, no saturation), then each 16 values weighted by
    /// their scale and summed in pairs again into the eight int lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Chunk(Vector256<byte> q, sbyte scLo, sbyte scHi, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var scale = Vector256.Create(Vector128.Create((short)scLo), Vector128.Create((short)scHi));
        s0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x0)), scale);
        s1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x1)), scale);
        s2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x2)), scale);
        s3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x3)), scale);
    }

    /// <summary>Bytes of a q4_K block: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, qs[128].</summary>
    public const int Q4KBlockBytes = 144;

    /// <summary>
    /// Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q4_K weights w [N × k] in place, as ggml's x86 build computes
    /// them: it repacks q4_K matrices (rows a multiple of 8) into interleaved blocks of eight rows, and each output is
    /// then one f32 chain per superblock, acc += Σ scale·(q·x) × (d_w·d_x), beside a second one for the mins,
    /// acc_min += Σ min·bsum × (dmin_w·d_x), the result acc − acc_min. Every row takes its gemv's order (per
    /// superblock): its gemm adds per pair of sub-blocks for groups of four activation rows, which would make a row's
    /// logits depend on its place in the batch, and the greedy parity tests pass with the gemv order throughout.
    /// </summary>
    public static void Q4K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast)
        {
            Q4KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q4KBlockBytes;
        var m4 = Vector256.Create((byte)0x0F);
        Span<byte> scales = stackalloc byte[8], mins = stackalloc byte[8];
        // per batch row of a block of them: the chain for the scales, then the one for the mins
        Span<float> acc = stackalloc float[2 * RowBlock];
        Span<short> mins16 = stackalloc short[16];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int rb = 0; rb < m; rb += RowBlock)
            {
                int rows = Math.Min(RowBlock, m - rb);
                acc.Clear();
                for (int b = 0; b < blocks; b++)
                {
                    // the superblock decoded once for every batch row: nibbles, scales, mins paired with the bsums
                    byte* blk = wr + b * Q4KBlockBytes;
                    ScalesAndMins(blk + 4, scales, mins);
                    for (int j = 0; j < 8; j++) mins16[2 * j] = mins16[2 * j + 1] = mins[j];
                    var minv = Vector256.Create<short>(mins16);
                    var q0 = Vector256.Load(blk + 16);
                    var q1 = Vector256.Load(blk + 48);
                    var q2 = Vector256.Load(blk + 80);
                    var q3 = Vector256.Load(blk + 112);
                    Vector256<byte> l0 = q0 & m4, l1 = q1 & m4, l2 = q2 & m4, l3 = q3 & m4;
                    Vector256<byte> h0 = (q0.AsUInt16() >> 4).AsByte() & m4, h1 = (q1.AsUInt16() >> 4).AsByte() & m4,
                        h2 = (q2.AsUInt16() >> 4).AsByte() & m4, h3 = (q3.AsUInt16() >> 4).AsByte() & m4;
                    float dw = (float)*(Half*)blk, dmin = (float)*(Half*)(blk + 2);
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        sbyte* x = xq + (long)r * k + b * 256;
                        var p0 = Pair(l0, h0, scales[0], scales[1], x);
                        var p1 = Pair(l1, h1, scales[2], scales[3], x + 64);
                        var p2 = Pair(l2, h2, scales[4], scales[5], x + 128);
                        var p3 = Pair(l3, h3, scales[6], scales[7], x + 192);
                        var pm = Avx2.MultiplyAddAdjacent(minv, Vector256.Load(xsums + (long)r * (k / 16) + 16 * b));
                        float dx = xd[(long)r * blocks + b];
                        float d = dw * dx, dm = dmin * dx;
                        ref float a = ref acc[2 * i], am = ref acc[2 * i + 1];
                        a = MathF.FusedMultiplyAdd(Vector256.Sum(p0 + p1 + p2 + p3), d, a);
                        am = MathF.FusedMultiplyAdd(Vector256.Sum(pm), dm, am);
                    }
                }
                for (int i = 0; i < rows; i++)
                    y[(long)(rb + i) * ldy + n] = acc[2 * i] - acc[2 * i + 1] + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>Batch rows whose chains are kept while a weight row passes (two floats each, on the stack).</summary>
    const int RowBlock = 64;

    /// <summary>Two 32-value sub-blocks of a q4_K block (low and high nibbles) against the activations, each weighted
    /// by its scale, in eight int lanes (exact: |pair of products| ≤ 2·15·127).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Pair(Vector256<byte> lo, Vector256<byte> hi, byte scLo, byte scHi, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(x)), Vector256.Create((short)scLo))
        + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(hi, Vector256.Load(x + 32)), Vector256.Create((short)scHi));

    /// <summary>The q4_K product one value at a time (CPUs without AVX2), with the same chains.</summary>
    public static void Q4KPortable(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q4KBlockBytes;
        Span<byte> scales = stackalloc byte[8], mins = stackalloc byte[8];
        Span<int> sums = stackalloc int[8];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int r = 0; r < m; r++)
            {
                sbyte* x = xq + (long)r * k;
                float acc = 0, accMin = 0;
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = wr + b * Q4KBlockBytes;
                    ScalesAndMins(blk + 4, scales, mins);
                    SubBlockSums(blk + 16, x + b * 256, sums);
                    short* bs = xsums + (long)r * (k / 16) + b * 16;
                    float d = (float)*(Half*)blk * xd[(long)r * blocks + b];
                    float dmin = (float)*(Half*)(blk + 2) * xd[(long)r * blocks + b];
                    int i = 0, im = 0;
                    for (int j = 0; j < 8; j++)
                    {
                        i += scales[j] * sums[j];
                        im += mins[j] * (bs[2 * j] + bs[2 * j + 1]);
                    }
                    acc = MathF.FusedMultiplyAdd(i, d, acc);
                    accMin = MathF.FusedMultiplyAdd(im, dmin, accMin);
                }
                y[(long)r * ldy + n] = acc - accMin + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>The eight 6-bit scales and mins of a q4_K/q5_K block (ggml's get_scale_min_k4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ScalesAndMins(byte* q, Span<byte> scales, Span<byte> mins)
    {
        for (int j = 0; j < 4; j++)
        {
            scales[j] = (byte)(q[j] & 63);
            mins[j] = (byte)(q[j + 4] & 63);
            scales[j + 4] = (byte)((q[j + 8] & 0xF) | (q[j] >> 6) << 4);
            mins[j + 4] = (byte)((q[j + 8] >> 4) | (q[j + 4] >> 6) << 4);
        }
    }

    /// <summary>Σ q·x over each 32-value sub-block of a q4_K block (low nibbles of qs[32p..] are sub-block 2p, high
    /// nibbles 2p+1); exact integers, so any order gives ggml's values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void SubBlockSums(byte* qs, sbyte* x, Span<int> sums)
    {
        for (int p = 0; p < 4; p++)
        {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; l++)
            {
                lo += (qs[32 * p + l] & 0xF) * x[64 * p + l];
                hi += (qs[32 * p + l] >> 4) * x[64 * p + 32 + l];
            }
            sums[2 * p] = lo;
            sums[2 * p + 1] = hi;
        }
    }

    /// <summary>Bytes of a q5_K block: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, qh[32], qs[128].</summary>
    public const int Q5KBlockBytes = 176;

    /// <summary>
    /// Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q5_K weights w [N × k] in place, as ggml's x86 vec_dot (no
    /// repack there): per superblock the eight int lanes of Σ scale·(q·x) into acc += (d_w·d_x) × lanes, and the mins
    /// as one f32 chain, sum_min += (−d_x·dmin_w) × Σ min·bsum; the result hsum(acc) + sum_min.
    /// </summary>
    public static void Q5K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q5KBlockBytes;
        Span<byte> scales = stackalloc byte[8], mins = stackalloc byte[8];
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                Vector256<float> a = default;
                acc.Clear();
                float sumMin = 0;
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = w + n * rowBytes + b * Q5KBlockBytes;
                    sbyte* x = xq + (long)r * k + b * 256;
                    short* bs = xsums + (long)r * (k / 16) + b * 16;
                    ScalesAndMins(blk + 4, scales, mins);
                    int imin = 0;
                    for (int j = 0; j < 8; j++) imin += mins[j] * (bs[2 * j] + bs[2 * j + 1]);
                    float dx = xd[(long)r * blocks + b];
                    sumMin = MathF.FusedMultiplyAdd(-dx * (float)*(Half*)(blk + 2), imin, sumMin);
                    float d = dx * (float)*(Half*)blk;
                    if (Fast)
                    {
                        var qh = Vector256.Load(blk + 16);
                        var m4 = Vector256.Create((byte)0x0F);
                        var one = Vector256.Create((byte)1);
                        Vector256<int> s = default;
                        for (int p = 0; p < 4; p++)
                        {
                            var q = Vector256.Load(blk + 48 + 32 * p);
                            var lo = (q & m4)
                                | ((((qh.AsUInt16() >> (2 * p)).AsByte() & one).AsUInt16() << 4).AsByte());
                            var hi = ((q.AsUInt16() >> 4).AsByte() & m4)
                                | ((((qh.AsUInt16() >> (2 * p + 1)).AsByte() & one).AsUInt16() << 4).AsByte());
                            s += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(lo, Vector256.Load(x + 64 * p)),
                                Vector256.Create((short)scales[2 * p]));
                            s += Avx2.MultiplyAddAdjacent(
                                Avx2.MultiplyAddAdjacent(hi, Vector256.Load(x + 64 * p + 32)),
                                Vector256.Create((short)scales[2 * p + 1]));
                        }
                        a = Fma.MultiplyAdd(Vector256.Create(d), Vector256.ConvertToSingle(s), a);
                    }
                    else
                    {
                        lanes.Clear();
                        for (int i = 0; i < 256; i++)
                        {
                            int c = i / 32, l = i % 32;
                            int q = (blk[48 + 32 * (c / 2) + l] >> (4 * (c % 2)) & 0xF) | (blk[16 + l] >> c & 1) << 4;
                            lanes[l / 4] += scales[c] * q * x[i];
                        }
                        for (int lane = 0; lane < 8; lane++)
                            acc[lane] = MathF.FusedMultiplyAdd(d, lanes[lane], acc[lane]);
                    }
                }
                float sum = Fast ? HorizontalSum(a)
                    : ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = sum + sumMin + (bias == null ? 0 : bias[n]);
            }
    }

    /// <summary>ggml's hsum_float_8: the halves added, then lanes 0+2 and 1+3, then those two.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum(Vector256<float> v)
    {
        var h = v.GetLower() + v.GetUpper();
        return (h[0] + h[2]) + (h[1] + h[3]);
    }

    /// <summary>
    /// The q6_K product one value at a time, in the same int lanes as ggml's AVX2 and AVX paths (the −32 offset
    /// taken out per superblock through the activations' group sums, lane L pairing groups 2L and 2L+1) and with
    /// their fused multiply-add (llama.cpp's AVX build is compiled with FMA too, and its compiler fuses the path's
    /// separate multiply and add): the fast kernel's result bit for bit.
    /// </summary>
    public static void Q6KPortable(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q6KBlockBytes;
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                acc.Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = w + n * rowBytes + b * Q6KBlockBytes;
                    sbyte* sc = (sbyte*)blk + 192;
                    sbyte* x = xq + (long)r * k + b * 256;
                    lanes.Clear();
                    for (int i = 0; i < 256; i++)
                    {
                        int half = i / 128, t = i % 128 / 32, l = i % 32;
                        int low = blk[64 * half + 32 * (t & 1) + l] >> (4 * (t >> 1)) & 0xF;
                        int high = blk[128 + 32 * half + l] >> (2 * t) & 3;
                        int q = low | high << 4;
                        lanes[l / 4] += sc[i / 16] * q * x[i];
                    }
                    short* bs = xsums + ((long)r * k + b * 256) / 16;
                    for (int lane = 0; lane < 8; lane++)
                        lanes[lane] -= 32 * (bs[2 * lane] * sc[2 * lane] + bs[2 * lane + 1] * sc[2 * lane + 1]);
                    float d = xd[(long)r * blocks + b] * (float)*(Half*)(blk + 208);
                    for (int lane = 0; lane < 8; lane++)
                        acc[lane] = MathF.FusedMultiplyAdd(d, lanes[lane], acc[lane]);
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }
}
