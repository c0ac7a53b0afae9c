using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q2_K and q3_K weights in their file layout against q8_K activations, in the float order of the llama.cpp build
/// that runs beside each instruction set (the integer parts are exact, so only the f32 steps need to follow it):
/// <list type="bullet">
/// <item>AVX2: ggml's AVX2 vec_dot, eight int lanes per superblock (lane L: bytes 4(L%4)..+3 of the 16-value groups
/// of parity L/4), acc += (d_w·d_x) × lanes, and ggml's horizontal sum at the end;</item>
/// <item>AVX-512, q2_K only: ggml's AVX-512 build repacks q2_K into interleaved rows and its gemv keeps one f32 chain
/// per superblock for the scales and one for the mins, as <see cref="KQuantKernels.Q4K"/> does;</item>
/// <item>no AVX2 (the portable code): ggml's AVX vec_dot, whose lanes take groups 0–3 and 4–7 of each 128 values
/// instead.</item>
/// </list>
/// Random-weight models have flat logits, so greedy tokens only match llama.cpp's when these orders are kept.
/// </summary>
static unsafe class KQuantLowBitKernels
{
    /// <summary>Bytes of a q2_K block: scales[16] (4-bit scale low, 4-bit min high), qs[64], f16 d, f16 dmin.</summary>
    public const int Q2KBlockBytes = 84;

    /// <summary>Bytes of a q3_K block: hmask[32], qs[64], 12 bytes of 6-bit scales, f16 d.</summary>
    public const int Q3KBlockBytes = 110;

    /// <summary>Batch rows whose accumulators are kept while a weight row passes (eight floats each, on the
    /// stack).</summary>
    const int RowBlock = 32;

    static bool Fast => KQuantKernels.Fast;

    /// <summary>Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q2_K weights w [N × k] in place.</summary>
    public static void Q2K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast) Q2KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
        else Q2KAvx2(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1, repacked: Avx512F.IsSupported);
    }

    /// <summary>Rows [n0, n1) of y [m × ldy] = x · wᵀ (+ bias) for q3_K weights w [N × k] in place.</summary>
    public static void Q3K(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        if (!Fast) Q3KPortable(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
        else Q3KAvx2(w, xq, xd, xsums, y, bias, m, k, ldy, n0, n1);
    }

    /// <summary>
    /// q2_K with AVX2, each superblock decoded once for a block of batch rows. <paramref name="repacked"/> takes the
    /// order of ggml's q2_K gemv (AVX-512 builds): the superblock's exact sums into acc += Σ scale·q·x × (d_w·d_x)
    /// and acc_min += Σ min·bsum × (dmin_w·d_x), the result acc − acc_min; else ggml's AVX2 vec_dot, whose eight
    /// lanes take the mins first, lanes += (−d_x·dmin_w) × Σ min·bsum, then lanes += (d_x·d_w) ×
    /// Σ scale·q·x.
    /// </summary>
    public static void Q2KAvx2(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1, bool repacked)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q2KBlockBytes;
        var m3 = Vector256.Create((byte)3);
        var q = stackalloc Vector256<byte>[8];
        var scales = stackalloc Vector256<short>[8];
        var acc = stackalloc Vector256<float>[RowBlock];
        // the gemv's two chains per batch row: scales, mins
        var chains = stackalloc float[2 * RowBlock];
        for (int n = n0; n < n1; n++)
        {
            byte* wr = w + n * rowBytes;
            for (int rb = 0; rb < m; rb += RowBlock)
            {
                int rows = Math.Min(RowBlock, m - rb);
                for (int i = 0; i < rows; i++) acc[i] = default;
                new Span<float>(chains, 2 * rows).Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = wr + b * Q2KBlockBytes;
                    for (int half = 0; half < 2; half++)
                    {
                        var bits = Vector256.Load(blk + 16 + 32 * half).AsUInt16();
                        for (int s = 0; s < 4; s++) q[4 * half + s] = (bits >> (2 * s)).AsByte() & m3;
                    }
                    for (int c = 0; c < 8; c++)
                        scales[c] = Vector256.Create(Vector128.Create((short)(blk[2 * c] & 0xF)),
                            Vector128.Create((short)(blk[2 * c + 1] & 0xF)));
                    var mins = Avx2.ConvertToVector256Int16(Vector128.Load(blk) >>> 4);
                    float dw = (float)*(Half*)(blk + 80), dminw = (float)*(Half*)(blk + 82);
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        sbyte* x = xq + (long)r * k + b * 256;
                        Vector256<int> sum = default;
                        for (int c = 0; c < 8; c++)
                            sum += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q[c], Vector256.Load(x + 32 * c)),
                                scales[c]);
                        var prod = Avx2.MultiplyAddAdjacent(mins, Vector256.Load(xsums + (long)r * (k / 16) + 16 * b));
                        float dx = xd[(long)r * blocks + b];
                        if (repacked)
                        {
                            chains[2 * i] = MathF.FusedMultiplyAdd(Vector256.Sum(sum), dw * dx, chains[2 * i]);
                            chains[2 * i + 1] = MathF.FusedMultiplyAdd(Vector256.Sum(prod), dminw * dx,
                                chains[2 * i + 1]);
                        }
                        else
                        {
                            var a = Fma.MultiplyAdd(Vector256.Create(-dx * dminw), Vector256.ConvertToSingle(prod),
                                acc[i]);
                            acc[i] = Fma.MultiplyAdd(Vector256.Create(dx * dw), Vector256.ConvertToSingle(sum), a);
                        }
                    }
                }
                for (int i = 0; i < rows; i++)
                {
                    float s = repacked ? chains[2 * i] - chains[2 * i + 1] : Simd.HorizontalSum8(acc[i]);
                    y[(long)(rb + i) * ldy + n] = s + (bias == null ? 0 : bias[n]);
                }
            }
        }
    }

    /// <summary>
    /// q3_K with AVX2 in the lanes of ggml's AVX2 vec_dot, each superblock decoded once for a block of batch rows:
    /// the quants as magnitude (0..4) and sign, so one byte product serves the 3-bit value with its −4 offset
    /// (|pair| ≤ 2·4·127, exact), each 16 weighted by their signed scale.
    /// </summary>
    static void Q3KAvx2(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q3KBlockBytes;
        var m3 = Vector256.Create((byte)3);
        var one = Vector256.Create((byte)1);
        var four = Vector256.Create((sbyte)4);
        var mag = stackalloc Vector256<byte>[8];
        var sign = stackalloc Vector256<sbyte>[8];
        var scales = stackalloc Vector256<short>[8];
        var sc = stackalloc int[16];
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
                    byte* blk = wr + b * Q3KBlockBytes;
                    var hmask = Vector256.Load(blk).AsUInt16();
                    for (int c = 0; c < 8; c++)
                    {
                        var low = (Vector256.Load(blk + 32 + 32 * (c / 4)).AsUInt16() >> (2 * (c % 4))).AsByte() & m3;
                        var high = (hmask >> c).AsByte() & one;
                        // 4 where the high bit is clear: the value is its two bits less 4
                        var v = low.AsSByte() - (four & Vector256.Equals(high, Vector256<byte>.Zero).AsSByte());
                        mag[c] = Vector256.Abs(v).AsByte();
                        sign[c] = v;
                    }
                    Q3KScales(blk + 96, sc);
                    for (int c = 0; c < 8; c++)
                        scales[c] = Vector256.Create(Vector128.Create((short)sc[2 * c]),
                            Vector128.Create((short)sc[2 * c + 1]));
                    float dw = (float)*(Half*)(blk + 108);
                    for (int i = 0; i < rows; i++)
                    {
                        int r = rb + i;
                        sbyte* x = xq + (long)r * k + b * 256;
                        Vector256<int> sum = default;
                        for (int c = 0; c < 8; c++)
                            sum += Avx2.MultiplyAddAdjacent(
                                Avx2.MultiplyAddAdjacent(mag[c], Avx2.Sign(Vector256.Load(x + 32 * c), sign[c])),
                                scales[c]);
                        float dx = xd[(long)r * blocks + b];
                        acc[i] = Fma.MultiplyAdd(Vector256.Create(dx * dw), Vector256.ConvertToSingle(sum), acc[i]);
                    }
                }
                for (int i = 0; i < rows; i++)
                    y[(long)(rb + i) * ldy + n] = Simd.HorizontalSum8(acc[i]) + (bias == null ? 0 : bias[n]);
            }
        }
    }

    /// <summary>The sixteen signed scales of a q3_K block (6 bits stored offset by 32: low nibbles in bytes 0..7, the
    /// high bit pairs in bytes 8..11).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Q3KScales(byte* s, int* sc)
    {
        for (int j = 0; j < 16; j++)
        {
            int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
            sc[j] = (low | (s[8 + j % 4] >> (2 * (j / 4)) & 3) << 4) - 32;
        }
    }

    /// <summary>The int lane of ggml's AVX (128-bit) vec_dot that value i of a superblock adds to: lanes 0–3 take
    /// groups 0–3 of each 128 values, lanes 4–7 groups 4–7, each lane 4 bytes of its 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int AvxLane(int i) => (i % 128 >= 64 ? 4 : 0) + i % 16 / 4;

    /// <summary>The q2_K product one value at a time (CPUs without AVX2), in the lanes and order of ggml's AVX
    /// vec_dot, its separate multiply and add fused as llama.cpp's AVX build (compiled with FMA) computes
    /// them.</summary>
    public static void Q2KPortable(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q2KBlockBytes;
        Span<int> lanes = stackalloc int[8], mins = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                acc.Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = w + n * rowBytes + b * Q2KBlockBytes;
                    sbyte* x = xq + (long)r * k + b * 256;
                    short* bs = xsums + (long)r * (k / 16) + b * 16;
                    lanes.Clear();
                    for (int i = 0; i < 256; i++)
                    {
                        int q = blk[16 + 32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32)) & 3;
                        lanes[AvxLane(i)] += (blk[i / 16] & 0xF) * q * x[i];
                    }
                    for (int l = 0; l < 8; l++)
                        mins[l] = (blk[2 * l] >> 4) * bs[2 * l] + (blk[2 * l + 1] >> 4) * bs[2 * l + 1];
                    float dx = xd[(long)r * blocks + b];
                    float d = dx * (float)*(Half*)(blk + 80), dmin = -dx * (float)*(Half*)(blk + 82);
                    for (int l = 0; l < 8; l++)
                        acc[l] = MathF.FusedMultiplyAdd(d, lanes[l], MathF.FusedMultiplyAdd(dmin, mins[l], acc[l]));
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }

    /// <summary>The q3_K product one value at a time (CPUs without AVX2), in the lanes and order of ggml's AVX
    /// vec_dot (multiply and add fused, as in llama.cpp's AVX build).</summary>
    public static void Q3KPortable(byte* w, sbyte* xq, float* xd, short* xsums, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 256;
        long rowBytes = (long)blocks * Q3KBlockBytes;
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        var sc = stackalloc int[16];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                acc.Clear();
                for (int b = 0; b < blocks; b++)
                {
                    byte* blk = w + n * rowBytes + b * Q3KBlockBytes;
                    sbyte* x = xq + (long)r * k + b * 256;
                    Q3KScales(blk + 96, sc);
                    lanes.Clear();
                    for (int i = 0; i < 256; i++)
                    {
                        int chunk = i / 32, l = i % 32;
                        int q = (blk[32 + 32 * (i / 128) + l] >> (2 * (chunk % 4)) & 3)
                            - ((blk[l] >> chunk & 1) != 0 ? 0 : 4);
                        lanes[AvxLane(i)] += sc[i / 16] * q * x[i];
                    }
                    float d = xd[(long)r * blocks + b] * (float)*(Half*)(blk + 108);
                    for (int l = 0; l < 8; l++) acc[l] = MathF.FusedMultiplyAdd(d, lanes[l], acc[l]);
                }
                float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }
}
