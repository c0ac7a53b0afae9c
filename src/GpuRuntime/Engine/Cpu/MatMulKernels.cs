using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>Four consecutive weight rows of a matrix, read 16 columns at a time as f32, whatever their storage.</summary>
unsafe interface IRows4<TSelf> where TSelf : struct, IRows4<TSelf>
{
    /// <summary>The rows starting at row <paramref name="n"/> of the same matrix.</summary>
    TSelf At(int n);
    void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3);
    float Scalar(int row, int k);
}

unsafe readonly struct F32Rows(float* first, int stride) : IRows4<F32Rows>
{
    public F32Rows At(int n) => new(first + (long)n * stride, stride);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3)
    {
        w0 = Vector512.Load(first + k);
        w1 = Vector512.Load(first + stride + k);
        w2 = Vector512.Load(first + 2 * stride + k);
        w3 = Vector512.Load(first + 3 * stride + k);
    }

    public float Scalar(int row, int k) => first[row * stride + k];
}

unsafe readonly struct F16Rows(ushort* first, int stride) : IRows4<F16Rows>
{
    public F16Rows At(int n) => new(first + (long)n * stride, stride);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3)
    {
        w0 = HalfMath.Load16(first + k);
        w1 = HalfMath.Load16(first + stride + k);
        w2 = HalfMath.Load16(first + 2 * stride + k);
        w3 = HalfMath.Load16(first + 3 * stride + k);
    }

    public float Scalar(int row, int k) => (float)BitConverter.UInt16BitsToHalf(first[row * stride + k]);
}

unsafe readonly struct Bf16Rows(ushort* first, int stride) : IRows4<Bf16Rows>
{
    public Bf16Rows At(int n) => new(first + (long)n * stride, stride);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Load(int k, out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3)
    {
        w0 = HalfMath.LoadBf16(first + k);
        w1 = HalfMath.LoadBf16(first + stride + k);
        w2 = HalfMath.LoadBf16(first + 2 * stride + k);
        w3 = HalfMath.LoadBf16(first + 3 * stride + k);
    }

    public float Scalar(int row, int k) => BitConverter.Int32BitsToSingle(first[row * stride + k] << 16);
}

/// <summary>
/// The matmul micro-kernels: y[m, n] = x[m, :] · w[n, :] for a range of output rows n and every batch row m. Each
/// weight row is read from memory once per call for all batch rows: four weight rows are multiplied with four batch
/// rows at a time (16 independent accumulator chains, so FMA latency is hidden), and at larger batches a block of
/// weight rows is first converted to f32 into a per-worker scratch that stays in cache while every batch row uses it.
/// </summary>
static unsafe class MatMulKernels
{
    /// <summary>Batch rows above which weight tiles are converted once into scratch instead of on the fly.</summary>
    public const int PackThreshold = 4;

    /// <summary>16-bit or 32-bit float weights: rows [n0, n1) of y [M × ldy] from x [M × K].</summary>
    public static void Float<TRows>(TRows matrix, float* x, float* y, float* bias, int m, int k, int ldy, int n0, int n1, float* scratch)
        where TRows : struct, IRows4<TRows>
    {
        int n = n0;
        for (; n + 4 <= n1; n += 4)
        {
            if (m <= PackThreshold) Tile(matrix.At(n), x, y, bias, m, k, ldy, n);
            else
            {
                // convert the four rows once, then let every batch row use the f32 copy while it is in cache
                var src = matrix.At(n);
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
                Tile(new F32Rows(scratch, k), x, y, bias, m, k, ldy, n);
            }
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

    /// <summary>Four weight rows starting at n times every batch row, four batch rows at a time.</summary>
    static void Tile<TRows>(TRows w, float* x, float* y, float* bias, int m, int k, int ldy, int n) where TRows : struct, IRows4<TRows>
    {
        Span<float> s = stackalloc float[16];
        for (int r = 0; r < m; r += 4)
        {
            // a short last group repeats its last row: the extra results are simply not stored
            float* x0 = x + (long)r * k, x1 = x + (long)Math.Min(r + 1, m - 1) * k, x2 = x + (long)Math.Min(r + 2, m - 1) * k, x3 = x + (long)Math.Min(r + 3, m - 1) * k;
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default,
                a10 = default, a11 = default, a12 = default, a13 = default,
                a20 = default, a21 = default, a22 = default, a23 = default,
                a30 = default, a31 = default, a32 = default, a33 = default;
            int kk = 0;
            for (; kk + 16 <= k; kk += 16)
            {
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
            for (; kk < k; kk++)
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        s[i * 4 + j] += w.Scalar(i, kk) * x[(long)Math.Min(r + j, m - 1) * k + kk];
            for (int j = 0; j < 4 && r + j < m; j++)
                for (int i = 0; i < 4; i++)
                    y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
        }
    }

    /// <summary>
    /// q8_0 weights (repacked: int8 quants [N × K], f32 block scales [N × K/32]) against q8_0-quantized activations
    /// (int8 [M × K], f32 scales [M × K/32]): per block, an exact int8 dot product (AVX-VNNI) scaled by both block scales,
    /// as ggml computes it.
    /// </summary>
    public static void Q8(sbyte* wq, float* wd, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy, int n0, int n1)
    {
        int blocks = k / 32;
        Span<float> s = stackalloc float[16];
        int n = n0;
        for (; n + 4 <= n1; n += 4)
            for (int r = 0; r < m; r += 4)
            {
                int r1 = Math.Min(r + 1, m - 1), r2 = Math.Min(r + 2, m - 1), r3 = Math.Min(r + 3, m - 1);
                Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default,
                    a10 = default, a11 = default, a12 = default, a13 = default,
                    a20 = default, a21 = default, a22 = default, a23 = default,
                    a30 = default, a31 = default, a32 = default, a33 = default;
                for (int b = 0; b < blocks; b++)
                {
                    long wo = (long)n * k + b * 32;
                    var w0 = Vector256.Load(wq + wo);
                    var w1 = Vector256.Load(wq + wo + k);
                    var w2 = Vector256.Load(wq + wo + 2 * k);
                    var w3 = Vector256.Load(wq + wo + 3 * k);
                    float d0 = wd[(long)n * blocks + b], d1 = wd[(long)(n + 1) * blocks + b], d2 = wd[(long)(n + 2) * blocks + b], d3 = wd[(long)(n + 3) * blocks + b];
                    Column(ref a00, ref a10, ref a20, ref a30, w0, w1, w2, w3, d0, d1, d2, d3, xq + (long)r * k + b * 32, xd[(long)r * blocks + b]);
                    Column(ref a01, ref a11, ref a21, ref a31, w0, w1, w2, w3, d0, d1, d2, d3, xq + (long)r1 * k + b * 32, xd[(long)r1 * blocks + b]);
                    Column(ref a02, ref a12, ref a22, ref a32, w0, w1, w2, w3, d0, d1, d2, d3, xq + (long)r2 * k + b * 32, xd[(long)r2 * blocks + b]);
                    Column(ref a03, ref a13, ref a23, ref a33, w0, w1, w2, w3, d0, d1, d2, d3, xq + (long)r3 * k + b * 32, xd[(long)r3 * blocks + b]);
                }
                s[0] = Vector256.Sum(a00); s[1] = Vector256.Sum(a01); s[2] = Vector256.Sum(a02); s[3] = Vector256.Sum(a03);
                s[4] = Vector256.Sum(a10); s[5] = Vector256.Sum(a11); s[6] = Vector256.Sum(a12); s[7] = Vector256.Sum(a13);
                s[8] = Vector256.Sum(a20); s[9] = Vector256.Sum(a21); s[10] = Vector256.Sum(a22); s[11] = Vector256.Sum(a23);
                s[12] = Vector256.Sum(a30); s[13] = Vector256.Sum(a31); s[14] = Vector256.Sum(a32); s[15] = Vector256.Sum(a33);
                for (int j = 0; j < 4 && r + j < m; j++)
                    for (int i = 0; i < 4; i++)
                        y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
            }
        for (; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                float sum = 0;
                for (int b = 0; b < blocks; b++)
                {
                    int isum = 0;
                    for (int j = 0; j < 32; j++) isum += wq[(long)n * k + b * 32 + j] * xq[(long)r * k + b * 32 + j];
                    sum += wd[(long)n * blocks + b] * xd[(long)r * blocks + b] * isum;
                }
                y[(long)r * ldy + n] = sum + (bias == null ? 0 : bias[n]);
            }
    }

    /// <summary>One activation block against the four weight rows' blocks: a[i] += (dw[i]·dx) × Σ w[i]·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Column(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
        Vector256<sbyte> w0, Vector256<sbyte> w1, Vector256<sbyte> w2, Vector256<sbyte> w3,
        float d0, float d1, float d2, float d3, sbyte* xb, float dx)
    {
        var x = Vector256.Load(xb);
        // VNNI multiplies unsigned by signed bytes: move x's sign onto w and use |x|
        var ax = Avx2.Sign(x, x).AsByte();
        a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ax, Avx2.Sign(w0, x))), Vector256.Create(d0 * dx), a0);
        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ax, Avx2.Sign(w1, x))), Vector256.Create(d1 * dx), a1);
        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ax, Avx2.Sign(w2, x))), Vector256.Create(d2 * dx), a2);
        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, ax, Avx2.Sign(w3, x))), Vector256.Create(d3 * dx), a3);
    }
}
