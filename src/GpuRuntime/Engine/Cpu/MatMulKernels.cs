using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>Four consecutive weight rows of a matrix, read 16 columns at a time as f32, whatever their
/// storage.</summary>
unsafe interface IRows4<TSelf> where TSelf : struct, IRows4<TSelf>
{
    /// <summary>The rows starting at row <paramref name="n"/> of the same matrix.</summary>
    TSelf At(int n);
    int RowBytes { get; }
    /// <summary>Asks for the cache lines holding columns [k, k + 64) of the four rows <paramref name="rowsAhead"/> rows
    /// further on.</summary>
    void Prefetch4(int k, int rowsAhead);
    void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
        out Vector512<float> w3);
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
    public int RowBytes => (int)_stride * sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch4(int k, int rowsAhead)
    {
        if (!_prefetch) return;
        float* p = _r0 + rowsAhead * _stride + k;
        for (int r = 0; r < 4; r++, p += _stride)
            for (int i = 0; i < 64; i += 16) Sse.Prefetch0(p + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
        out Vector512<float> w3)
    {
        float* p = _r0 + k;
        w0 = Vector512.Load(p);
        w1 = Vector512.Load(p + _stride);
        w2 = Vector512.Load(p + 2 * _stride);
        w3 = Vector512.Load(p + 3 * _stride);
    }

    public float Scalar(int row, int k) => _r0[row * _stride + k];
}

/// <summary>16-bit float rows, converted to f32 in registers (the JIT compiles one copy per format).</summary>
unsafe readonly struct HalfRows<TFormat>(ushort* first, int stride) : IRows4<HalfRows<TFormat>>
    where TFormat : struct, IHalfFormat
{
    readonly ushort* _r0 = first;
    readonly nint _stride = stride;

    public HalfRows<TFormat> At(int n) => new(_r0 + n * _stride, (int)_stride);
    public int RowBytes => (int)_stride * sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Prefetch4(int k, int rowsAhead)
    {
        ushort* p = _r0 + rowsAhead * _stride + k;
        for (int r = 0; r < 4; r++, p += _stride)
        {
            Sse.Prefetch0(p);
            Sse.Prefetch0(p + 32);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2,
        out Vector512<float> w3)
    {
        ushort* p = _r0 + k;
        w0 = TFormat.Load16(p);
        w1 = TFormat.Load16(p + _stride);
        w2 = TFormat.Load16(p + 2 * _stride);
        w3 = TFormat.Load16(p + 3 * _stride);
    }

    public float Scalar(int row, int k) => TFormat.Scalar(_r0[row * _stride + k]);
}

/// <summary>
/// The matmul micro-kernels: y[m, n] = x[m, :] · w[n, :] for a range of output rows n and every batch row m. Each
/// weight row is read from memory once per call for all batch rows: four weight rows are multiplied with four batch
/// rows at a time (16 independent accumulator chains, so FMA latency is hidden), and at larger batches a block of
/// weight rows is first converted to f32 into a per-worker scratch that stays in cache while every batch row uses it.
/// </summary>
static unsafe class MatMulKernels
{
    /// <summary>Batch rows processed together against a range of weight rows, so their activations stay in
    /// L2.</summary>
    const int BatchBlock = 32;

    /// <summary>Batch rows above which weight tiles are converted once into scratch instead of on the fly.</summary>
    public const int PackThreshold = 4;

    /// <summary>16-bit or 32-bit float weights: rows [n0, n1) of y [M × ldy] from x [M × K].</summary>
    public static void Float<TRows>(TRows matrix, float* x, float* y, float* bias, int m, int k, int ldy, int n0,
        int n1, float* scratch)
        where TRows : struct, IRows4<TRows>
    {
        int n = n0;
        if (m == 1)
        {
            // The next group of eight rows is fetched at the columns now read, i.e. eight rows ahead; for rows over
            // 2 KiB that is more than 16 KiB ahead per stream and the lines are evicted from L1 before they are read
            // (1b f16: 127 → 115 ms per step), so only the next group's first four rows are fetched then.
            int rowsAhead = matrix.RowBytes <= 2048 ? 8 : 4;
            for (; n + 8 <= n1; n += 8) Vector8(matrix.At(n), matrix.At(n + 4), x, y, bias, k, n, rowsAhead);
        }
        if (m <= PackThreshold)
            for (; n + 4 <= n1; n += 4) Tile(matrix.At(n), x, k, y, bias, m, k, ldy, n);
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
                    for (int kk = 0; kk + 16 <= k; kk += 16)
                    {
                        src.Load(kk, out var w0, out var w1, out var w2, out var w3);
                        w0.Store(scratch + kk);
                        w1.Store(scratch + k + kk);
                        w2.Store(scratch + 2 * k + kk);
                        w3.Store(scratch + 3 * k + kk);
                    }
                    for (int kk = k & ~15; kk < k; kk++)
                        for (int r = 0; r < 4; r++) scratch[r * k + kk] = src.Scalar(r, kk);
                    var packed = new F32Rows(scratch, k, prefetch: false);
                    Tile(packed, x + (long)mb * k, k, y + (long)mb * ldy, bias, rows, k, ldy, t);
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
    /// A matrix-vector product (one batch row, the decode of a single sequence): eight weight rows at a time, each
    /// weight converted once and used by one FMA, eight independent chains, the next eight rows prefetched as these are
    /// read. Every output is summed in the same order as in <see cref="Tile"/> (one 16-lane accumulator over k, then
    /// its lanes), so a sequence gets bit-identical logits alone or in any batch.
    /// </summary>
    /// <remarks>Lines of the rows <paramref name="rowsAhead"/> further on are requested at the same columns as these
    /// are read: the next group is where the stream goes next.</remarks>
    static void Vector8<TRows>(TRows a, TRows b, float* x, float* y, float* bias, int k, int n, int rowsAhead)
        where TRows : struct, IRows4<TRows>
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default,
            s4 = default, s5 = default, s6 = default, s7 = default;
        int kk = 0;
        for (; kk + 16 <= k; kk += 16)
        {
            if ((kk & 63) == 0)
            {
                a.Prefetch4(kk, rowsAhead);
                b.Prefetch4(kk, rowsAhead);
            }
            var v = Vector512.Load(x + kk);
            a.Load(kk, out var w0, out var w1, out var w2, out var w3);
            s0 = Vector512.FusedMultiplyAdd(w0, v, s0);
            s1 = Vector512.FusedMultiplyAdd(w1, v, s1);
            s2 = Vector512.FusedMultiplyAdd(w2, v, s2);
            s3 = Vector512.FusedMultiplyAdd(w3, v, s3);
            b.Load(kk, out w0, out w1, out w2, out w3);
            s4 = Vector512.FusedMultiplyAdd(w0, v, s4);
            s5 = Vector512.FusedMultiplyAdd(w1, v, s5);
            s6 = Vector512.FusedMultiplyAdd(w2, v, s6);
            s7 = Vector512.FusedMultiplyAdd(w3, v, s7);
        }
        Span<float> s = [Vector512.Sum(s0), Vector512.Sum(s1), Vector512.Sum(s2), Vector512.Sum(s3),
            Vector512.Sum(s4), Vector512.Sum(s5), Vector512.Sum(s6), Vector512.Sum(s7)];
        for (; kk < k; kk++)
            for (int i = 0; i < 4; i++)
            {
                s[i] += a.Scalar(i, kk) * x[kk];
                s[i + 4] += b.Scalar(i, kk) * x[kk];
            }
        for (int i = 0; i < 8; i++) y[n + i] = s[i] + (bias == null ? 0 : bias[n + i]);
    }

    /// <summary>Four weight rows starting at n times every batch row, four batch rows at a time.</summary>
    /// <param name="ldx">Distance between batch rows of x.</param>
    /// <remarks>The following four rows are prefetched while these are read (the packed scratch prefetches
    /// nothing).</remarks>
    static void Tile<TRows>(TRows w, float* x, int ldx, float* y, float* bias, int m, int k, int ldy, int n)
        where TRows : struct, IRows4<TRows>
    {
        float* s = stackalloc float[16];
        for (int r = 0; r < m; r += 4)
        {
            // a short last group repeats its last row: the extra results are simply not stored
            float* x0 = x + (long)r * ldx, x1 = x + (long)Math.Min(r + 1, m - 1) * ldx,
                x2 = x + (long)Math.Min(r + 2, m - 1) * ldx, x3 = x + (long)Math.Min(r + 3, m - 1) * ldx;
            Dot4x4(w, x0, x1, x2, x3, k, prefetch: r == 0, s);
            for (int kk = k & ~15; kk < k; kk++)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        s[i * 4 + j] += w.Scalar(i, kk) * x[(long)Math.Min(r + j, m - 1) * ldx + kk];
            for (int j = 0; j < 4 && r + j < m; j++)
                for (int i = 0; i < 4; i++)
                    y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
        }
    }

    /// <summary>
    /// The 4×4 register tile over whole 16-column steps: s[i·4 + j] = w[i] · x_j. A method of its own so the loop's
    /// few pointers stay in registers (inlined into <see cref="Tile"/>, the JIT spilled them).
    /// </summary>
    /// <param name="prefetch">Request the next four rows' lines (on the first pass over these rows).</param>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x4<TRows>(TRows w, float* x0, float* x1, float* x2, float* x3, int k, bool prefetch, float* s)
        where TRows : struct, IRows4<TRows>
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default,
            a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default,
            a30 = default, a31 = default, a32 = default, a33 = default;
        for (int kk = 0; kk + 16 <= k; kk += 16)
        {
            if (prefetch && (kk & 63) == 0) w.Prefetch4(kk, 4);
            w.Load(kk, out var w0, out var w1, out var w2, out var w3);
            var v = Vector512.Load(x0 + kk);
            a00 = Vector512.FusedMultiplyAdd(w0, v, a00); a10 = Vector512.FusedMultiplyAdd(w1, v, a10);
            a20 = Vector512.FusedMultiplyAdd(w2, v, a20); a30 = Vector512.FusedMultiplyAdd(w3, v, a30);
            v = Vector512.Load(x1 + kk);
            a01 = Vector512.FusedMultiplyAdd(w0, v, a01); a11 = Vector512.FusedMultiplyAdd(w1, v, a11);
            a21 = Vector512.FusedMultiplyAdd(w2, v, a21); a31 = Vector512.FusedMultiplyAdd(w3, v, a31);
            v = Vector512.Load(x2 + kk);
            a02 = Vector512.FusedMultiplyAdd(w0, v, a02); a12 = Vector512.FusedMultiplyAdd(w1, v, a12);
            a22 = Vector512.FusedMultiplyAdd(w2, v, a22); a32 = Vector512.FusedMultiplyAdd(w3, v, a32);
            v = Vector512.Load(x3 + kk);
            a03 = Vector512.FusedMultiplyAdd(w0, v, a03); a13 = Vector512.FusedMultiplyAdd(w1, v, a13);
            a23 = Vector512.FusedMultiplyAdd(w2, v, a23); a33 = Vector512.FusedMultiplyAdd(w3, v, a33);
        }
        s[0] = Vector512.Sum(a00); s[1] = Vector512.Sum(a01); s[2] = Vector512.Sum(a02); s[3] = Vector512.Sum(a03);
        s[4] = Vector512.Sum(a10); s[5] = Vector512.Sum(a11); s[6] = Vector512.Sum(a12); s[7] = Vector512.Sum(a13);
        s[8] = Vector512.Sum(a20); s[9] = Vector512.Sum(a21); s[10] = Vector512.Sum(a22); s[11] = Vector512.Sum(a23);
        s[12] = Vector512.Sum(a30); s[13] = Vector512.Sum(a31); s[14] = Vector512.Sum(a32); s[15] = Vector512.Sum(a33);
    }

    /// <summary>
    /// q8_0 weights (repacked: quants + 128 as bytes [N × K], f32 block scales [N × K/32]) against q8_0-quantized
    /// activations (int8 [M × K], per-lane corrections [M × K/4], f32 scales [M × K/32]): per block, an exact int8
    /// dot product (AVX-VNNI) scaled by both block scales, as ggml computes it.
    /// </summary>
    public static void Q8(byte* wq, float* wd, sbyte* xq, int* xc, float* xd, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 32;
        Span<float> s = stackalloc float[16];
        int tiles = n0 + (n1 - n0) / 4 * 4;
        if (m == 1)
            for (int n = n0; n < tiles; n += 4) VectorQ8(wq, wd, xq, xc, xd, y, bias, k, n);
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
                                for (int q = 4; q < 8; q++) Sse.Prefetch0(wb + q * k); // the next four rows
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
                        s[0] = Vector256.Sum(a00); s[1] = Vector256.Sum(a01);
                        s[2] = Vector256.Sum(a02); s[3] = Vector256.Sum(a03);
                        s[4] = Vector256.Sum(a10); s[5] = Vector256.Sum(a11);
                        s[6] = Vector256.Sum(a12); s[7] = Vector256.Sum(a13);
                        s[8] = Vector256.Sum(a20); s[9] = Vector256.Sum(a21);
                        s[10] = Vector256.Sum(a22); s[11] = Vector256.Sum(a23);
                        s[12] = Vector256.Sum(a30); s[13] = Vector256.Sum(a31);
                        s[14] = Vector256.Sum(a32); s[15] = Vector256.Sum(a33);
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

    /// <summary>q8_0 matrix-vector product: four weight rows against the one activation row.</summary>
    static void VectorQ8(byte* wq, float* wd, sbyte* xq, int* xc, float* xd, float* y, float* bias, int k, int n)
    {
        int blocks = k / 32;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            long wo = (long)n * k + b * 32;
            long so = (long)n * blocks + b;
            if ((b & 1) == 0)
                for (int r = 4; r < 8; r++) Sse.Prefetch0(wq + wo + r * k); // the next four rows
            Column(ref a0, ref a1, ref a2, ref a3,
                Vector256.Load(wq + wo), Vector256.Load(wq + wo + k), Vector256.Load(wq + wo + 2 * k),
                Vector256.Load(wq + wo + 3 * k),
                wd[so], wd[so + blocks], wd[so + 2 * blocks], wd[so + 3 * blocks], xq + b * 32, xc + b * 8, xd[b]);
        }
        y[n] = Vector256.Sum(a0) + (bias == null ? 0 : bias[n]);
        y[n + 1] = Vector256.Sum(a1) + (bias == null ? 0 : bias[n + 1]);
        y[n + 2] = Vector256.Sum(a2) + (bias == null ? 0 : bias[n + 2]);
        y[n + 3] = Vector256.Sum(a3) + (bias == null ? 0 : bias[n + 3]);
    }

    /// <summary>
    /// One activation block against the four weight rows' blocks: a[i] += (dw[i]·dx) × Σ w[i]·x. VNNI multiplies
    /// unsigned by signed bytes, so weights are stored offset by 128; starting each sum at the activation block's
    /// −128·Σx (per lane, computed once when quantizing) makes the result the exact signed dot product.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Column(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
        ref Vector256<float> a3,
        Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
        float d0, float d1, float d2, float d3, sbyte* xb, int* xc, float dx)
    {
        var x = Vector256.Load(xb);
        var c = Vector256.Load(xc);
        a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w0, x)),
            Vector256.Create(d0 * dx), a0);
        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w1, x)),
            Vector256.Create(d1 * dx), a1);
        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w2, x)),
            Vector256.Create(d2 * dx), a2);
        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w3, x)),
            Vector256.Create(d3 * dx), a3);
    }
}
