using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Weft.GpuRuntime.Engine.Cpu.HalfMath;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// K-quant weights in their file layout against q8_K activations, with ggml's x86 numerics: per superblock of 256 an
/// exact integer sum in eight lanes (lane L holds the products of bytes 4L..4L+3 of every 32-value chunk, each 16
/// values weighted by their 6-bit or 8-bit scale), then per lane acc += (d_w · d_x) × sum in f32, and at the end
/// ggml's horizontal sum ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Random-weight models have flat logits, so the
/// greedy tokens only match llama.cpp's when this order is kept.
/// </summary>
static unsafe partial class KQuantKernels
{
    /// <summary>Bytes of a q6_K block: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.</summary>
    public const int Q6KBlockBytes = 210;

    /// <summary>Whether the AVX2 kernels run; else the 128-bit ones (KQuantKernels128.cs), or without 128-bit SIMD the
    /// portable path, all three computing the same values.</summary>
    public static bool Fast => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q6_K weights w [N × k] in place.</summary>
    public static void Q6K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast)
        {
            if (Vector128.IsHardwareAccelerated) Q6K128(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            else Q6KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            return;
        }
        var x = new Activations(xq, xd, xsums, k);
        long rowBytes = (long)x.Blocks * Q6KBlockBytes;
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            float add = bias == null ? 0 : bias[n];
            int r = 0;
            // eight batch rows share each weight chunk's decoding and scales: a 2048 × 5632 matrix at batch 16 ran 10%
            // faster than with four (one thread, 36.9 against 40.6 GMAC/s)
            for (; r + 8 <= m; r += 8) Q6KTile<EightRows>(wr, x, r, y + (long)r * ldy + n, ldy, add);
            for (; r + 4 <= m; r += 4) Q6KTile<FourRows>(wr, x, r, y + (long)r * ldy + n, ldy, add);
            for (; r < m; r++)
                y[(long)r * ldy + n] = Simd.HorizontalSum8(Avx512BW.IsSupported ? Q6K1x1Wide(wr, x, r)
                    : Q6K1x1(wr, x, r)) + add;
        }
    }

    /// <summary>q8_K activations: quants [m × k], a scale per 256 and a sum per 16 of each row.</summary>
    readonly struct Activations(sbyte* q, float* d, short* sums, int k)
    {
        public readonly int Blocks = k / 256;
        public sbyte* Quants(int r) => q + (long)r * k;
        public float* Scales(int r) => d + (long)r * Blocks;
        public short* Sums(int r) => sums + (long)r * (k / 16);

        /// <summary>Rows r..r+count-1's group sums into g and scales into d, read per superblock.</summary>
        public void Locate(int r, int count, short** g, float** d)
        {
            for (int i = 0; i < count; i++)
            {
                g[i] = Sums(r + i);
                d[i] = Scales(r + i);
            }
        }
    }

    /// <summary>One q6_K weight row × batch rows r..r+TTile.Rows-1 (four or eight), each ggml's eight f32 lanes
    /// summed into y (stride <paramref name="ldy"/>).</summary>
    static void Q6KTile<TTile>(byte* wr, Activations x, int r, float* y, long ldy, float add) where TTile : ITile
    {
        bool eight = TTile.Rows == 8;
        sbyte* x0 = x.Quants(r), x1 = x.Quants(r + 1), x2 = x.Quants(r + 2), x3 = x.Quants(r + 3);
        sbyte* x4 = eight ? x.Quants(r + 4) : null, x5 = eight ? x.Quants(r + 5) : null,
            x6 = eight ? x.Quants(r + 6) : null, x7 = eight ? x.Quants(r + 7) : null;
        // located once, as in Q4KTile
        short** g = stackalloc short*[TTile.Rows];
        float** d = stackalloc float*[TTile.Rows];
        x.Locate(r, TTile.Rows, g, d);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> a4 = default, a5 = default, a6 = default, a7 = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q6KBlockBytes;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Vector256<int> s4 = default, s5 = default, s6 = default, s7 = default;
            for (int half = 0; half < 2; half++)
            {
                var (ql0, ql1, qh) = Q6KHalf(blk, half);
                for (int t = 0; t < 4; t++)
                {
                    var q = Q6KChunk(ql0, ql1, qh, t);
                    var scale = Q6KScale(blk, 8 * half + 2 * t);
                    int o = b * 256 + 128 * half + 32 * t;
                    s0 = Dot(s0, q, Vector256.Load(x0 + o), scale);
                    s1 = Dot(s1, q, Vector256.Load(x1 + o), scale);
                    s2 = Dot(s2, q, Vector256.Load(x2 + o), scale);
                    s3 = Dot(s3, q, Vector256.Load(x3 + o), scale);
                    if (!eight) continue;
                    s4 = Dot(s4, q, Vector256.Load(x4 + o), scale);
                    s5 = Dot(s5, q, Vector256.Load(x5 + o), scale);
                    s6 = Dot(s6, q, Vector256.Load(x6 + o), scale);
                    s7 = Dot(s7, q, Vector256.Load(x7 + o), scale);
                }
            }
            var scales = Q6KScales(blk);
            float dw = F16(blk + 208);
            a0 = Q6KBlockEnd(s0, scales, g[0] + 16 * b, d[0][b] * dw, a0);
            a1 = Q6KBlockEnd(s1, scales, g[1] + 16 * b, d[1][b] * dw, a1);
            a2 = Q6KBlockEnd(s2, scales, g[2] + 16 * b, d[2][b] * dw, a2);
            a3 = Q6KBlockEnd(s3, scales, g[3] + 16 * b, d[3][b] * dw, a3);
            if (!eight) continue;
            a4 = Q6KBlockEnd(s4, scales, g[4] + 16 * b, d[4][b] * dw, a4);
            a5 = Q6KBlockEnd(s5, scales, g[5] + 16 * b, d[5][b] * dw, a5);
            a6 = Q6KBlockEnd(s6, scales, g[6] + 16 * b, d[6][b] * dw, a6);
            a7 = Q6KBlockEnd(s7, scales, g[7] + 16 * b, d[7][b] * dw, a7);
        }
        y[0] = Simd.HorizontalSum8(a0) + add;
        y[ldy] = Simd.HorizontalSum8(a1) + add;
        y[2 * ldy] = Simd.HorizontalSum8(a2) + add;
        y[3 * ldy] = Simd.HorizontalSum8(a3) + add;
        if (!eight) return;
        y[4 * ldy] = Simd.HorizontalSum8(a4) + add;
        y[5 * ldy] = Simd.HorizontalSum8(a5) + add;
        y[6 * ldy] = Simd.HorizontalSum8(a6) + add;
        y[7 * ldy] = Simd.HorizontalSum8(a7) + add;
    }

    /// <summary>Half a q6_K block: its 64 bytes of low nibbles and 32 bytes of high bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<byte>, Vector256<byte>, Vector256<ushort>) Q6KHalf(byte* blk, int half) =>
        (Vector256.Load(blk + 64 * half), Vector256.Load(blk + 64 * half + 32),
            Vector256.Load(blk + 128 + 32 * half).AsUInt16());

    /// <summary>Chunk t of a half: the low nibbles of ql0, ql1, then their high nibbles; two high bits each from
    /// qh.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> Q6KChunk(Vector256<byte> ql0, Vector256<byte> ql1, Vector256<ushort> qh, int t)
    {
        var ql = (t & 1) == 0 ? ql0 : ql1;
        var m4 = Vector256.Create((byte)0x0F);
        var lo = t < 2 ? ql & m4 : (ql.AsUInt16() >> 4).AsByte() & m4;
        return lo | (((qh >> (2 * t)) & Vector256.Create((ushort)0x0303)) << 4).AsByte();
    }

    /// <summary>The 16-bit scales of a chunk's two groups of sixteen (c and c + 1), one per 128-bit half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> Q6KScale(byte* blk, int c)
    {
        sbyte* sc = (sbyte*)blk + 192;
        return Vector256.Create(Vector128.Create((short)sc[c]), Vector128.Create((short)sc[c + 1]));
    }

    /// <summary>A q6_K block's sixteen 8-bit scales as 16 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> Q6KScales(byte* blk) => Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)blk + 192));

    /// <summary>A superblock's integer sums less the −32 offset of its quants (through the activations' group sums
    /// g: lane L takes groups 2L, 2L+1), then a += (d_x · d_w) × sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Q6KBlockEnd(Vector256<int> s, Vector256<short> scales, short* g, float d,
        Vector256<float> a)
    {
        s -= Avx2.MultiplyAddAdjacent(scales, Vector256.Load(g)) << 5;
        return Fma.MultiplyAdd(Vector256.Create(d), Vector256.ConvertToSingle(s), a);
    }

    /// <summary>One q6_K weight row × one batch row (what a single sequence and the rest of a batch take). A row is
    /// one sequential run, which the hardware prefetchers follow: fetching the row four ahead in software as well made
    /// the 300m q6_K step at batch 1 slower on the Zen 4 host (medians of five alternations: AVX-512 15.60 against
    /// 13.64 ms without, AVX2 15.82 against 14.50).</summary>
    static Vector256<float> Q6K1x1(byte* wr, Activations x, int r)
    {
        sbyte* xr = x.Quants(r);
        Vector256<float> a = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q6KBlockBytes;
            Vector256<int> s = default;
            for (int half = 0; half < 2; half++)
            {
                var (ql0, ql1, qh) = Q6KHalf(blk, half);
                for (int t = 0; t < 4; t++)
                    s = Dot(s, Q6KChunk(ql0, ql1, qh, t), Vector256.Load(xr + b * 256 + 128 * half + 32 * t),
                        Q6KScale(blk, 8 * half + 2 * t));
            }
            a = Q6KBlockEnd(s, Q6KScales(blk), x.Sums(r) + 16 * b, x.Scales(r)[b] * F16(blk + 208), a);
        }
        return a;
    }

    /// <summary>
    /// <see cref="Q6K1x1"/> two chunks to a 512-bit vector: one load, mask and shift decode both, and one permute
    /// gives both chunks' scales; folding the halves at the superblock's end gives ggml's eight integer lanes exactly.
    /// A single sequence's q6_K product is bound by its decoding: a 2048 × 5632 matrix went from 9.2 to 12.2 GB/s
    /// from memory (one thread; 10.3 to 18.1 from cache). Without 512-bit VNNI in .NET the scales take
    /// vpmaddwd + vpaddd, which leaves the batched tiles, bound by their multiplies, no faster at 512 bits.
    /// </summary>
    static Vector256<float> Q6K1x1Wide(byte* wr, Activations x, int r)
    {
        sbyte* xr = x.Quants(r);
        var m4 = Vector512.Create((byte)0x0F);
        var m2 = Vector512.Create((ushort)0x0303);
        var shift01 = Vector512.Create(Vector256.Create((ushort)0), Vector256.Create((ushort)2));
        var shift23 = Vector512.Create(Vector256.Create((ushort)4), Vector256.Create((ushort)6));
        var pick = Vector512.Create(Vector256.Create(Vector128.Create((short)0), Vector128.Create((short)1)),
            Vector256.Create(Vector128.Create((short)2), Vector128.Create((short)3)));
        Vector256<float> a = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q6KBlockBytes;
            var table = Vector512.Create(Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)blk + 192)),
                Vector256<short>.Zero);
            Vector512<int> s = default;
            for (int half = 0; half < 2; half++)
            {
                var ql = Vector512.Load(blk + 64 * half);
                var qh = Vector512.Create(Vector256.Load(blk + 128 + 32 * half)).AsUInt16();
                var q01 = (ql & m4) | ((Avx512BW.ShiftRightLogicalVariable(qh, shift01) & m2) << 4).AsByte();
                var q23 = ((ql.AsUInt16() >> 4).AsByte() & m4)
                    | ((Avx512BW.ShiftRightLogicalVariable(qh, shift23) & m2) << 4).AsByte();
                sbyte* xo = xr + b * 256 + 128 * half;
                var sc01 = Avx512BW.PermuteVar32x16(table, pick + Vector512.Create((short)(8 * half)));
                var sc23 = Avx512BW.PermuteVar32x16(table, pick + Vector512.Create((short)(8 * half + 4)));
                s += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q01, Vector512.Load(xo)), sc01);
                s += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(q23, Vector512.Load(xo + 64)), sc23);
            }
            a = Q6KBlockEnd(s.GetLower() + s.GetUpper(), Q6KScales(blk), x.Sums(r) + 16 * b,
                x.Scales(r)[b] * F16(blk + 208), a);
        }
        return a;
    }

    /// <summary>
    /// s + Σ scale·(q·x) over 32 unsigned weight bytes and 32 activation bytes, in ggml's eight int lanes (lane L:
    /// bytes 4L..4L+3): byte products summed in pairs (|pair| ≤ 2·63·128, no saturation), each pair weighted by its
    /// 16-bit scale and summed in pairs again. AVX-VNNI does the last multiply and both adds in one instruction;
    /// the integers are exact either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<int> s, Vector256<byte> q, Vector256<sbyte> x, Vector256<short> scale)
    {
        var pairs = Avx2.MultiplyAddAdjacent(q, x);
        return AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(s, pairs, scale)
            : s + Avx2.MultiplyAddAdjacent(pairs, scale);
    }

    /// <summary>Bytes of a q4_K block: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, qs[128].</summary>
    public const int Q4KBlockBytes = 144;

    /// <summary>How far ahead, in groups of four weight rows, the 128-bit single-sequence kernel prefetches: one group
    /// ahead was 6% slower per step, sixteen no better than four (the machine's noise is about as large).</summary>
    const int GroupsAhead = 4;

    /// <summary>
    /// Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q4_K weights w [N × k] in place, as ggml's x86 build computes
    /// them: it repacks q4_K matrices (rows a multiple of 8) into interleaved blocks of eight rows, and each output is
    /// then one f32 chain per superblock, acc += Σ scale·(q·x) × (d_w·d_x), beside a second one for the mins,
    /// acc_min += Σ min·bsum × (dmin_w·d_x), the result acc − acc_min. Every row takes its gemv's order (per
    /// superblock): its gemm adds per pair of sub-blocks for groups of four activation rows, which would make a row's
    /// logits depend on its place in the batch, and the greedy parity tests pass with the gemv order throughout.
    /// Four chains run side by side in the lanes of one vector (four weight rows, or four batch rows), so the
    /// horizontal sums of a superblock's integer lanes are shared by all eight chains.
    /// </summary>
    public static void Q4K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast)
        {
            if (Vector128.IsHardwareAccelerated) Q4K128(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            else Q4KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            return;
        }
        var x = new Activations(xq, xd, xsums, k);
        long rowBytes = (long)x.Blocks * Q4KBlockBytes;
        int* scales = stackalloc int[32];
        int full = m & ~3;
        // eight batch rows (then four) share each weight superblock's decoding; the weight row stays in L1 across the
        // groups. Eight against four: a 1024 × 4096 matrix at batch 16 ran 8% faster (one thread, 42.6 against 46.4
        // GMAC/s)
        for (int n = n0; n < n1 && full > 0; n++)
        {
            int r = 0;
            for (; r + 8 <= full; r += 8)
            {
                var (a, b) = Q4KTile<EightRows>(w + n * rowBytes, x, r, scales);
                Store(ScalesLessMins(a), y + (long)r * ldy + n, ldy, bias == null ? null : bias + n, 0, 4);
                Store(ScalesLessMins(b), y + (long)(r + 4) * ldy + n, ldy, bias == null ? null : bias + n, 0, 4);
            }
            for (; r < full; r += 4)
                Store(ScalesLessMins(Q4KTile<FourRows>(w + n * rowBytes, x, r, scales).Item1), y + (long)r * ldy + n,
                    ldy, bias == null ? null : bias + n, 0, 4);
        }
        // a single sequence (and what is left of a batch) takes four weight rows at a time, sharing its loads; the four
        // about 32 KiB apart, each a sequential run, as MatMulKernels.Float reads rows (the 300m Q4_K_M step at
        // batch 1: 7.54 → 7.28 ms, medians of five alternations, where fetching sixteen rows ahead in software as
        // before gave 7.63)
        for (int r = full; r < m; r++)
            for (int n = n0; n < n1;)
            {
                if (n1 - n < 4)
                {
                    // a short last group repeats its last row: the extra results are simply not stored
                    byte* w0 = w + n * rowBytes, w1 = w + Math.Min(n + 1, n1 - 1) * rowBytes,
                        w2 = w + Math.Min(n + 2, n1 - 1) * rowBytes, w3 = w + Math.Min(n + 3, n1 - 1) * rowBytes;
                    Store(ScalesLessMins(Q4K4x1(w0, w1, w2, w3, x, r, scales)), y + (long)r * ldy + n, 1,
                        bias == null ? null : bias + n, 1, n1 - n);
                    break;
                }
                int apart = MatMulKernels.Apart(rowBytes, n1 - n, 4);
                for (int o = 0; o < apart; o++)
                {
                    byte* w0 = w + (n + o) * rowBytes;
                    long step = apart * rowBytes;
                    Store(ScalesLessMins(Q4K4x1(w0, w0 + step, w0 + 2 * step, w0 + 3 * step, x, r, scales)),
                        y + (long)r * ldy + n + o, apart, bias == null ? null : bias + n + o, apart, 4);
                }
                n += 4 * apart;
            }
    }

    /// <summary>Lane i − lane 4 + i: the four scale chains minus their min chains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> ScalesLessMins(Vector256<float> acc) => acc.GetLower() - acc.GetUpper();

    /// <summary>One q4_K weight row × batch rows r..r+TTile.Rows-1 (four or eight): per four rows, lanes 0-3 the
    /// scale chains and 4-7 the min chains.</summary>
    static (Vector256<float>, Vector256<float>) Q4KTile<TTile>(byte* wr, Activations x, int r, int* scales)
        where TTile : ITile
    {
        bool eight = TTile.Rows == 8;
        var m4 = Vector256.Create((byte)0x0F);
        sbyte* x0 = x.Quants(r), x1 = x.Quants(r + 1), x2 = x.Quants(r + 2), x3 = x.Quants(r + 3);
        sbyte* x4 = eight ? x.Quants(r + 4) : null, x5 = eight ? x.Quants(r + 5) : null,
            x6 = eight ? x.Quants(r + 6) : null, x7 = eight ? x.Quants(r + 7) : null;
        // the rows' group sums and scales located once: recomputing them per superblock (a multiply and a division
        // per row) and the weights' f16 scales per four rows took a third of the tile's time (1024 × 4096 at batch
        // 16, one thread: 47 GMAC/s, 71 with no superblock ends at all)
        short** g = stackalloc short*[TTile.Rows];
        float** d = stackalloc float*[TTile.Rows];
        x.Locate(r, TTile.Rows, g, d);
        Vector256<float> acc = default, acc2 = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q4KBlockBytes;
            var mins = ScalesAndMins(blk + 4, scales);
            var dw = HalfMath.ToSingle(Vector256.Create(Vector128.Create((int)*(short*)blk),
                Vector128.Create((int)*(short*)(blk + 2))));
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            Vector256<int> s4 = default, s5 = default, s6 = default, s7 = default;
            for (int p = 0; p < 4; p++)
            {
                var q = Vector256.Load(blk + 16 + 32 * p);
                Vector256<byte> lo = q & m4, hi = (q.AsUInt16() >> 4).AsByte() & m4;
                var scLo = Vector256.Create(scales[2 * p]).AsInt16();
                var scHi = Vector256.Create(scales[2 * p + 1]).AsInt16();
                int o = 256 * b + 64 * p;
                s0 = Dot(Dot(s0, lo, Vector256.Load(x0 + o), scLo), hi, Vector256.Load(x0 + o + 32), scHi);
                s1 = Dot(Dot(s1, lo, Vector256.Load(x1 + o), scLo), hi, Vector256.Load(x1 + o + 32), scHi);
                s2 = Dot(Dot(s2, lo, Vector256.Load(x2 + o), scLo), hi, Vector256.Load(x2 + o + 32), scHi);
                s3 = Dot(Dot(s3, lo, Vector256.Load(x3 + o), scLo), hi, Vector256.Load(x3 + o + 32), scHi);
                if (!eight) continue;
                s4 = Dot(Dot(s4, lo, Vector256.Load(x4 + o), scLo), hi, Vector256.Load(x4 + o + 32), scHi);
                s5 = Dot(Dot(s5, lo, Vector256.Load(x5 + o), scLo), hi, Vector256.Load(x5 + o + 32), scHi);
                s6 = Dot(Dot(s6, lo, Vector256.Load(x6 + o), scLo), hi, Vector256.Load(x6 + o + 32), scHi);
                s7 = Dot(Dot(s7, lo, Vector256.Load(x7 + o), scLo), hi, Vector256.Load(x7 + o + 32), scHi);
            }
            acc = Q4KBlockEnd(s0, s1, s2, s3, mins, dw, g, d, b, acc);
            if (eight) acc2 = Q4KBlockEnd(s4, s5, s6, s7, mins, dw, g + 4, d + 4, b, acc2);
        }
        return (acc, acc2);
    }

    /// <summary>A superblock's end for four batch rows (group sums g, scales d): acc += [sums × d_w·d_x | min
    /// sums × dmin_w·d_x], <paramref name="dw"/> holding [d_w ×4 | dmin_w ×4].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Q4KBlockEnd(Vector256<int> s0, Vector256<int> s1, Vector256<int> s2, Vector256<int> s3,
        Vector256<short> mins, Vector256<float> dw, short** g, float** d, int b, Vector256<float> acc)
    {
        var sums = Sum4And4(s0, s1, s2, s3,
            Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g[0] + 16 * b)),
            Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g[1] + 16 * b)),
            Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g[2] + 16 * b)),
            Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g[3] + 16 * b)));
        var dx = Vector128.Create(d[0][b], d[1][b], d[2][b], d[3][b]);
        return Fma.MultiplyAdd(Vector256.ConvertToSingle(sums), dw * Vector256.Create(dx, dx), acc);
    }

    /// <summary>Four q4_K weight rows × batch row r: lanes 0-3 the rows' scale chains, 4-7 their min
    /// chains.</summary>
    static Vector256<float> Q4K4x1(byte* w0, byte* w1, byte* w2, byte* w3, Activations x, int r, int* scales)
    {
        var m4 = Vector256.Create((byte)0x0F);
        sbyte* xr = x.Quants(r);
        float* dr = x.Scales(r);
        short* gr = x.Sums(r);
        Vector256<float> acc = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* b0 = w0 + b * Q4KBlockBytes, b1 = w1 + b * Q4KBlockBytes, b2 = w2 + b * Q4KBlockBytes,
                b3 = w3 + b * Q4KBlockBytes;
            Vector256<short> mn0 = ScalesAndMins(b0 + 4, scales), mn1 = ScalesAndMins(b1 + 4, scales + 8),
                mn2 = ScalesAndMins(b2 + 4, scales + 16), mn3 = ScalesAndMins(b3 + 4, scales + 24);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int p = 0; p < 4; p++)
            {
                int o = 256 * b + 64 * p;
                Vector256<sbyte> xl = Vector256.Load(xr + o), xh = Vector256.Load(xr + o + 32);
                s0 = Nibbles(s0, b0 + 16 + 32 * p, xl, xh, scales + 2 * p);
                s1 = Nibbles(s1, b1 + 16 + 32 * p, xl, xh, scales + 8 + 2 * p);
                s2 = Nibbles(s2, b2 + 16 + 32 * p, xl, xh, scales + 16 + 2 * p);
                s3 = Nibbles(s3, b3 + 16 + 32 * p, xl, xh, scales + 24 + 2 * p);
            }
            var g = Vector256.Load(gr + 16 * b);
            var sums = Sum4And4(s0, s1, s2, s3, Avx2.MultiplyAddAdjacent(mn0, g), Avx2.MultiplyAddAdjacent(mn1, g),
                Avx2.MultiplyAddAdjacent(mn2, g), Avx2.MultiplyAddAdjacent(mn3, g));
            var dw = HalfMath.ToSingle(Vector256.Create(*(short*)b0, *(short*)b1, *(short*)b2, *(short*)b3,
                *(short*)(b0 + 2), *(short*)(b1 + 2), *(short*)(b2 + 2), *(short*)(b3 + 2)));
            acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(sums), dw * Vector256.Create(dr[b]), acc);
        }
        return acc;
    }

    /// <summary>32 bytes of q4_K nibbles (two sub-blocks: low nibbles, then high) against their 64 activations, each
    /// sub-block weighted by its scale (16-bit pairs at <paramref name="scales"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Nibbles(Vector256<int> s, byte* qs, Vector256<sbyte> xl, Vector256<sbyte> xh, int* scales)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var q = Vector256.Load(qs);
        s = Dot(s, q & m4, xl, Vector256.Create(scales[0]).AsInt16());
        return Dot(s, (q.AsUInt16() >> 4).AsByte() & m4, xh, Vector256.Create(scales[1]).AsInt16());
    }

    /// <summary>
    /// A q4_K block's twelve bytes of 6-bit scales and mins (ggml's get_scale_min_k4, four at a time): the eight
    /// scales stored as 16-bit pairs ready to broadcast, the mins returned each twice, one per 16-value group sum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<short> ScalesAndMins(byte* q, int* scales)
    {
        uint u0 = *(uint*)q, u1 = *(uint*)(q + 4), u2 = *(uint*)(q + 8);
        uint sc47 = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
        uint mn47 = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
        var s = Avx2.ConvertToVector256Int32(Vector128.Create(u0 & 0x3F3F3F3F, sc47, 0, 0).AsByte());
        (s | (s << 16)).Store(scales);
        var mins = Vector128.Create(u1 & 0x3F3F3F3F, mn47, 0, 0).AsByte();
        return Avx2.ConvertToVector256Int16(Sse2.UnpackLow(mins, mins));
    }

    /// <summary>Four scale sums and four min sums of eight int lanes each, as [Σs0..Σs3 | Σm0..Σm3].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Sum4And4(Vector256<int> s0, Vector256<int> s1, Vector256<int> s2, Vector256<int> s3,
        Vector256<int> m0, Vector256<int> m1, Vector256<int> m2, Vector256<int> m3)
    {
        var s = Avx2.HorizontalAdd(Avx2.HorizontalAdd(s0, s1), Avx2.HorizontalAdd(s2, s3));
        var mins = Avx2.HorizontalAdd(Avx2.HorizontalAdd(m0, m1), Avx2.HorizontalAdd(m2, m3));
        return Avx2.Permute2x128(s, mins, 0x20) + Avx2.Permute2x128(s, mins, 0x31);
    }

    /// <summary>The q4_K product one value at a time (CPUs without SIMD), with the same chains.</summary>
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
                    float d = F16(blk) * xd[(long)r * blocks + b];
                    float dmin = F16(blk + 2) * xd[(long)r * blocks + b];
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
        if (!Fast)
        {
            if (Vector128.IsHardwareAccelerated) Q5K128(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            else Q5KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
            return;
        }
        var x = new Activations(xq, xd, xsums, k);
        long rowBytes = (long)x.Blocks * Q5KBlockBytes;
        int* scales = stackalloc int[8];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            float add = bias == null ? 0 : bias[n];
            int r = 0;
            // four batch rows share each weight superblock's decoding
            for (; r + 4 <= m; r += 4)
            {
                var (a0, a1, a2, a3, mins) = Q5K1x4(wr, x, r, scales);
                y[(long)r * ldy + n] = Simd.HorizontalSum8(a0) + mins[0] + add;
                y[(long)(r + 1) * ldy + n] = Simd.HorizontalSum8(a1) + mins[1] + add;
                y[(long)(r + 2) * ldy + n] = Simd.HorizontalSum8(a2) + mins[2] + add;
                y[(long)(r + 3) * ldy + n] = Simd.HorizontalSum8(a3) + mins[3] + add;
            }
            for (; r < m; r++)
            {
                var (a, min) = Q5K1x1(wr, x, r, scales);
                y[(long)r * ldy + n] = Simd.HorizontalSum8(a) + min + add;
            }
        }
    }

    /// <summary>One q5_K weight row × batch rows r..r+3: their lanes and their min chains.</summary>
    static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>, Vector128<float>) Q5K1x4(
        byte* wr, Activations x, int r, int* scales)
    {
        sbyte* x0 = x.Quants(r), x1 = x.Quants(r + 1), x2 = x.Quants(r + 2), x3 = x.Quants(r + 3);
        float* d0 = x.Scales(r), d1 = x.Scales(r + 1), d2 = x.Scales(r + 2), d3 = x.Scales(r + 3);
        short* g0 = x.Sums(r), g1 = x.Sums(r + 1), g2 = x.Sums(r + 2), g3 = x.Sums(r + 3);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector128<float> sumMin = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q5KBlockBytes;
            var mins = ScalesAndMins(blk + 4, scales);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int p = 0; p < 4; p++)
            {
                var (lo, hi) = Q5KPair(blk, p);
                var scLo = Vector256.Create(scales[2 * p]).AsInt16();
                var scHi = Vector256.Create(scales[2 * p + 1]).AsInt16();
                int o = 256 * b + 64 * p;
                s0 = Dot(Dot(s0, lo, Vector256.Load(x0 + o), scLo), hi, Vector256.Load(x0 + o + 32), scHi);
                s1 = Dot(Dot(s1, lo, Vector256.Load(x1 + o), scLo), hi, Vector256.Load(x1 + o + 32), scHi);
                s2 = Dot(Dot(s2, lo, Vector256.Load(x2 + o), scLo), hi, Vector256.Load(x2 + o + 32), scHi);
                s3 = Dot(Dot(s3, lo, Vector256.Load(x3 + o), scLo), hi, Vector256.Load(x3 + o + 32), scHi);
            }
            var imin = Avx2.HorizontalAdd(
                Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g0 + 16 * b)),
                    Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g1 + 16 * b))),
                Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g2 + 16 * b)),
                    Avx2.MultiplyAddAdjacent(mins, Vector256.Load(g3 + 16 * b))));
            var dx = Vector128.Create(d0[b], d1[b], d2[b], d3[b]);
            sumMin = Fma.MultiplyAdd(-dx * F16(blk + 2),
                Vector128.ConvertToSingle(imin.GetLower() + imin.GetUpper()), sumMin);
            var d = dx * F16(blk);
            a0 = Fma.MultiplyAdd(Vector256.Create(d[0]), Vector256.ConvertToSingle(s0), a0);
            a1 = Fma.MultiplyAdd(Vector256.Create(d[1]), Vector256.ConvertToSingle(s1), a1);
            a2 = Fma.MultiplyAdd(Vector256.Create(d[2]), Vector256.ConvertToSingle(s2), a2);
            a3 = Fma.MultiplyAdd(Vector256.Create(d[3]), Vector256.ConvertToSingle(s3), a3);
        }
        return (a0, a1, a2, a3, sumMin);
    }

    /// <summary>One q5_K weight row × batch row r.</summary>
    static (Vector256<float>, float) Q5K1x1(byte* wr, Activations x, int r, int* scales)
    {
        sbyte* xr = x.Quants(r);
        float* dr = x.Scales(r);
        short* gr = x.Sums(r);
        Vector256<float> a = default;
        float sumMin = 0;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q5KBlockBytes;
            var mins = ScalesAndMins(blk + 4, scales);
            Vector256<int> s = default;
            for (int p = 0; p < 4; p++)
            {
                var (lo, hi) = Q5KPair(blk, p);
                int o = 256 * b + 64 * p;
                s = Dot(s, lo, Vector256.Load(xr + o), Vector256.Create(scales[2 * p]).AsInt16());
                s = Dot(s, hi, Vector256.Load(xr + o + 32), Vector256.Create(scales[2 * p + 1]).AsInt16());
            }
            int imin = Vector256.Sum(Avx2.MultiplyAddAdjacent(mins, Vector256.Load(gr + 16 * b)));
            sumMin = MathF.FusedMultiplyAdd(-dr[b] * F16(blk + 2), imin, sumMin);
            a = Fma.MultiplyAdd(Vector256.Create(dr[b] * F16(blk)), Vector256.ConvertToSingle(s), a);
        }
        return (a, sumMin);
    }

    /// <summary>Sub-blocks 2p and 2p+1 of a q5_K block: the nibbles of qs[32p..32p+32] with their fifth bits from
    /// qh (bits 2p and 2p+1 of each byte).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<byte> Lo, Vector256<byte> Hi) Q5KPair(byte* blk, int p)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var bit = Vector256.Create((byte)0x10);
        var qh = Vector256.Load(blk + 16).AsUInt16();
        var q = Vector256.Load(blk + 48 + 32 * p);
        var lo = (q & m4) | (((qh >> (2 * p)) << 4).AsByte() & bit);
        var hi = ((q.AsUInt16() >> 4).AsByte() & m4) | (((qh >> (2 * p + 1)) << 4).AsByte() & bit);
        return (lo, hi);
    }

    /// <summary>The q5_K product one value at a time (CPUs without SIMD), in the fast kernel's lanes and
    /// chains.</summary>
    public static void Q5KPortable(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q5KBlockBytes;
        Span<byte> scales = stackalloc byte[8], mins = stackalloc byte[8];
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
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
                    sumMin = MathF.FusedMultiplyAdd(-dx * F16(blk + 2), imin, sumMin);
                    float d = dx * F16(blk);
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
                float sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = sum + sumMin + (bias == null ? 0 : bias[n]);
            }
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
                    float d = xd[(long)r * blocks + b] * F16(blk + 208);
                    for (int lane = 0; lane < 8; lane++)
                        acc[lane] = MathF.FusedMultiplyAdd(d, lanes[lane], acc[lane]);
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }
}
