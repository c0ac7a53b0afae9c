using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>Four consecutive weight rows of a matrix, read one vector of columns at a time as f32, whatever their
/// storage.</summary>
unsafe interface IRows4<TSelf> where TSelf : struct, IRows4<TSelf>
{
    /// <summary>The rows starting at row <paramref name="n"/> of the same matrix.</summary>
    TSelf At(int n);
    /// <summary>Rows n, n + apart, n + 2·apart and n + 3·apart of the same matrix.</summary>
    TSelf Spaced(int n, int apart);
    int RowBytes { get; }
    /// <summary>Asks for the cache lines holding columns [k, k + 64) of the four rows <paramref name="rowsAhead"/> rows
    /// further on.</summary>
    void Prefetch4(int k, int rowsAhead);
    void Load<TVec>(int k, out TVec w0, out TVec w1, out TVec w2, out TVec w3) where TVec : struct;
    float Scalar(int row, int k);
}

/// <summary>f32 rows: weights in place (prefetched ahead) or a packed scratch already in cache (not
/// prefetched).</summary>
/// <remarks>Few fields, so the JIT keeps them in registers inside the kernels' loops.</remarks>
unsafe readonly struct F32Rows(float* first, int stride, bool prefetch = true) : IRows4<F32Rows>
{
    readonly float* _r0 = first;
    readonly nint _stride = stride;
    readonly bool _prefetch = prefetch;

    public F32Rows At(int n) => new(_r0 + n * _stride, (int)_stride, _prefetch);
    public F32Rows Spaced(int n, int apart) => new(_r0 + n * _stride, (int)_stride * apart, _prefetch);
    public int RowBytes => (int)_stride * sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch4(int k, int rowsAhead)
    {
        if (!_prefetch) return;
        float* p = _r0 + rowsAhead * _stride + k;
        for (int r = 0; r < 4; r++, p += _stride)
            for (int i = 0; i < 64; i += 16) Simd.Prefetch(p + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load<TVec>(int k, out TVec w0, out TVec w1, out TVec w2, out TVec w3) where TVec : struct
    {
        float* p = _r0 + k;
        w0 = Simd<TVec>.Load(p);
        w1 = Simd<TVec>.Load(p + _stride);
        w2 = Simd<TVec>.Load(p + 2 * _stride);
        w3 = Simd<TVec>.Load(p + 3 * _stride);
    }

    public float Scalar(int row, int k) => _r0[row * _stride + k];
}

/// <summary>16-bit float rows, converted to f32 in registers (the JIT compiles one copy per format and
/// width).</summary>
unsafe readonly struct HalfRows<TFormat>(ushort* first, int stride) : IRows4<HalfRows<TFormat>>
    where TFormat : struct, IHalfFormat
{
    readonly ushort* _r0 = first;
    readonly nint _stride = stride;

    public HalfRows<TFormat> At(int n) => new(_r0 + n * _stride, (int)_stride);
    public HalfRows<TFormat> Spaced(int n, int apart) => new(_r0 + n * _stride, (int)_stride * apart);
    public int RowBytes => (int)_stride * sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch4(int k, int rowsAhead)
    {
        ushort* p = _r0 + rowsAhead * _stride + k;
        for (int r = 0; r < 4; r++, p += _stride)
        {
            Simd.Prefetch(p);
            Simd.Prefetch(p + 32);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load<TVec>(int k, out TVec w0, out TVec w1, out TVec w2, out TVec w3) where TVec : struct
    {
        ushort* p = _r0 + k;
        w0 = TFormat.Load<TVec>(p);
        w1 = TFormat.Load<TVec>(p + _stride);
        w2 = TFormat.Load<TVec>(p + 2 * _stride);
        w3 = TFormat.Load<TVec>(p + 3 * _stride);
    }

    public float Scalar(int row, int k) => TFormat.Scalar(_r0[row * _stride + k]);
}

/// <summary>
/// The matmul micro-kernels: y[m, n] = x[m, :] · w[n, :] for a range of output rows n and every batch row m. Each
/// weight row is read from memory once per call for all batch rows: four weight rows are multiplied with four batch
/// rows at a time (16 independent accumulator chains, so FMA latency is hidden), and at larger batches a block of
/// weight rows is first converted to f32 into a per-worker scratch that stays in cache while every batch row uses it.
/// The float kernels are written once over a vector width (<see cref="Simd{TVec}"/>) and run at the widest the CPU
/// accelerates: 512, 256 or 128 bits. Every output is one accumulator vector over k, then its lanes, whatever the
/// batch: a sequence gets bit-identical logits alone or in any batch on each width.
/// </summary>
static unsafe class MatMulKernels
{
    /// <summary>Batch rows processed together against a range of weight rows, so their activations stay in
    /// L2.</summary>
    const int BatchBlock = 32;

    /// <summary>About how far apart the matrix-vector products' rows are (see <see cref="Float{TRows}"/>).</summary>
    const int RunBytes = 32 << 10;

    /// <summary>How many rows apart a matrix-vector product reads its <paramref name="group"/> rows side by side, with
    /// <paramref name="rows"/> (at least a group) left: about <see cref="RunBytes"/>, so that each is a run of its
    /// own, and no further than the rows left allow.</summary>
    public static int Apart(long rowBytes, int rows, int group) =>
        (int)Math.Min(Math.Max(1, RunBytes / rowBytes), rows / group);

    /// <summary>Batch rows above which weight tiles are converted once into scratch instead of on the fly.</summary>
    public const int PackThreshold = 4;

    /// <summary>The float kernels' vector width in bits.</summary>
    public static int FloatWidth => Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    /// <summary>16-bit or 32-bit float weights: rows [n0, n1) of y [M × ldy] from x [M × K].</summary>
    public static void Float<TRows>(TRows matrix, float* x, float* y, float* bias, int m, int k, int ldy, int n0,
        int n1, float* scratch)
        where TRows : struct, IRows4<TRows>
    {
        if (Vector512.IsHardwareAccelerated)
            Float<TRows, Vector512<float>>(matrix, x, y, bias, m, k, ldy, n0, n1, scratch);
        else if (Vector256.IsHardwareAccelerated)
            Float<TRows, Vector256<float>>(matrix, x, y, bias, m, k, ldy, n0, n1, scratch);
        else Float<TRows, Vector128<float>>(matrix, x, y, bias, m, k, ldy, n0, n1, scratch);
    }

    static void Float<TRows, TVec>(TRows matrix, float* x, float* y, float* bias, int m, int k, int ldy, int n0,
        int n1, float* scratch)
        where TRows : struct, IRows4<TRows> where TVec : struct
    {
        int w = Simd<TVec>.Count;
        int n = n0;
        if (m == 1)
        {
            // Eight rows at a time, each read from its own run of rows about 32 KiB long: eight rows side by side
            // (eight streams within a few pages) left the hardware prefetchers of an AMD EPYC (Zen 4) behind, and
            // fetching the next group in software did not make up for it. Two threads from memory (a throwaway harness,
            // f16, medians of 15 alternations): rows of 1024 values 20.3 → 27.1 GB/s, of 4096 values 33.6 → 40.5; the
            // 300m f16 step at batch 1 28.2 → 20.1 ms (medians of five alternations).
            while (n + 8 <= n1)
            {
                int apart = Apart(matrix.RowBytes, n1 - n, 8);
                for (int o = 0; o < apart; o++)
                    Vector8<TRows, TVec>(matrix.Spaced(n + o, apart), matrix.Spaced(n + o + 4 * apart, apart), x, y,
                        bias, k, n + o, apart);
                n += 8 * apart;
            }
        }
        if (m <= PackThreshold)
            for (; n + 4 <= n1; n += 4) Tile<TRows, TVec>(matrix.At(n), x, k, y, bias, m, k, ldy, n);
        else
        {
            // Batch rows in blocks that stay in L2 with this range of weight rows: each block reads the range's weights
            // (from memory the first time, from cache after), four rows at a time converted into scratch. Whole rows:
            // splitting k would change the order of the sums, and with it the bits of the result.
            int tiles = (n1 - n) / 4 * 4;
            for (int mb = 0; mb < m; mb += BatchBlock)
            {
                int rows = Math.Min(BatchBlock, m - mb);
                for (int t = n; t < n + tiles; t += 4)
                {
                    var src = matrix.At(t);
                    for (int kk = 0; kk + w <= k; kk += w)
                    {
                        src.Load<TVec>(kk, out var w0, out var w1, out var w2, out var w3);
                        Simd<TVec>.Store(w0, scratch + kk);
                        Simd<TVec>.Store(w1, scratch + k + kk);
                        Simd<TVec>.Store(w2, scratch + 2 * k + kk);
                        Simd<TVec>.Store(w3, scratch + 3 * k + kk);
                    }
                    for (int kk = k / w * w; kk < k; kk++)
                        for (int r = 0; r < 4; r++) scratch[r * k + kk] = src.Scalar(r, kk);
                    var packed = new F32Rows(scratch, k, prefetch: false);
                    Tile<F32Rows, TVec>(packed, x + (long)mb * k, k, y + (long)mb * ldy, bias, rows, k, ldy, t);
                }
            }
            n += tiles;
        }
        for (; n < n1; n++) // rows left over after the tiles of four
        {
            var src = matrix.At(n);
            for (int r = 0; r < m; r++)
            {
                float s = 0;
                for (int kk = 0; kk < k; kk++) s += src.Scalar(0, kk) * x[(long)r * k + kk];
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>
    /// A matrix-vector product (one batch row, the decode of a single sequence): eight weight rows at a time (rows n +
    /// i·apart), each weight converted once and used by one FMA, eight independent chains. Every output is summed in
    /// the same order as in <see cref="Tile"/> (one accumulator vector over k, then its lanes), so a sequence gets
    /// bit-identical logits alone or in any batch.
    /// </summary>
    static void Vector8<TRows, TVec>(TRows a, TRows b, float* x, float* y, float* bias, int k, int n, int apart)
        where TRows : struct, IRows4<TRows> where TVec : struct
    {
        TVec s0 = default, s1 = default, s2 = default, s3 = default,
            s4 = default, s5 = default, s6 = default, s7 = default;
        int w = Simd<TVec>.Count;
        int kk = 0;
        for (; kk + w <= k; kk += w)
        {
            var v = Simd<TVec>.Load(x + kk);
            a.Load<TVec>(kk, out var w0, out var w1, out var w2, out var w3);
            s0 = Simd<TVec>.MultiplyAdd(w0, v, s0);
            s1 = Simd<TVec>.MultiplyAdd(w1, v, s1);
            s2 = Simd<TVec>.MultiplyAdd(w2, v, s2);
            s3 = Simd<TVec>.MultiplyAdd(w3, v, s3);
            b.Load<TVec>(kk, out w0, out w1, out w2, out w3);
            s4 = Simd<TVec>.MultiplyAdd(w0, v, s4);
            s5 = Simd<TVec>.MultiplyAdd(w1, v, s5);
            s6 = Simd<TVec>.MultiplyAdd(w2, v, s6);
            s7 = Simd<TVec>.MultiplyAdd(w3, v, s7);
        }
        Span<float> s = [Simd<TVec>.Sum(s0), Simd<TVec>.Sum(s1), Simd<TVec>.Sum(s2), Simd<TVec>.Sum(s3),
            Simd<TVec>.Sum(s4), Simd<TVec>.Sum(s5), Simd<TVec>.Sum(s6), Simd<TVec>.Sum(s7)];
        for (; kk < k; kk++)
            for (int i = 0; i < 4; i++)
            {
                s[i] += a.Scalar(i, kk) * x[kk];
                s[i + 4] += b.Scalar(i, kk) * x[kk];
            }
        for (int i = 0; i < 8; i++)
        {
            int row = n + i * apart;
            y[row] = s[i] + (bias == null ? 0 : bias[row]);
        }
    }

    /// <summary>
    /// Batch rows per register tile: four where the CPU has 32 vector registers (AVX-512, Arm64), two where it has 16
    /// (AVX2, SSE), whose 4×4 tile (16 accumulators, four weights, an input) spilled: 300m f16 at batch 16 on AVX2
    /// went from 532 to 316 ms per step with 4×2.
    /// </summary>
    static int TileColumns => Vector512.IsHardwareAccelerated || AdvSimd.Arm64.IsSupported ? 4 : 2;

    /// <summary>Four weight rows starting at n times every batch row, <see cref="TileColumns"/> batch rows at a
    /// time.</summary>
    /// <param name="ldx">Distance between batch rows of x.</param>
    /// <remarks>The following four rows are prefetched while these are read (the packed scratch prefetches
    /// nothing).</remarks>
    static void Tile<TRows, TVec>(TRows w, float* x, int ldx, float* y, float* bias, int m, int k, int ldy, int n)
        where TRows : struct, IRows4<TRows> where TVec : struct
    {
        float* s = stackalloc float[16];
        int cols = TileColumns;
        for (int r = 0; r < m; r += cols)
        {
            // a short last group repeats its last row: the extra results are simply not stored
            float* x0 = x + (long)r * ldx, x1 = x + (long)Math.Min(r + 1, m - 1) * ldx;
            if (cols == 4)
                Dot4x4<TRows, TVec>(w, x0, x1, x + (long)Math.Min(r + 2, m - 1) * ldx,
                    x + (long)Math.Min(r + 3, m - 1) * ldx, k, prefetch: r == 0, s);
            else Dot4x2<TRows, TVec>(w, x0, x1, k, prefetch: r == 0, s);
            for (int kk = k / Simd<TVec>.Count * Simd<TVec>.Count; kk < k; kk++)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < cols; j++)
                        s[i * 4 + j] += w.Scalar(i, kk) * x[(long)Math.Min(r + j, m - 1) * ldx + kk];
            for (int j = 0; j < cols && r + j < m; j++)
                for (int i = 0; i < 4; i++)
                    y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
        }
    }

    /// <summary>The 4×2 register tile (eight accumulators, for 16 vector registers): s[i·4 + j] = w[i] · x_j,
    /// j &lt; 2.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x2<TRows, TVec>(TRows w, float* x0, float* x1, int k, bool prefetch, float* s)
        where TRows : struct, IRows4<TRows> where TVec : struct
    {
        TVec a00 = default, a01 = default, a10 = default, a11 = default,
            a20 = default, a21 = default, a30 = default, a31 = default;
        int width = Simd<TVec>.Count;
        for (int kk = 0; kk + width <= k; kk += width)
        {
            if (prefetch && (kk & 63) == 0) w.Prefetch4(kk, 4);
            w.Load<TVec>(kk, out var w0, out var w1, out var w2, out var w3);
            var v = Simd<TVec>.Load(x0 + kk);
            var u = Simd<TVec>.Load(x1 + kk);
            a00 = Simd<TVec>.MultiplyAdd(w0, v, a00); a01 = Simd<TVec>.MultiplyAdd(w0, u, a01);
            a10 = Simd<TVec>.MultiplyAdd(w1, v, a10); a11 = Simd<TVec>.MultiplyAdd(w1, u, a11);
            a20 = Simd<TVec>.MultiplyAdd(w2, v, a20); a21 = Simd<TVec>.MultiplyAdd(w2, u, a21);
            a30 = Simd<TVec>.MultiplyAdd(w3, v, a30); a31 = Simd<TVec>.MultiplyAdd(w3, u, a31);
        }
        s[0] = Simd<TVec>.Sum(a00); s[1] = Simd<TVec>.Sum(a01);
        s[4] = Simd<TVec>.Sum(a10); s[5] = Simd<TVec>.Sum(a11);
        s[8] = Simd<TVec>.Sum(a20); s[9] = Simd<TVec>.Sum(a21);
        s[12] = Simd<TVec>.Sum(a30); s[13] = Simd<TVec>.Sum(a31);
    }

    /// <summary>
    /// The 4×4 register tile over whole vector steps: s[i·4 + j] = w[i] · x_j. A method of its own so the loop's
    /// few pointers stay in registers (inlined into <see cref="Tile"/>, the JIT spilled them).
    /// </summary>
    /// <param name="prefetch">Request the next four rows' lines (on the first pass over these rows).</param>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x4<TRows, TVec>(TRows w, float* x0, float* x1, float* x2, float* x3, int k, bool prefetch,
        float* s)
        where TRows : struct, IRows4<TRows> where TVec : struct
    {
        TVec a00 = default, a01 = default, a02 = default, a03 = default,
            a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default,
            a30 = default, a31 = default, a32 = default, a33 = default;
        int width = Simd<TVec>.Count;
        for (int kk = 0; kk + width <= k; kk += width)
        {
            if (prefetch && (kk & 63) == 0) w.Prefetch4(kk, 4);
            w.Load<TVec>(kk, out var w0, out var w1, out var w2, out var w3);
            var v = Simd<TVec>.Load(x0 + kk);
            a00 = Simd<TVec>.MultiplyAdd(w0, v, a00); a10 = Simd<TVec>.MultiplyAdd(w1, v, a10);
            a20 = Simd<TVec>.MultiplyAdd(w2, v, a20); a30 = Simd<TVec>.MultiplyAdd(w3, v, a30);
            v = Simd<TVec>.Load(x1 + kk);
            a01 = Simd<TVec>.MultiplyAdd(w0, v, a01); a11 = Simd<TVec>.MultiplyAdd(w1, v, a11);
            a21 = Simd<TVec>.MultiplyAdd(w2, v, a21); a31 = Simd<TVec>.MultiplyAdd(w3, v, a31);
            v = Simd<TVec>.Load(x2 + kk);
            a02 = Simd<TVec>.MultiplyAdd(w0, v, a02); a12 = Simd<TVec>.MultiplyAdd(w1, v, a12);
            a22 = Simd<TVec>.MultiplyAdd(w2, v, a22); a32 = Simd<TVec>.MultiplyAdd(w3, v, a32);
            v = Simd<TVec>.Load(x3 + kk);
            a03 = Simd<TVec>.MultiplyAdd(w0, v, a03); a13 = Simd<TVec>.MultiplyAdd(w1, v, a13);
            a23 = Simd<TVec>.MultiplyAdd(w2, v, a23); a33 = Simd<TVec>.MultiplyAdd(w3, v, a33);
        }
        s[0] = Simd<TVec>.Sum(a00); s[1] = Simd<TVec>.Sum(a01); s[2] = Simd<TVec>.Sum(a02);
        s[3] = Simd<TVec>.Sum(a03); s[4] = Simd<TVec>.Sum(a10); s[5] = Simd<TVec>.Sum(a11);
        s[6] = Simd<TVec>.Sum(a12); s[7] = Simd<TVec>.Sum(a13); s[8] = Simd<TVec>.Sum(a20);
        s[9] = Simd<TVec>.Sum(a21); s[10] = Simd<TVec>.Sum(a22); s[11] = Simd<TVec>.Sum(a23);
        s[12] = Simd<TVec>.Sum(a30); s[13] = Simd<TVec>.Sum(a31); s[14] = Simd<TVec>.Sum(a32);
        s[15] = Simd<TVec>.Sum(a33);
    }

    /// <summary>
    /// q8_0 weights (repacked: quants + 128 as bytes [N × K], f32 block scales [N × K/32]) against q8_0-quantized
    /// activations (int8 [M × K], per-lane corrections [M × K/4], f32 scales [M × K/32]): per block, an exact int8
    /// dot product (AVX-VNNI or AVX2, <see cref="Dot"/>) scaled by both block scales, as ggml computes it, the eight
    /// lanes summed in the order of its hsum_float_8. Vector256.Sum adds neighbouring lanes first, which parted from
    /// llama.cpp's q8_0 dot product in the last bit of about half the outputs (a gemma3 V projection on identical
    /// inputs: 63 of 128 equal, all 128 in this order); gemma's f16 GELU table and the q8_0 rounding of activations
    /// grew such bits into a different token.
    /// </summary>
    public static void Q8(byte* wq, float* wd, sbyte* xq, int* xc, float* xd, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        if (Q8Path == Q8Kernel.Narrow)
        {
            Q8Narrow(wq, wd, xq, xd, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 32;
        Span<float> s = stackalloc float[16];
        int tiles = n0 + (n1 - n0) / 4 * 4;
        if (m == 1)
            // four rows about RunBytes apart, as in Float, and without fetching ahead in software: 300m q8_0 at
            // batch 1 went from 17.9-18.2 to 11.9-14.2 ms per step (13.2-17.0 with the fetches; four alternations)
            for (int n = n0; n < tiles;)
            {
                int apart = Apart(k, tiles - n, 4);
                for (int o = 0; o < apart; o++) VectorQ8(wq, wd, xq, xc, xd, y, bias, k, n + o, apart, prefetch: false);
                n += 4 * apart;
            }
        else if (TileColumns == 2)
            // 16 registers hold no 4×4 tile: four weight rows stay in L1 while each batch row passes them
            for (int mb = 0; mb < m; mb += BatchBlock)
                for (int n = n0; n < tiles; n += 4)
                    for (int r = mb; r < Math.Min(m, mb + BatchBlock); r++)
                        VectorQ8(wq, wd, xq + (long)r * k, xc + (long)r * (k / 4), xd + (long)r * blocks,
                            y + (long)r * ldy, bias, k, n, 1, prefetch: r == mb);
        else
            // batch rows in blocks that stay in L2 while this range of weight rows passes (from cache after the first
            // block)
            for (int mb = 0; mb < m; mb += BatchBlock)
            {
                int mEnd = Math.Min(m, mb + BatchBlock);
                for (int n = n0; n < tiles; n += 4)
                    for (int r = mb; r < mEnd; r += 4)
                    {
                        // a short last group repeats its last row: the extra results are simply not stored
                        int r1 = Math.Min(r + 1, mEnd - 1), r2 = Math.Min(r + 2, mEnd - 1),
                            r3 = Math.Min(r + 3, mEnd - 1);
                        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default,
                            a10 = default, a11 = default, a12 = default, a13 = default,
                            a20 = default, a21 = default, a22 = default, a23 = default,
                            a30 = default, a31 = default, a32 = default, a33 = default;
                        // row pointers hoisted out of the block loop: inside it everything is base + b
                        byte* wr = wq + (long)n * k;
                        float* dr0 = wd + (long)n * blocks, dr1 = dr0 + blocks, dr2 = dr1 + blocks, dr3 = dr2 + blocks;
                        sbyte* x0 = xq + (long)r * k, x1 = xq + (long)r1 * k, x2 = xq + (long)r2 * k,
                            x3 = xq + (long)r3 * k;
                        int* c0 = xc + (long)r * (k / 4), c1 = xc + (long)r1 * (k / 4), c2 = xc + (long)r2 * (k / 4),
                            c3 = xc + (long)r3 * (k / 4);
                        float* e0 = xd + (long)r * blocks, e1 = xd + (long)r1 * blocks, e2 = xd + (long)r2 * blocks,
                            e3 = xd + (long)r3 * blocks;
                        bool prefetch = r == mb;
                        for (int b = 0; b < blocks; b++)
                        {
                            byte* wb = wr + b * 32;
                            if (prefetch && (b & 1) == 0)
                                for (int q = 4; q < 8; q++) Simd.Prefetch(wb + q * k); // the next four rows
                            var w0 = Vector256.Load(wb);
                            var w1 = Vector256.Load(wb + k);
                            var w2 = Vector256.Load(wb + 2 * k);
                            var w3 = Vector256.Load(wb + 3 * k);
                            float d0 = dr0[b], d1 = dr1[b], d2 = dr2[b], d3 = dr3[b];
                            Column(ref a00, ref a10, ref a20, ref a30, w0, w1, w2, w3, d0, d1, d2, d3, x0 + b * 32,
                                c0 + b * 8, e0[b]);
                            Column(ref a01, ref a11, ref a21, ref a31, w0, w1, w2, w3, d0, d1, d2, d3, x1 + b * 32,
                                c1 + b * 8, e1[b]);
                            Column(ref a02, ref a12, ref a22, ref a32, w0, w1, w2, w3, d0, d1, d2, d3, x2 + b * 32,
                                c2 + b * 8, e2[b]);
                            Column(ref a03, ref a13, ref a23, ref a33, w0, w1, w2, w3, d0, d1, d2, d3, x3 + b * 32,
                                c3 + b * 8, e3[b]);
                        }
                        s[0] = Simd.HorizontalSum8(a00); s[1] = Simd.HorizontalSum8(a01);
                        s[2] = Simd.HorizontalSum8(a02); s[3] = Simd.HorizontalSum8(a03);
                        s[4] = Simd.HorizontalSum8(a10); s[5] = Simd.HorizontalSum8(a11);
                        s[6] = Simd.HorizontalSum8(a12); s[7] = Simd.HorizontalSum8(a13);
                        s[8] = Simd.HorizontalSum8(a20); s[9] = Simd.HorizontalSum8(a21);
                        s[10] = Simd.HorizontalSum8(a22); s[11] = Simd.HorizontalSum8(a23);
                        s[12] = Simd.HorizontalSum8(a30); s[13] = Simd.HorizontalSum8(a31);
                        s[14] = Simd.HorizontalSum8(a32); s[15] = Simd.HorizontalSum8(a33);
                        for (int j = 0; j < 4 && r + j < mEnd; j++)
                            for (int i = 0; i < 4; i++)
                                y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
                    }
            }
        for (int n = tiles; n < n1; n++) // rows left over after the tiles of four
            for (int r = 0; r < m; r++)
            {
                float sum = 0;
                for (int b = 0; b < blocks; b++)
                {
                    int isum = 0;
                    for (int j = 0; j < 32; j++)
                        isum += (wq[(long)n * k + b * 32 + j] - 128) * xq[(long)r * k + b * 32 + j];
                    sum += wd[(long)n * blocks + b] * xd[(long)r * blocks + b] * isum;
                }
                y[(long)r * ldy + n] = sum + (bias == null ? 0 : bias[n]);
            }
    }

    /// <summary>q8_0 matrix-vector product: four weight rows (n + i·apart) against the one activation row, the four
    /// rows after them fetched ahead where <paramref name="prefetch"/> (the first of a batch's rows on 16 registers).
    /// </summary>
    static void VectorQ8(byte* wq, float* wd, sbyte* xq, int* xc, float* xd, float* y, float* bias, int k, int n,
        int apart, bool prefetch)
    {
        int blocks = k / 32;
        long step = (long)apart * k, scaleStep = (long)apart * blocks;
        byte* w = wq + (long)n * k;
        float* d = wd + (long)n * blocks;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            if (prefetch && (b & 1) == 0)
                for (int r = 4; r < 8; r++) Simd.Prefetch(w + b * 32 + r * step); // the four rows after these
            Column(ref a0, ref a1, ref a2, ref a3,
                Vector256.Load(w + b * 32), Vector256.Load(w + step + b * 32), Vector256.Load(w + 2 * step + b * 32),
                Vector256.Load(w + 3 * step + b * 32),
                d[b], d[scaleStep + b], d[2 * scaleStep + b], d[3 * scaleStep + b], xq + b * 32, xc + b * 8, xd[b]);
        }
        Span<float> s = [Simd.HorizontalSum8(a0), Simd.HorizontalSum8(a1), Simd.HorizontalSum8(a2),
            Simd.HorizontalSum8(a3)];
        for (int i = 0; i < 4; i++)
        {
            int row = n + i * apart;
            y[row] = s[i] + (bias == null ? 0 : bias[row]);
        }
    }

    /// <summary>
    /// One activation block against the four weight rows' blocks: a[i] += (dw[i]·dx) × Σ w[i]·x, the sum in eight
    /// lanes of four bytes each (<see cref="Dot"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Column(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
        ref Vector256<float> a3,
        Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
        float d0, float d1, float d2, float d3, sbyte* xb, int* xc, float dx)
    {
        var x = Vector256.Load(xb);
        var c = Vector256.Load(xc);
        a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w0, x)), Vector256.Create(d0 * dx), a0);
        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w1, x)), Vector256.Create(d1 * dx), a1);
        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w2, x)), Vector256.Create(d2 * dx), a2);
        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w3, x)), Vector256.Create(d3 * dx), a3);
    }

    /// <summary>
    /// The exact int8 dot product of a block in eight lanes (lane i: bytes 4i..4i+3). VNNI multiplies unsigned by
    /// signed bytes, so weights are stored offset by 128 and each sum starts at the activation block's −128·Σx (per
    /// lane, computed once when quantizing). Without VNNI, ggml's AVX2 way: |w| times x with w's sign
    /// (<c>vpmaddubsw</c>, at most 2·128·127, so the int16 pairs never saturate), then pairs of those
    /// (<c>vpmaddwd</c>): the same integers per lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<int> c, Vector256<byte> w, Vector256<sbyte> x)
    {
        if (AvxVnni.IsSupported) return AvxVnni.MultiplyWideningAndAdd(c, w, x);
        var sw = (w ^ Vector256.Create((byte)0x80)).AsSByte();
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(sw), Avx2.Sign(x, sw)),
            Vector256.Create((short)1));
    }

    /// <summary>Which q8_0 kernel this CPU runs.</summary>
    public static Q8Kernel Q8Path =>
        Vector256.IsHardwareAccelerated && AvxVnni.IsSupported ? Q8Kernel.AvxVnni
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported ? Q8Kernel.Avx2
        : Ssse3.IsSupported || AdvSimd.Arm64.IsSupported ? Q8Kernel.Narrow
        : Q8Kernel.None;

    /// <summary>
    /// The q8_0 kernel over 128-bit vectors (SSSE3, Arm64 AdvSimd/dot product), batched: a group of four weight rows
    /// stays in L1 while the batch passes it two rows at a time in 2×2 register tiles (<see cref="Tile2x2"/>), an odd
    /// last batch row (the only one at decode of one sequence) against all four at once. Each output keeps eight lanes
    /// in two halves, as ggml's AVX build does (lane i: bytes 4i..4i+3 of every block, scaled and added across
    /// blocks), then sums them as its hsum_float_8 does; the same order whatever the batch or the tile.
    /// </summary>
    static void Q8Narrow(byte* wq, float* wd, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 32;
        int tiles = n0 + (n1 - n0) / 4 * 4;
        float* scales = stackalloc float[4 * blocks];
        float* s = stackalloc float[4];
        for (int n = n0; n < tiles; n += 4)
        {
            int r = 0;
            for (; r + 2 <= m; r += 2)
                for (int i = n; i < n + 4; i += 2)
                {
                    float* d = wd + (long)i * blocks, e = xd + (long)r * blocks;
                    ScaleProducts(d, d + blocks, e, e + blocks, blocks, scales);
                    Tile2x2(wq + (long)i * k, xq + (long)r * k, k, blocks, scales, prefetch: r == 0, s);
                    for (int j = 0; j < 2; j++)
                        for (int q = 0; q < 2; q++)
                            y[(long)(r + j) * ldy + i + q] = s[q * 2 + j] + (bias == null ? 0 : bias[i + q]);
                }
            if (r < m) Row4(wq, wd, xq, xd, y, bias, k, ldy, n, r);
        }
        if (tiles < n1) Portable.Q8(wq, wd, xq, xd, y, bias, m, k, ldy, tiles, n1);
    }

    /// <summary>Four weight rows from n against batch row r (the next four rows prefetched when r is the first
    /// one).</summary>
    static void Row4(byte* wq, float* wd, sbyte* xq, float* xd, float* y, float* bias, int k, int ldy, int n, int r)
    {
        int blocks = k / 32;
        byte* w0 = wq + (long)n * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
        float* d0 = wd + (long)n * blocks, d1 = d0 + blocks, d2 = d1 + blocks, d3 = d2 + blocks;
        sbyte* x = xq + (long)r * k;
        float* dx = xd + (long)r * blocks;
        Vector128<float> l0 = default, h0 = default, l1 = default, h1 = default,
            l2 = default, h2 = default, l3 = default, h3 = default;
        for (int b = 0; b < blocks; b++)
        {
            if (r == 0 && (b & 1) == 0)
                for (int q = 4; q < 8; q++) Simd.Prefetch(w0 + q * k + b * 32); // the next four rows
            var xl = Vector128.Load(x + b * 32);
            var xh = Vector128.Load(x + b * 32 + 16);
            float e = dx[b];
            Half(ref l0, ref h0, w0 + b * 32, xl, xh, d0[b] * e);
            Half(ref l1, ref h1, w1 + b * 32, xl, xh, d1[b] * e);
            Half(ref l2, ref h2, w2 + b * 32, xl, xh, d2[b] * e);
            Half(ref l3, ref h3, w3 + b * 32, xl, xh, d3[b] * e);
        }
        float* yr = y + (long)r * ldy + n;
        yr[0] = Simd.HorizontalSum8(l0, h0) + (bias == null ? 0 : bias[n]);
        yr[1] = Simd.HorizontalSum8(l1, h1) + (bias == null ? 0 : bias[n + 1]);
        yr[2] = Simd.HorizontalSum8(l2, h2) + (bias == null ? 0 : bias[n + 2]);
        yr[3] = Simd.HorizontalSum8(l3, h3) + (bias == null ? 0 : bias[n + 3]);
    }

    /// <summary>One block of one weight row: both 16-byte halves' lane sums, scaled into their
    /// accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Half(ref Vector128<float> lo, ref Vector128<float> hi, byte* w, Vector128<sbyte> xl,
        Vector128<sbyte> xh, float d)
    {
        var scale = Vector128.Create(d);
        var wl = Signed(w);
        var wh = Signed(w + 16);
        lo = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(wl, Magnitude(wl), xl)), scale, lo);
        hi = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(wh, Magnitude(wh), xh)), scale, hi);
    }

    /// <summary>The products of the block scales of weight rows 0, 1 and batch rows 0, 1, four blocks per multiply:
    /// [d0·e0, d0·e1, d1·e0, d1·e1] × blocks, each product the float a scalar multiply gives.</summary>
    static void ScaleProducts(float* d0, float* d1, float* e0, float* e1, int blocks, float* p)
    {
        int b = 0;
        for (; b + 4 <= blocks; b += 4)
        {
            Vector128<float> a0 = Vector128.Load(d0 + b), a1 = Vector128.Load(d1 + b),
                c0 = Vector128.Load(e0 + b), c1 = Vector128.Load(e1 + b);
            (a0 * c0).Store(p + b);
            (a0 * c1).Store(p + blocks + b);
            (a1 * c0).Store(p + 2 * blocks + b);
            (a1 * c1).Store(p + 3 * blocks + b);
        }
        for (; b < blocks; b++)
        {
            p[b] = d0[b] * e0[b];
            p[blocks + b] = d0[b] * e1[b];
            p[2 * blocks + b] = d1[b] * e0[b];
            p[3 * blocks + b] = d1[b] * e1[b];
        }
    }

    /// <summary>
    /// Two weight rows (from <paramref name="w"/>) times two batch rows (from <paramref name="x"/>): s[q·2 + j] = w_q ·
    /// x_j. Each weight half is made signed and its magnitude taken once for both batch rows, each activation half
    /// loaded once for both weight rows, and the scale products come from <see cref="ScaleProducts"/>: eight
    /// accumulators and a few operands fit in 16 vector registers (x64 without AVX-512), where a tile over all four
    /// rows of the group would not. Against one batch row at a time over four weight rows (x64 at 128 bits, no FMA,
    /// 16 batch rows, k = 1024, one core, best of 3000): 14.4 → 15.9 GMAC/s. A method of its own so the loop's
    /// pointers stay in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Tile2x2(byte* w, sbyte* x, int k, int blocks, float* p, bool prefetch, float* s)
    {
        byte* w1 = w + k;
        sbyte* x1 = x + k;
        float* p01 = p + blocks, p10 = p01 + blocks, p11 = p10 + blocks;
        Vector128<float> l00 = default, l01 = default, l10 = default, l11 = default,
            h00 = default, h01 = default, h10 = default, h11 = default;
        for (int b = 0; b < blocks; b++)
        {
            int o = b * 32;
            if (prefetch && (b & 1) == 0)
            {
                Simd.Prefetch(w + 4 * k + o); // the next group's rows
                Simd.Prefetch(w1 + 4 * k + o);
            }
            Quad(ref l00, ref l01, ref l10, ref l11, w + o, w1 + o, x + o, x1 + o, p + b, p01 + b, p10 + b, p11 + b);
            Quad(ref h00, ref h01, ref h10, ref h11, w + o + 16, w1 + o + 16, x + o + 16, x1 + o + 16,
                p + b, p01 + b, p10 + b, p11 + b);
        }
        s[0] = Simd.HorizontalSum8(l00, h00); s[1] = Simd.HorizontalSum8(l01, h01);
        s[2] = Simd.HorizontalSum8(l10, h10); s[3] = Simd.HorizontalSum8(l11, h11);
    }

    /// <summary>One 16-byte half of a block for the 2×2 tile: a[q·2 + j] += s[q·2 + j] × lanes of w_q · x_j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Quad(ref Vector128<float> a00, ref Vector128<float> a01, ref Vector128<float> a10,
        ref Vector128<float> a11, byte* w0, byte* w1, sbyte* x0, sbyte* x1, float* s00, float* s01, float* s10,
        float* s11)
    {
        var u0 = Vector128.Load(x0);
        var u1 = Vector128.Load(x1);
        var v = Signed(w0);
        var mag = Magnitude(v);
        a00 = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(v, mag, u0)), Vector128.Create(*s00), a00);
        a01 = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(v, mag, u1)), Vector128.Create(*s01), a01);
        v = Signed(w1);
        mag = Magnitude(v);
        a10 = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(v, mag, u0)), Vector128.Create(*s10), a10);
        a11 = Vector128.MultiplyAddEstimate(Vector128.ConvertToSingle(Dot(v, mag, u1)), Vector128.Create(*s11), a11);
    }

    /// <summary>16 stored weights (offset by 128) as signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<sbyte> Signed(byte* w) => (Vector128.Load(w) ^ Vector128.Create((byte)0x80)).AsSByte();

    /// <summary>|w| as unsigned bytes (128 for −128 included), the operand SSSE3's <c>pmaddubsw</c> multiplies; only
    /// x86 uses it, so elsewhere it is w unchanged and the JIT drops it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<byte> Magnitude(Vector128<sbyte> w) => Ssse3.IsSupported ? Ssse3.Abs(w) : w.AsByte();

    /// <summary>
    /// 16 signed bytes' dot product in four lanes (lane i: bytes 4i..4i+3), exact. With SSSE3, ggml's way: |w| times x
    /// with w's sign (<c>pmaddubsw</c>: activations are within ±127, so each int16 pair is at most 2·128·127 and never
    /// saturates), then pairs of those (<c>pmaddwd</c>); <paramref name="magnitude"/> is |w| from
    /// <see cref="Magnitude"/>, taken once per weight half for every batch row it meets.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<int> Dot(Vector128<sbyte> w, Vector128<byte> magnitude, Vector128<sbyte> x)
    {
        if (Ssse3.IsSupported)
            return Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(magnitude, Ssse3.Sign(x, w)),
                Vector128.Create((short)1));
        if (Dp.IsSupported) return Dp.DotProduct(Vector128<int>.Zero, w, x);
        return AdvSimd.Arm64.AddPairwise(
            AdvSimd.AddPairwiseWidening(AdvSimd.MultiplyWideningLower(w.GetLower(), x.GetLower())),
            AdvSimd.AddPairwiseWidening(AdvSimd.MultiplyWideningUpper(w, x)));
    }

}

/// <summary>The q8_0 kernels, widest first.</summary>
enum Q8Kernel { AvxVnni, Avx2, Narrow, None }
