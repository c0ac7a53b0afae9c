using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// q4_0 repacked at load into groups of eight rows, as ggml's x86 builds repack it (block_q4_0x8): per 32-value block
/// the eight rows' f16 scales, then four 32-byte chunks, chunk c holding bytes 4c..4c+3 of each row's nibbles (values
/// 4c..4c+3 low, 16+4c.. high). One vpdpbusd against four broadcast activations then gives each row's dot in its own
/// lane, and the rows' chains (acc = fma(isum, d_w·d_x, acc), ggml's gemv order) run eight to a vector with no
/// horizontal sums; in the file's layout a block's sum cost one per row and took batch 16 to 0.89x llama.cpp. The
/// same bytes as the file.
/// </summary>
static unsafe class Q4_0x8Kernels
{
    const int GroupBlockBytes = 8 * 18;

    /// <summary>Whether the repacked kernel runs (it needs AVX2 and FMA); matrices with rows not a multiple of 8
    /// stay in the file's layout.</summary>
    public static bool Fast => LegacyKernels.Fast;

    public static void Repack(byte* src, byte* dst, long rows, int k)
    {
        int blocks = k / 32;
        for (long g = 0; g < rows / 8; g++)
            for (int b = 0; b < blocks; b++)
            {
                byte* o = dst + (g * blocks + b) * GroupBlockBytes;
                for (int r = 0; r < 8; r++)
                {
                    byte* blk = src + ((g * 8 + r) * blocks + b) * 18;
                    *(ushort*)(o + 2 * r) = *(ushort*)blk;
                    for (int c = 0; c < 4; c++) *(uint*)(o + 16 + 32 * c + 4 * r) = *(uint*)(blk + 2 + 4 * c);
                }
            }
    }

    /// <summary>Row <paramref name="row"/>'s blocks in the file's layout again (an embedding lookup).</summary>
    public static void Unpack(byte* packed, long row, int k, Span<byte> dst)
    {
        int blocks = k / 32;
        byte* g = packed + row / 8 * blocks * GroupBlockBytes;
        int r = (int)(row % 8);
        for (int b = 0; b < blocks; b++)
        {
            byte* o = g + b * GroupBlockBytes;
            var blk = dst.Slice(18 * b, 18);
            blk[0] = o[2 * r];
            blk[1] = o[2 * r + 1];
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 4; i++) blk[2 + 4 * c + i] = o[16 + 32 * c + 4 * r + i];
        }
    }

    /// <summary>Rows [n0, n1) (multiples of 8) of y [m × ldy] = x · wᵀ (+ bias), x quantized by
    /// <see cref="Quantize.RowQ8"/>.</summary>
    public static void MatMul(byte* w, sbyte* xq, int* xc, float* xd, float* y, float* bias, int m, int k, int ldy,
        int n0, int n1)
    {
        int blocks = k / 32;
        long groupBytes = (long)blocks * GroupBlockBytes;
        for (int g = n0 / 8; g < n1 / 8; g++)
        {
            byte* wg = w + g * groupBytes;
            var add = bias == null ? default : Vector256.Load(bias + 8 * g);
            int r = 0;
            // two batch rows share each block's unpacking (more spill on CPUs with 16 vector registers)
            for (; r + 2 <= m; r += 2)
            {
                var (a0, a1) = Rows2(wg, blocks, xq + (long)r * k, xq + (long)(r + 1) * k, xc + (long)r * (k / 4),
                    xc + (long)(r + 1) * (k / 4), xd + (long)r * blocks, xd + (long)(r + 1) * blocks);
                (a0 + add).Store(y + (long)r * ldy + 8 * g);
                (a1 + add).Store(y + (long)(r + 1) * ldy + 8 * g);
            }
            for (; r < m; r++)
                (Rows1(wg, blocks, xq + (long)r * k, xc + (long)r * (k / 4), xd + (long)r * blocks, groupBytes) + add)
                    .Store(y + (long)r * ldy + 8 * g);
        }
    }

    /// <summary>The eight rows of a group against one activation row, prefetching the group two ahead.</summary>
    static Vector256<float> Rows1(byte* wg, int blocks, sbyte* x, int* c, float* dx, long groupBytes)
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* o = wg + b * GroupBlockBytes;
            for (int l = 0; l < GroupBlockBytes; l += 64) Simd.Prefetch(o + 2 * groupBytes + l);
            var s = Offset(c + 8 * b);
            sbyte* xb = x + 32 * b;
            for (int ch = 0; ch < 4; ch++)
            {
                var q = Vector256.Load(o + 16 + 32 * ch);
                s = Dot(s, q & m4, xb + 4 * ch);
                s = Dot(s, (q.AsUInt16() >> 4).AsByte() & m4, xb + 16 + 4 * ch);
            }
            acc = Fma.MultiplyAdd(Vector256.ConvertToSingle(s), Scales(o) * Vector256.Create(dx[b]), acc);
        }
        return acc;
    }

    /// <summary>The eight rows of a group against two activation rows.</summary>
    static (Vector256<float>, Vector256<float>) Rows2(byte* wg, int blocks, sbyte* x0, sbyte* x1, int* c0, int* c1,
        float* d0, float* d1)
    {
        var m4 = Vector256.Create((byte)0x0F);
        Vector256<float> a0 = default, a1 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* o = wg + b * GroupBlockBytes;
            Vector256<int> s0 = Offset(c0 + 8 * b), s1 = Offset(c1 + 8 * b);
            int at = 32 * b;
            for (int ch = 0; ch < 4; ch++)
            {
                var q = Vector256.Load(o + 16 + 32 * ch);
                Vector256<byte> lo = q & m4, hi = (q.AsUInt16() >> 4).AsByte() & m4;
                s0 = Dot(Dot(s0, lo, x0 + at + 4 * ch), hi, x0 + at + 16 + 4 * ch);
                s1 = Dot(Dot(s1, lo, x1 + at + 4 * ch), hi, x1 + at + 16 + 4 * ch);
            }
            var d = Scales(o);
            a0 = Fma.MultiplyAdd(Vector256.ConvertToSingle(s0), d * Vector256.Create(d0[b]), a0);
            a1 = Fma.MultiplyAdd(Vector256.ConvertToSingle(s1), d * Vector256.Create(d1[b]), a1);
        }
        return (a0, a1);
    }

    /// <summary>−8·Σx of the block in every lane: the quants' offset, from the quantizer's −128·Σx per
    /// lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Offset(int* c) => Vector256.Create(Vector256.Sum(Vector256.Load(c)) >> 4);

    /// <summary>s + each row's products of its four nibbles with the four activations at x (one vpdpbusd; AVX2's
    /// pairs otherwise, exact: nibbles ≤ 15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<int> s, Vector256<byte> q, sbyte* x)
    {
        var xs = Vector256.Create(*(int*)x).AsSByte();
        return AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(s, q, xs)
            : s + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, xs), Vector256<short>.One);
    }

    /// <summary>The eight rows' f16 block scales as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Scales(byte* o) =>
        HalfMath.ToSingle(Avx2.ConvertToVector256Int32(Vector128.Load((short*)o)));
}
