using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// iq4_xs and iq4_nl weights in their file layout: nibbles indexing a table of sixteen signed values
/// (<see cref="GgmlQuant.IQ4Values"/>), multiplied as ggml does. The byte products take the magnitude of the value
/// times the activation with its sign (|pair| ≤ 2·127·127, exact in int16), so any integer order gives ggml's sums;
/// the float steps follow the build llama.cpp runs beside each instruction set.
/// </summary>
static unsafe class IQ4Kernels
{
    /// <summary>Bytes of an iq4_xs block: f16 d, scales_h (u16), scales_l[4], qs[128].</summary>
    public const int XsBlockBytes = 136;

    /// <summary>Bytes of an iq4_nl block: f16 d, qs[16].</summary>
    public const int NlBlockBytes = 18;

    const int RowBlock = 32;

    static bool Fast => KQuantKernels.Fast;

    /// <summary>The table in both 128-bit halves, for a byte shuffle.</summary>
    static Vector256<sbyte> Table
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            var t = Vector128.Create(GgmlQuant.IQ4Values);
            return Vector256.Create(t, t);
        }
    }

    /// <summary>32 values of a 16-byte nibble run (low nibbles first) as signed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<sbyte> Values(byte* qs, Vector256<sbyte> table)
    {
        var q = Vector128.Load(qs);
        var nibbles = Vector256.Create(q & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(q, 4));
        return Avx2.Shuffle(table, nibbles.AsSByte());
    }

    /// <summary>The 6-bit scale (stored offset by 32) of 32-value group <paramref name="ib"/> of an iq4_xs
    /// block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int XsScale(byte* blk, int ib) =>
        ((blk[4 + ib / 2] >> (4 * (ib % 2)) & 0xF) | (*(ushort*)(blk + 2) >> (2 * ib) & 3) << 4) - 32;

    /// <summary>
    /// Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for iq4_xs weights against q8_K activations, in the lanes of
    /// ggml's vec_dot (its AVX2 and AVX paths agree: lane L holds bytes 4L..4L+3 of every 32 values, each 32 weighted
    /// by its scale), per superblock lanes += (d_w·d_x) × sums, ggml's horizontal sum at the end.
    /// </summary>
    public static void IQ4XS(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        if (!Fast)
        {
            IQ4XSPortable(w, xq, xd, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 256;
        long rowBytes = (long)blocks * XsBlockBytes;
        var table = Table;
        var mag = stackalloc Vector256<byte>[8];
        var sign = stackalloc Vector256<sbyte>[8];
        var scales = stackalloc Vector256<short>[8];
        var acc = stackalloc Vector256<float>[RowBlock];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int rb = 0; rb < m; rb += RowBlock)
            {
                int rows = Math.Min(RowBlock, m - rb);
                for (int i = 0; i < rows; i++) acc[i] = default;
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = wr + b * XsBlockBytes;
                    for (int ib = 0; ib < 8; ib++)
                    {
                        var v = Values(blk + 8 + 16 * ib, table);
                        sign[ib] = v;
                        mag[ib] = Vector256.Abs(v).AsByte();
                        scales[ib] = Vector256.Create((short)XsScale(blk, ib));
                    }
                    float dw = (float)*(Half*)blk;
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        sbyte* x = xq + (long)r * k + b * 256;
                        Vector256<int> sum = default;
                        for (int ib = 0; ib < 8; ib++)
                            sum += Avx2.MultiplyAddAdjacent(
                                Avx2.MultiplyAddAdjacent(mag[ib], Avx2.Sign(Vector256.Load(x + 32 * ib), sign[ib])),
                                scales[ib]);
                        acc[i] = Fma.MultiplyAdd(Vector256.Create(dw * xd[(long)r * blocks + b]),
                            Vector256.ConvertToSingle(sum), acc[i]);
                    }
                }
                for (int i = 0; i < rows; i++)
                    y[(long)(rb + i) * ldy + n] = Simd.HorizontalSum8(acc[i]) + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>The iq4_xs product one value at a time, in the same lanes and order.</summary>
    public static void IQ4XSPortable(byte* w, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * XsBlockBytes;
        var values = GgmlQuant.IQ4Values;
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                acc.Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = w + n * rowBytes + b * XsBlockBytes;
                    sbyte* x = xq + (long)r * k + b * 256;
                    lanes.Clear();
                    for (int i = 0; i < 256; i++)
                    {
                        int ib = i / 32, j = i % 32;
                        byte q = blk[8 + 16 * ib + j % 16];
                        lanes[j / 4] += XsScale(blk, ib) * values[j < 16 ? q & 0xF : q >> 4] * x[i];
                    }
                    float d = (float)*(Half*)blk * xd[(long)r * blocks + b];
                    for (int l = 0; l < 8; l++) acc[l] = MathF.FusedMultiplyAdd(d, lanes[l], acc[l]);
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }

    /// <summary>
    /// Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for iq4_nl weights against q8_0 activations. With AVX2, as
    /// ggml's AVX2 builds compute it: they repack iq4_nl matrices (rows a multiple of 8) into interleaved blocks of
    /// eight rows, and the gemv keeps one f32 chain per output, acc += Σ q·x × (d_w·d_x) per block of 32.
    /// </summary>
    public static void IQ4NL(byte* w, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy, int n0,
        int n1)
    {
        if (!Fast)
        {
            IQ4NLPortable(w, xq, xd, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 32;
        long rowBytes = (long)blocks * NlBlockBytes;
        var table = Table;
        var acc = stackalloc float[RowBlock];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int rb = 0; rb < m; rb += RowBlock)
            {
                int rows = Math.Min(RowBlock, m - rb);
                new Span<float>(acc, rows).Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = wr + b * NlBlockBytes;
                    var v = Values(blk + 2, table);
                    var mag = Vector256.Abs(v).AsByte();
                    float dw = (float)*(Half*)blk;
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        var p = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(mag,
                            Avx2.Sign(Vector256.Load(xq + (long)r * k + b * 32), v)), Vector256.Create((short)1));
                        acc[i] = MathF.FusedMultiplyAdd(Vector256.Sum(p), dw * xd[(long)r * blocks + b], acc[i]);
                    }
                }
                for (int i = 0; i < rows; i++) y[(long)(rb + i) * ldy + n] = acc[i] + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>
    /// The iq4_nl product one value at a time (CPUs without AVX2), as ggml's AVX vec_dot: blocks in pairs, lanes 0–3
    /// for the first (lane l: values 4l..4l+3 and 16+4l..16+4l+3), 4–7 for the second, lanes += (d_w·d_x) × sums;
    /// the horizontal sum, then an odd last block added alone.
    /// </summary>
    public static void IQ4NLPortable(byte* w, sbyte* xq, float* xd, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 32;
        long rowBytes = (long)blocks * NlBlockBytes;
        var values = GgmlQuant.IQ4Values;
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                acc.Clear();
                int b = 0;
                for (; b + 1 < blocks; b += 2)
                {
                    lanes.Clear();
                    sbyte* x = xq + (long)r * k + b * 32;
                    for (int i = 0; i < 64; i++)
                    {
                        byte* blk = w + n * rowBytes + (b + i / 32) * NlBlockBytes;
                        int j = i % 32;
                        byte q = blk[2 + j % 16];
                        lanes[4 * (i / 32) + j % 16 / 4] += values[j < 16 ? q & 0xF : q >> 4] * x[i];
                    }
                    for (int l = 0; l < 8; l++)
                    {
                        byte* blk = w + n * rowBytes + (b + l / 4) * NlBlockBytes;
                        float d = (float)*(Half*)blk * xd[(long)r * blocks + b + l / 4];
                        acc[l] = MathF.FusedMultiplyAdd(d, lanes[l], acc[l]);
                    }
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                if (b < blocks)
                {
                    byte* blk = w + n * rowBytes + b * NlBlockBytes;
                    sbyte* x = xq + (long)r * k + b * 32;
                    int isum = 0;
                    for (int j = 0; j < 32; j++)
                        isum += values[j < 16 ? blk[2 + j] & 0xF : blk[2 + j - 16] >> 4] * x[j];
                    s = MathF.FusedMultiplyAdd((float)*(Half*)blk * xd[(long)r * blocks + b], isum, s);
                }
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }
}
