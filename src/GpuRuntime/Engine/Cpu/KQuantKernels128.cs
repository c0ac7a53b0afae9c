using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static Weft.GpuRuntime.Engine.Cpu.HalfMath;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The K-quant kernels at 128 bits (Arm64's width; SSE on x64 without AVX2): the AVX2 kernels' eight int lanes as
/// two vectors, lanes 0-3 and 4-7 (bytes 0-15 and 16-31 of each 32-value chunk), and the same f32 chains, so the
/// results equal the portable path's bit for bit. Tiles as at 256 bits: one weight row × four batch rows, and for a
/// single sequence (q4_K) four weight rows × one.
/// </summary>
static unsafe partial class KQuantKernels
{
    /// <summary>q6_K at 128 bits: see <see cref="Q6K"/>.</summary>
    public static void Q6K128(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
        => Tiles128(w, new Activations(xq, xd, xsums, k), Q6KBlockBytes, y, bias, m, ldy, n0, n1,
            &Q6K128Tile<OneRow>, &Q6K128Tile<FourRows>);

    /// <summary>The 128-bit q6_K and q5_K drivers: each weight row against the batch four rows at a time, the rows
    /// left over (a single sequence's) one at a time through their own tile.</summary>
    static void Tiles128(byte* w, Activations x, int blockBytes, float* y, float* bias, int m, int ldy, int n0, int n1,
        delegate*<byte*, Activations, int, float*, void> one, delegate*<byte*, Activations, int, float*, void> four)
    {
        long rowBytes = (long)x.Blocks * blockBytes;
        float* sums = stackalloc float[4];
        for (int n = n0; n < n1; n++)
        {
            float add = bias == null ? 0 : bias[n];
            int r = 0;
            for (; r + 4 <= m; r += 4)
            {
                four(w + n * rowBytes, x, r, sums);
                for (int j = 0; j < 4; j++) y[(long)(r + j) * ldy + n] = sums[j] + add;
            }
            for (; r < m; r++)
            {
                one(w + n * rowBytes, x, r, sums);
                y[(long)r * ldy + n] = sums[0] + add;
            }
        }
    }

    /// <summary>One q6_K weight row × batch rows r..r+TTile.Rows-1 (one or four).</summary>
    static void Q6K128Tile<TTile>(byte* wr, Activations x, int r, float* sums) where TTile : struct, ITile
    {
        bool four = TTile.Rows == 4;
        var m4 = Vector128.Create((byte)0x0F);
        var m2 = Vector128.Create((ushort)0x0303);
        sbyte* x0 = x.Quants(r), x1 = four ? x.Quants(r + 1) : null, x2 = four ? x.Quants(r + 2) : null,
            x3 = four ? x.Quants(r + 3) : null;
        // the f32 chains live in memory between superblocks: in registers, the four-row tile's eight chains beside
        // its eight integer sums spilled inside the chunk loop on x64's sixteen (7.2 against 11 GMAC/s at batch 16)
        var chains = stackalloc Vector128<float>[2 * TTile.Rows];
        for (int i = 0; i < 2 * TTile.Rows; i++) chains[i] = default;
        int* pairs = stackalloc int[16];
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q6KBlockBytes;
            var scales = Vector128.Load((sbyte*)blk + 192);
            Vector128<short> scLo = Vector128.WidenLower(scales), scHi = Vector128.WidenUpper(scales);
            ScalePairs(scLo, pairs);
            ScalePairs(scHi, pairs + 8);
            Vector128<int> s0 = default, t0 = default, s1 = default, t1 = default, s2 = default, t2 = default,
                s3 = default, t3 = default;
            for (int half = 0; half < 2; half++)
            {
                // the chunks spelled out, so that each one's nibble half and high-bit shift are constants
                int o = b * 256 + 128 * half;
                Q6K128Chunk<TTile>(blk, half, 0, pairs, m4, m2, x0 + o, x1 + o, x2 + o, x3 + o,
                    ref s0, ref t0, ref s1, ref t1, ref s2, ref t2, ref s3, ref t3);
                Q6K128Chunk<TTile>(blk, half, 1, pairs, m4, m2, x0 + o, x1 + o, x2 + o, x3 + o,
                    ref s0, ref t0, ref s1, ref t1, ref s2, ref t2, ref s3, ref t3);
                Q6K128Chunk<TTile>(blk, half, 2, pairs, m4, m2, x0 + o, x1 + o, x2 + o, x3 + o,
                    ref s0, ref t0, ref s1, ref t1, ref s2, ref t2, ref s3, ref t3);
                Q6K128Chunk<TTile>(blk, half, 3, pairs, m4, m2, x0 + o, x1 + o, x2 + o, x3 + o,
                    ref s0, ref t0, ref s1, ref t1, ref s2, ref t2, ref s3, ref t3);
            }
            float dw = F16(blk + 208);
            Q6KBlockEnd(s0, t0, scLo, scHi, x, r, b, dw, chains);
            if (!four) continue;
            Q6KBlockEnd(s1, t1, scLo, scHi, x, r + 1, b, dw, chains + 2);
            Q6KBlockEnd(s2, t2, scLo, scHi, x, r + 2, b, dw, chains + 4);
            Q6KBlockEnd(s3, t3, scLo, scHi, x, r + 3, b, dw, chains + 6);
        }
        for (int i = 0; i < TTile.Rows; i++) sums[i] = Simd.HorizontalSum8(chains[2 * i], chains[2 * i + 1]);
    }

    /// <summary>Chunk t of a q6_K half against batch rows at x0..x3 (offset to the half): its bytes 0-15 (scale
    /// c) into s, 16-31 (scale c + 1) into t, as at 256 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Q6K128Chunk<TTile>(byte* blk, int half, int t, int* pairs, Vector128<byte> m4, Vector128<ushort> m2,
        sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, ref Vector128<int> s0, ref Vector128<int> t0,
        ref Vector128<int> s1, ref Vector128<int> t1, ref Vector128<int> s2, ref Vector128<int> t2,
        ref Vector128<int> s3, ref Vector128<int> t3) where TTile : struct, ITile
    {
        byte* ql = blk + 64 * half + 32 * (t & 1);
        byte* qh = blk + 128 + 32 * half;
        var q = Q6KBytes(ql, qh, t, m4, m2);
        var h = Q6KBytes(ql + 16, qh + 16, t, m4, m2);
        int o = 32 * t, c = 8 * half + 2 * t;
        Vector128<short> lo = Broadcast(pairs + c), hi = Broadcast(pairs + c + 1);
        s0 = ByteDot128.AddScaled(s0, q, Vector128.Load(x0 + o), lo);
        t0 = ByteDot128.AddScaled(t0, h, Vector128.Load(x0 + o + 16), hi);
        if (TTile.Rows == 1) return;
        s1 = ByteDot128.AddScaled(s1, q, Vector128.Load(x1 + o), lo);
        t1 = ByteDot128.AddScaled(t1, h, Vector128.Load(x1 + o + 16), hi);
        s2 = ByteDot128.AddScaled(s2, q, Vector128.Load(x2 + o), lo);
        t2 = ByteDot128.AddScaled(t2, h, Vector128.Load(x2 + o + 16), hi);
        s3 = ByteDot128.AddScaled(s3, q, Vector128.Load(x3 + o), lo);
        t3 = ByteDot128.AddScaled(t3, h, Vector128.Load(x3 + o + 16), hi);
    }

    /// <summary>A q6_K superblock's end for batch row r: the −32 offset through the group sums (lane L takes groups
    /// 2L, 2L+1; lanes 4-7 groups 8-15), then the row's two f32 chains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Q6KBlockEnd(Vector128<int> s, Vector128<int> t, Vector128<short> scLo, Vector128<short> scHi,
        Activations x, int r, int b, float dw, Vector128<float>* chains)
    {
        short* g = x.Sums(r) + 16 * b;
        s -= ByteDot128.Pairs(scLo, Vector128.Load(g)) << 5;
        t -= ByteDot128.Pairs(scHi, Vector128.Load(g + 8)) << 5;
        Chain(ref chains[0], ref chains[1], x.Scales(r)[b] * dw, s, t);
    }

    /// <summary>Eight 16-bit scales as 32-bit pairs (each scale in both halves), for <see cref="Broadcast"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ScalePairs(Vector128<short> scales, int* pairs)
    {
        Vector128<int> lo = Vector128.WidenLower(scales), hi = Vector128.WidenUpper(scales);
        var low16 = Vector128.Create(0xFFFF);
        ((lo & low16) | (lo << 16)).Store(pairs);
        ((hi & low16) | (hi << 16)).Store(pairs + 4);
    }

    /// <summary>A scale pair in every lane, loaded as a float so that x64 without AVX2 takes one vbroadcastss (a
    /// 32-bit integer broadcast is a move and a shuffle there).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<short> Broadcast(int* pair) => Vector128.Create(*(float*)pair).AsInt16();

    /// <summary>16 q6_K quants of chunk t: the nibbles at <paramref name="ql"/> (low for t &lt; 2) with 2 high bits
    /// from <paramref name="qh"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<byte> Q6KBytes(byte* ql, byte* qh, int t, Vector128<byte> m4, Vector128<ushort> m2)
    {
        var l = Vector128.Load(ql);
        var lo = t < 2 ? l & m4 : (l.AsUInt16() >> 4).AsByte() & m4;
        return lo | (((Vector128.Load(qh).AsUInt16() >> (2 * t)) & m2) << 4).AsByte();
    }

    /// <summary>Lanes 0-3 and 4-7 of a superblock into their f32 chains: acc = d × lanes + acc, fused as in the
    /// portable path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Chain(ref Vector128<float> lo, ref Vector128<float> hi, float d, Vector128<int> s, Vector128<int> t)
    {
        var dv = Vector128.Create(d);
        lo = Fused128.MultiplyAdd(dv, Vector128.ConvertToSingle(s), lo);
        hi = Fused128.MultiplyAdd(dv, Vector128.ConvertToSingle(t), hi);
    }

    /// <summary>q5_K at 128 bits: see <see cref="Q5K"/>.</summary>
    public static void Q5K128(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
        => Tiles128(w, new Activations(xq, xd, xsums, k), Q5KBlockBytes, y, bias, m, ldy, n0, n1,
            &Q5K128Tile<OneRow>, &Q5K128Tile<FourRows>);

    /// <summary>One q5_K weight row × batch rows r..r+TTile.Rows-1 (one or four): hsum(lanes) + the min
    /// chain.</summary>
    static void Q5K128Tile<TTile>(byte* wr, Activations x, int r, float* sums) where TTile : struct, ITile
    {
        bool four = TTile.Rows == 4;
        sbyte* x0 = x.Quants(r), x1 = x.Quants(r + (four ? 1 : 0)), x2 = x.Quants(r + (four ? 2 : 0)),
            x3 = x.Quants(r + (four ? 3 : 0));
        float* d0 = x.Scales(r), d1 = x.Scales(r + (four ? 1 : 0)), d2 = x.Scales(r + (four ? 2 : 0)),
            d3 = x.Scales(r + (four ? 3 : 0));
        short* g0 = x.Sums(r), g1 = x.Sums(r + (four ? 1 : 0)), g2 = x.Sums(r + (four ? 2 : 0)),
            g3 = x.Sums(r + (four ? 3 : 0));
        Vector128<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default,
            a3 = default, b3 = default, sumMin = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q5KBlockBytes;
            var (scales, minsLo, minsHi) = ScalesAndMins(blk + 4);
            Vector128<int> s0 = default, t0 = default, s1 = default, t1 = default, s2 = default, t2 = default,
                s3 = default, t3 = default;
            for (int p = 0; p < 4; p++)
            {
                short scLo = (short)(byte)(scales >> (16 * p)), scHi = (short)(byte)(scales >> (16 * p + 8));
                int o = 256 * b + 64 * p;
                Q5KHalf<TTile>(ref s0, ref s1, ref s2, ref s3, blk, p, 0, x0 + o, x1 + o, x2 + o, x3 + o, scLo, scHi);
                Q5KHalf<TTile>(ref t0, ref t1, ref t2, ref t3, blk, p, 1, x0 + o, x1 + o, x2 + o, x3 + o, scLo, scHi);
            }
            var imin = four
                ? Vector128.Create(MinSum(minsLo, minsHi, g0 + 16 * b), MinSum(minsLo, minsHi, g1 + 16 * b),
                    MinSum(minsLo, minsHi, g2 + 16 * b), MinSum(minsLo, minsHi, g3 + 16 * b))
                : Vector128.CreateScalar(MinSum(minsLo, minsHi, g0 + 16 * b));
            var dx = Vector128.Create(d0[b], d1[b], d2[b], d3[b]);
            sumMin = Fused128.MultiplyAdd(-dx * F16(blk + 2), Vector128.ConvertToSingle(imin), sumMin);
            var d = dx * F16(blk);
            Chain(ref a0, ref b0, d[0], s0, t0);
            if (!four) continue;
            Chain(ref a1, ref b1, d[1], s1, t1);
            Chain(ref a2, ref b2, d[2], s2, t2);
            Chain(ref a3, ref b3, d[3], s3, t3);
        }
        sums[0] = Simd.HorizontalSum8(a0, b0) + sumMin[0];
        if (!four) return;
        sums[1] = Simd.HorizontalSum8(a1, b1) + sumMin[1];
        sums[2] = Simd.HorizontalSum8(a2, b2) + sumMin[2];
        sums[3] = Simd.HorizontalSum8(a3, b3) + sumMin[3];
    }

    /// <summary>q4_K at 128 bits: see <see cref="Q4K"/>; the same tiles, the same chains.</summary>
    public static void Q4K128(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        var x = new Activations(xq, xd, xsums, k);
        long rowBytes = (long)x.Blocks * Q4KBlockBytes;
        int full = m & ~3;
        for (int n = n0; n < n1 && full > 0; n++)
            for (int r = 0; r < full; r += 4)
            {
                var (acc, accMin) = Q4K128x4(w + n * rowBytes, x, r);
                Store(acc - accMin, y + (long)r * ldy + n, ldy, bias == null ? null : bias + n, 0, 4);
            }
        for (int r = full; r < m; r++)
            for (int n = n0; n < n1; n += 4)
            {
                byte* w0 = w + n * rowBytes, w1 = w + Math.Min(n + 1, n1 - 1) * rowBytes,
                    w2 = w + Math.Min(n + 2, n1 - 1) * rowBytes, w3 = w + Math.Min(n + 3, n1 - 1) * rowBytes;
                var (acc, accMin) = Q4K128x1(w0, w1, w2, w3, x, r);
                Store(acc - accMin, y + (long)r * ldy + n, 1, bias == null ? null : bias + n, 1, Math.Min(4, n1 - n));
            }
    }

    /// <summary>y[i · step] = v[i] (+ bias[i · biasStep]) for the first <paramref name="count"/> lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(Vector128<float> v, float* y, long step, float* bias, int biasStep, int count)
    {
        for (int i = 0; i < count; i++) y[i * step] = v[i] + (bias == null ? 0 : bias[i * biasStep]);
    }

    /// <summary>One q4_K weight row × batch rows r..r+3: the four scale chains and the four min chains.</summary>
    static (Vector128<float>, Vector128<float>) Q4K128x4(byte* wr, Activations x, int r)
    {
        var m4 = Vector128.Create((byte)0x0F);
        sbyte* x0 = x.Quants(r), x1 = x.Quants(r + 1), x2 = x.Quants(r + 2), x3 = x.Quants(r + 3);
        float* d0 = x.Scales(r), d1 = x.Scales(r + 1), d2 = x.Scales(r + 2), d3 = x.Scales(r + 3);
        short* g0 = x.Sums(r), g1 = x.Sums(r + 1), g2 = x.Sums(r + 2), g3 = x.Sums(r + 3);
        int* pairs = stackalloc int[8];
        Vector128<float> acc = default, accMin = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            byte* blk = wr + b * Q4KBlockBytes;
            var (scales, minsLo, minsHi) = ScalesAndMins(blk + 4);
            ScalePairs(Vector128.WidenLower(Vector128.CreateScalar(scales).AsByte()).AsInt16(), pairs);
            // the superblock's integer sums only: their lane order does not matter
            Vector128<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int p = 0; p < 4; p++)
            {
                Vector128<byte> q0 = Vector128.Load(blk + 16 + 32 * p), q1 = Vector128.Load(blk + 32 + 32 * p);
                Vector128<byte> lo0 = q0 & m4, lo1 = q1 & m4, hi0 = (q0.AsUInt16() >> 4).AsByte() & m4,
                    hi1 = (q1.AsUInt16() >> 4).AsByte() & m4;
                Vector128<short> scLo = Broadcast(pairs + 2 * p), scHi = Broadcast(pairs + 2 * p + 1);
                int o = 256 * b + 64 * p;
                s0 = ByteDot128.AddScaled2(ByteDot128.AddScaled2(s0, lo0, lo1, x0 + o, scLo), hi0, hi1, x0 + o + 32,
                    scHi);
                s1 = ByteDot128.AddScaled2(ByteDot128.AddScaled2(s1, lo0, lo1, x1 + o, scLo), hi0, hi1, x1 + o + 32,
                    scHi);
                s2 = ByteDot128.AddScaled2(ByteDot128.AddScaled2(s2, lo0, lo1, x2 + o, scLo), hi0, hi1, x2 + o + 32,
                    scHi);
                s3 = ByteDot128.AddScaled2(ByteDot128.AddScaled2(s3, lo0, lo1, x3 + o, scLo), hi0, hi1, x3 + o + 32,
                    scHi);
            }
            var isum = ByteDot128.Sum4(s0, s1, s2, s3);
            var imin = ByteDot128.Sum4(MinLanes(minsLo, minsHi, g0 + 16 * b), MinLanes(minsLo, minsHi, g1 + 16 * b),
                MinLanes(minsLo, minsHi, g2 + 16 * b), MinLanes(minsLo, minsHi, g3 + 16 * b));
            var dx = Vector128.Create(d0[b], d1[b], d2[b], d3[b]);
            acc = Fused128.MultiplyAdd(Vector128.ConvertToSingle(isum), dx * F16(blk), acc);
            accMin = Fused128.MultiplyAdd(Vector128.ConvertToSingle(imin), dx * F16(blk + 2), accMin);
        }
        return (acc, accMin);
    }

    /// <summary>Four q4_K weight rows × batch row r: their scale chains and min chains.</summary>
    static (Vector128<float>, Vector128<float>) Q4K128x1(byte* w0, byte* w1, byte* w2, byte* w3, Activations x,
        int r)
    {
        sbyte* xr = x.Quants(r);
        float* dr = x.Scales(r);
        short* gr = x.Sums(r);
        Vector128<float> acc = default, accMin = default;
        for (int b = 0; b < x.Blocks; b++)
        {
            // four rows sixteen ahead, a superblock's share at a time, so they arrive from memory while these compute
            // (x64 only; the AVX2 kernel, with spaced rows, does without)
            byte* ahead = w0 + (4 * x.Blocks * GroupsAhead + 4 * b) * Q4KBlockBytes;
            for (int l = 0; l < 4 * Q4KBlockBytes; l += 64) Simd.Prefetch(ahead + l);
            byte* b0 = w0 + b * Q4KBlockBytes, b1 = w1 + b * Q4KBlockBytes, b2 = w2 + b * Q4KBlockBytes,
                b3 = w3 + b * Q4KBlockBytes;
            var isum = Vector128.Create(Q4KSum(b0, xr + 256 * b), Q4KSum(b1, xr + 256 * b),
                Q4KSum(b2, xr + 256 * b), Q4KSum(b3, xr + 256 * b));
            var imin = Vector128.Create(Q4KMinSum(b0, gr + 16 * b), Q4KMinSum(b1, gr + 16 * b),
                Q4KMinSum(b2, gr + 16 * b), Q4KMinSum(b3, gr + 16 * b));
            var dx = Vector128.Create(dr[b]);
            acc = Fused128.MultiplyAdd(Vector128.ConvertToSingle(isum),
                Vector128.Create(F16(b0), F16(b1), F16(b2), F16(b3)) * dx, acc);
            accMin = Fused128.MultiplyAdd(Vector128.ConvertToSingle(imin),
                Vector128.Create(F16(b0 + 2), F16(b1 + 2), F16(b2 + 2), F16(b3 + 2)) * dx, accMin);
        }
        return (acc, accMin);
    }

    /// <summary>Σ scale·(q·x) over one q4_K superblock (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Q4KSum(byte* blk, sbyte* x)
    {
        var m4 = Vector128.Create((byte)0x0F);
        ulong scales = ScalesAndMins(blk + 4).Scales;
        Vector128<int> s = default;
        for (int p = 0; p < 4; p++)
        {
            short scLo = (short)(byte)(scales >> (16 * p)), scHi = (short)(byte)(scales >> (16 * p + 8));
            for (int j = 0; j < 32; j += 16)
            {
                var q = Vector128.Load(blk + 16 + 32 * p + j);
                s = ByteDot128.AddScaled(s, q & m4, Vector128.Load(x + 64 * p + j), scLo);
                s = ByteDot128.AddScaled(s, (q.AsUInt16() >> 4).AsByte() & m4, Vector128.Load(x + 64 * p + j + 32),
                    scHi);
            }
        }
        return Vector128.Sum(s);
    }

    /// <summary>Σ min·bsum over one q4_K superblock (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Q4KMinSum(byte* blk, short* g)
    {
        var (_, minsLo, minsHi) = ScalesAndMins(blk + 4);
        return MinSum(minsLo, minsHi, g);
    }

    /// <summary>Bytes 16j..16j+15 of q5_K sub-blocks 2p (low nibbles) and 2p+1 (high), their fifth bits from qh
    /// (bits 2p and 2p+1 of each byte), against four activation rows at x0..x3 (sub-block 2p) and +32 (2p+1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Q5KHalf<TTile>(ref Vector128<int> s0, ref Vector128<int> s1, ref Vector128<int> s2,
        ref Vector128<int> s3, byte* blk, int p, int j, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, short scLo,
        short scHi) where TTile : struct, ITile
    {
        var m4 = Vector128.Create((byte)0x0F);
        var bit = Vector128.Create((byte)0x10);
        var qh = Vector128.Load(blk + 16 + 16 * j).AsUInt16();
        var q = Vector128.Load(blk + 48 + 32 * p + 16 * j);
        var lo = (q & m4) | (((qh >> (2 * p)) << 4).AsByte() & bit);
        var hi = ((q.AsUInt16() >> 4).AsByte() & m4) | (((qh >> (2 * p + 1)) << 4).AsByte() & bit);
        int o = 16 * j;
        s0 = ByteDot128.AddScaled(ByteDot128.AddScaled(s0, lo, Vector128.Load(x0 + o), scLo), hi,
            Vector128.Load(x0 + o + 32), scHi);
        if (TTile.Rows == 1) return;
        s1 = ByteDot128.AddScaled(ByteDot128.AddScaled(s1, lo, Vector128.Load(x1 + o), scLo), hi,
            Vector128.Load(x1 + o + 32), scHi);
        s2 = ByteDot128.AddScaled(ByteDot128.AddScaled(s2, lo, Vector128.Load(x2 + o), scLo), hi,
            Vector128.Load(x2 + o + 32), scHi);
        s3 = ByteDot128.AddScaled(ByteDot128.AddScaled(s3, lo, Vector128.Load(x3 + o), scLo), hi,
            Vector128.Load(x3 + o + 32), scHi);
    }

    /// <summary>
    /// A q4_K/q5_K block's 6-bit scales and mins (ggml's get_scale_min_k4, four at a time): scale j in byte j of
    /// <c>Scales</c>; the mins as 16-bit values, each twice (one per 16-value group sum), 0-3 and 4-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (ulong Scales, Vector128<short> MinsLo, Vector128<short> MinsHi) ScalesAndMins(byte* q)
    {
        uint u0 = *(uint*)q, u1 = *(uint*)(q + 4), u2 = *(uint*)(q + 8);
        uint sc47 = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
        uint mn47 = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
        var mins = Vector128.WidenLower(Vector128.CreateScalar((u1 & 0x3F3F3F3F) | (ulong)mn47 << 32).AsByte());
        Vector128<uint> lo = Vector128.WidenLower(mins), hi = Vector128.WidenUpper(mins);
        return ((u0 & 0x3F3F3F3F) | (ulong)sc47 << 32, (lo | lo << 16).AsInt16(), (hi | hi << 16).AsInt16());
    }

    /// <summary>Σ min_j · (bsum[2j] + bsum[2j+1]) over a superblock's 16 group sums (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int MinSum(Vector128<short> minsLo, Vector128<short> minsHi, short* g) =>
        Vector128.Sum(MinLanes(minsLo, minsHi, g));

    /// <summary><see cref="MinSum"/> before its lanes are added.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<int> MinLanes(Vector128<short> minsLo, Vector128<short> minsHi, short* g) =>
        ByteDot128.Pairs(minsLo, Vector128.Load(g)) + ByteDot128.Pairs(minsHi, Vector128.Load(g + 8));
}
