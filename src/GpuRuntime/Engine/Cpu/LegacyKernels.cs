using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// One of ggml's legacy 32-value block formats read in place from the file: its block size, its f16 scale, and its
/// quants unpacked to the unsigned bytes VNNI multiplies (value + <see cref="Offset"/>).
/// </summary>
unsafe interface ILegacyBlock
{
    static abstract int Bytes { get; }
    /// <summary>What the unpacked quants carry on top of the signed value (8 for q4_0, 16 for q5_0).</summary>
    static abstract int Offset { get; }
    static abstract Vector256<byte> Unpack(byte* block);
    /// <summary>Quant <paramref name="j"/> of the block, offset included (the portable path).</summary>
    static abstract int Quant(byte* block, int j);
}

/// <summary>q4_0: f16 scale, then 16 bytes whose low nibbles are values 0–15 and high nibbles values 16–31.</summary>
unsafe readonly struct Q4_0Block : ILegacyBlock
{
    public static int Bytes => 18;
    public static int Offset => 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block)
    {
        var q = Vector128.Load(block + 2);
        return Vector256.Create(q & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(q, 4));
    }

    public static int Quant(byte* block, int j) => j < 16 ? block[2 + j] & 0x0F : block[2 + j - 16] >> 4;
}

/// <summary>
/// Matmuls of legacy block weights against q8_0-quantized activations the way ggml's x86 vec_dot does them: per block
/// an exact integer dot in eight lanes of four products, converted to f32 and multiplied into eight f32 lanes by the
/// product of the two block scales, the lanes summed at the end. The weights stay as the file holds them (4.5 bits a
/// value for q4_0), so a decode step streams a quarter of q8_0's bytes.
/// </summary>
static unsafe class LegacyKernels
{
    /// <summary>Batch rows processed together against a range of weight rows, so their activations stay in
    /// L2.</summary>
    const int BatchBlock = 32;

    /// <summary>An f16 bit pattern as f32 (see <see cref="HalfMath.Load16"/>; scales hold no inf/NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) =>
        BitConverter.Int32BitsToSingle((*(short*)p << 13) & unchecked((int)0x8FFFE000)) * 5.192297e33f;

    /// <summary>Rows [n0, n1) of y [M × ldy]: weights w [N × K/32 blocks] against activations quantized by
    /// <see cref="Quantize.RowQ8"/> (quants [M × K], corrections [M × K/4], scales [M × K/32]).</summary>
    public static void MatMul<TBlock>(byte* w, sbyte* xq, int* xc, float* xd, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1) where TBlock : struct, ILegacyBlock
    {
        int blocks = k / 32;
        long rowBytes = (long)blocks * TBlock.Bytes;
        int tiles = n0 + (n1 - n0) / 4 * 4;
        float* s = stackalloc float[16];
        if (m == 1)
            for (int n = n0; n < tiles; n += 4)
            {
                Dot4x4<TBlock>(w + n * rowBytes, rowBytes, xq, xq, xq, xq, xc, xc, xc, xc, xd, xd, xd, xd, blocks,
                    prefetch: true, s);
                for (int i = 0; i < 4; i++) y[n + i] = s[i * 4] + (bias == null ? 0 : bias[n + i]);
            }
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
                        Dot4x4<TBlock>(w + n * rowBytes, rowBytes, xq + (long)r * k, xq + (long)r1 * k,
                            xq + (long)r2 * k, xq + (long)r3 * k, xc + (long)r * (k / 4), xc + (long)r1 * (k / 4),
                            xc + (long)r2 * (k / 4), xc + (long)r3 * (k / 4), xd + (long)r * blocks,
                            xd + (long)r1 * blocks, xd + (long)r2 * blocks, xd + (long)r3 * blocks, blocks,
                            prefetch: r == mb, s);
                        for (int j = 0; j < 4 && r + j < mEnd; j++)
                            for (int i = 0; i < 4; i++)
                                y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
                    }
            }
        if (tiles < n1) Portable<TBlock>(w, xq, xd, y, bias, m, k, ldy, tiles, n1);
    }

    /// <summary>
    /// Four weight rows against four activation rows: s[i·4 + j] = w[i] · x_j. Each weight block is unpacked once for
    /// the four activation rows. VNNI multiplies unsigned by signed bytes: the unpacked quants carry the format's
    /// offset, and each lane's sum starts at −offset·Σx, the quantizer's −128·Σx shifted (exact: offsets are powers of
    /// two).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x4<TBlock>(byte* w, long rowBytes, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        int* c0, int* c1, int* c2, int* c3, float* e0, float* e1, float* e2, float* e3, int blocks, bool prefetch,
        float* s) where TBlock : struct, ILegacyBlock
    {
        int shift = BitOperations.Log2(128 / (uint)TBlock.Offset);
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default,
            a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default,
            a30 = default, a31 = default, a32 = default, a33 = default;
        byte* wb = w;
        for (int b = 0; b < blocks; b++, wb += TBlock.Bytes)
        {
            if (prefetch && (b & 1) == 0)
                for (int q = 4; q < 8; q++) Sse.Prefetch0(wb + q * rowBytes); // the next four rows
            var w0 = TBlock.Unpack(wb);
            var w1 = TBlock.Unpack(wb + rowBytes);
            var w2 = TBlock.Unpack(wb + 2 * rowBytes);
            var w3 = TBlock.Unpack(wb + 3 * rowBytes);
            float d0 = Half(wb), d1 = Half(wb + rowBytes), d2 = Half(wb + 2 * rowBytes), d3 = Half(wb + 3 * rowBytes);
            Column(ref a00, ref a10, ref a20, ref a30, w0, w1, w2, w3, d0, d1, d2, d3, x0 + b * 32, c0 + b * 8, shift,
                e0[b]);
            Column(ref a01, ref a11, ref a21, ref a31, w0, w1, w2, w3, d0, d1, d2, d3, x1 + b * 32, c1 + b * 8, shift,
                e1[b]);
            Column(ref a02, ref a12, ref a22, ref a32, w0, w1, w2, w3, d0, d1, d2, d3, x2 + b * 32, c2 + b * 8, shift,
                e2[b]);
            Column(ref a03, ref a13, ref a23, ref a33, w0, w1, w2, w3, d0, d1, d2, d3, x3 + b * 32, c3 + b * 8, shift,
                e3[b]);
        }
        s[0] = Vector256.Sum(a00); s[1] = Vector256.Sum(a01); s[2] = Vector256.Sum(a02); s[3] = Vector256.Sum(a03);
        s[4] = Vector256.Sum(a10); s[5] = Vector256.Sum(a11); s[6] = Vector256.Sum(a12); s[7] = Vector256.Sum(a13);
        s[8] = Vector256.Sum(a20); s[9] = Vector256.Sum(a21); s[10] = Vector256.Sum(a22); s[11] = Vector256.Sum(a23);
        s[12] = Vector256.Sum(a30); s[13] = Vector256.Sum(a31); s[14] = Vector256.Sum(a32); s[15] = Vector256.Sum(a33);
    }

    /// <summary>One activation block against the four weight rows' blocks: a[i] += (dw[i]·dx) × Σ w[i]·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Column(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
        ref Vector256<float> a3, Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
        float d0, float d1, float d2, float d3, sbyte* xb, int* xc, int shift, float dx)
    {
        var x = Vector256.Load(xb);
        var c = Vector256.ShiftRightArithmetic(Vector256.Load(xc), shift);
        a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w0, x)),
            Vector256.Create(d0 * dx), a0);
        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w1, x)),
            Vector256.Create(d1 * dx), a1);
        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w2, x)),
            Vector256.Create(d2 * dx), a2);
        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(AvxVnni.MultiplyWideningAndAdd(c, w3, x)),
            Vector256.Create(d3 * dx), a3);
    }

    /// <summary>The same products without VNNI, block by block (as <see cref="Cpu.Portable.Q8"/>).</summary>
    public static void Portable<TBlock>(byte* w, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1) where TBlock : struct, ILegacyBlock
    {
        int blocks = k / 32;
        long rowBytes = (long)blocks * TBlock.Bytes;
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                float sum = 0;
                for (int b = 0; b < blocks; b++)
                {
                    byte* wb = w + n * rowBytes + b * TBlock.Bytes;
                    sbyte* xb = xq + (long)r * k + b * 32;
                    int isum = 0;
                    for (int j = 0; j < 32; j++) isum += (TBlock.Quant(wb, j) - TBlock.Offset) * xb[j];
                    sum += Half(wb) * xd[(long)r * blocks + b] * isum;
                }
                y[(long)r * ldy + n] = sum + (bias == null ? 0 : bias[n]);
            }
    }
}
