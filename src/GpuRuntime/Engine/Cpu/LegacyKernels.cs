using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static Weft.GpuRuntime.Engine.Cpu.HalfMath;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// One of ggml's legacy 32-value block formats read in place from the file: its size, its f16 scale (and minimum),
/// and its quants unpacked to the unsigned bytes VNNI multiplies (the stored value, which is the signed one plus
/// <see cref="Offset"/> for the formats without a minimum).
/// </summary>
unsafe interface ILegacyBlock
{
    static abstract int Bytes { get; }
    /// <summary>q4_1/q5_1: a value is q·d + m, and the activations carry q8_1's block sums for the m term.</summary>
    static abstract bool HasMin { get; }
    /// <summary>What the unpacked quants carry on top of the signed value (8 for q4_0, 16 for q5_0, 0 with a
    /// minimum).</summary>
    static abstract int Offset { get; }
    static abstract Vector256<byte> Unpack(byte* block);
    /// <summary><see cref="Unpack"/>'s bytes 0-15 and 16-31, for the 128-bit kernel.</summary>
    static abstract (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* block);
    /// <summary>Quant <paramref name="j"/> of the block as stored (the portable path).</summary>
    static abstract int Quant(byte* block, int j);
}

/// <summary>The 16 bytes of nibbles every legacy format ends with: low nibbles are values 0–15, high ones
/// 16–31.</summary>
static unsafe class Nibbles
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* qs)
    {
        var q = Vector128.Load(qs);
        return Vector256.Create(q & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(q, 4));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* qs)
    {
        var q = Vector128.Load(qs);
        return (q & Vector128.Create((byte)0x0F), Vector128.ShiftRightLogical(q, 4));
    }

    public static int Quant(byte* qs, int j) => j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;

    /// <summary>
    /// The nibbles with the fifth bits of q5_0/q5_1 (bit j of the 32-bit field is value j's) set as 0x10: each byte
    /// picks the field's byte j/8 (a byte shuffle of the broadcast field), and tests its bit j%8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> UnpackWithHighBits(byte* qh, byte* qs)
    {
        var field = Vector256.Create(*(uint*)qh).AsByte();
        var picked = Avx2.Shuffle(field, Vector256.Create(0UL, 0x0101010101010101UL, 0x0202020202020202UL,
            0x0303030303030303UL).AsByte());
        var bit = Vector256.Create(0x8040201008040201UL).AsByte();
        return Unpack(qs) | (Vector256.Equals(picked & bit, bit) & Vector256.Create((byte)0x10));
    }

    /// <summary><see cref="UnpackWithHighBits"/> in halves: each byte's field byte broadcast by a multiply, not a
    /// shuffle (which SSE2 and a plain Vector128 lack).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) UnpackWithHighBits128(byte* qh, byte* qs)
    {
        const ulong spread = 0x0101010101010101UL;
        var bit = Vector128.Create(0x8040201008040201UL).AsByte();
        var five = Vector128.Create((byte)0x10);
        var lo = Vector128.Create(spread * qh[0], spread * qh[1]).AsByte() & bit;
        var hi = Vector128.Create(spread * qh[2], spread * qh[3]).AsByte() & bit;
        var (nl, nh) = Unpack128(qs);
        return (nl | (Vector128.Equals(lo, bit) & five), nh | (Vector128.Equals(hi, bit) & five));
    }

    public static int QuantWithHighBits(byte* qh, byte* qs, int j) =>
        Quant(qs, j) | (int)((*(uint*)qh >> j) & 1) << 4;
}

/// <summary>q4_0: f16 scale, 16 bytes of nibbles; a value is (q − 8)·d.</summary>
unsafe readonly struct Q4_0Block : ILegacyBlock
{
    public static int Bytes => 18;
    public static bool HasMin => false;
    public static int Offset => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => Nibbles.Unpack(block + 2);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* block) => Nibbles.Unpack128(block + 2);
    public static int Quant(byte* block, int j) => Nibbles.Quant(block + 2, j);
}

/// <summary>q4_1: f16 scale and minimum, 16 bytes of nibbles; a value is q·d + m.</summary>
unsafe readonly struct Q4_1Block : ILegacyBlock
{
    public static int Bytes => 20;
    public static bool HasMin => true;
    public static int Offset => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => Nibbles.Unpack(block + 4);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* block) => Nibbles.Unpack128(block + 4);
    public static int Quant(byte* block, int j) => Nibbles.Quant(block + 4, j);
}

/// <summary>q5_0: f16 scale, 32 fifth bits, 16 bytes of nibbles; a value is (q − 16)·d.</summary>
unsafe readonly struct Q5_0Block : ILegacyBlock
{
    public static int Bytes => 22;
    public static bool HasMin => false;
    public static int Offset => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => Nibbles.UnpackWithHighBits(block + 2, block + 6);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* block) =>
        Nibbles.UnpackWithHighBits128(block + 2, block + 6);
    public static int Quant(byte* block, int j) => Nibbles.QuantWithHighBits(block + 2, block + 6, j);
}

/// <summary>q5_1: f16 scale and minimum, 32 fifth bits, 16 bytes of nibbles; a value is q·d + m.</summary>
unsafe readonly struct Q5_1Block : ILegacyBlock
{
    public static int Bytes => 24;
    public static bool HasMin => true;
    public static int Offset => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unpack(byte* block) => Nibbles.UnpackWithHighBits(block + 4, block + 8);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector128<byte> Lo, Vector128<byte> Hi) Unpack128(byte* block) =>
        Nibbles.UnpackWithHighBits128(block + 4, block + 8);
    public static int Quant(byte* block, int j) => Nibbles.QuantWithHighBits(block + 4, block + 8, j);
}

/// <summary>
/// Matmuls of legacy block weights against q8_0-quantized activations the way ggml's x86 vec_dot does them: per block
/// an exact integer dot in eight lanes of four products, converted to f32 and multiplied into eight f32 lanes by the
/// product of the two block scales, the lanes summed at the end as ggml sums them; for q4_1/q5_1 the minimum times
/// q8_1's block sum accumulated apart in f32 and added last. The weights stay as the file holds them (4.5 bits a value
/// for q4_0), so a decode step streams about half of q8_0's bytes.
/// </summary>
static unsafe class LegacyKernels
{
    /// <summary>
    /// Whether the 256-bit kernels run (their byte dots by AVX-VNNI's vpdpbusd, or AVX2's vpmaddubsw and vpmaddwd);
    /// else the 128-bit one, or without 128-bit SIMD the portable path, all in the same lane order.
    /// </summary>
    public static bool Fast => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Batch rows processed together against a range of weight rows, so their activations stay in
    /// L2.</summary>
    const int BatchBlock = 32;

    /// <summary>
    /// q8_1's s per block of a row quantized by <see cref="Quantize.RowQ8"/>: d·Σq rounded to f16, where ggml takes d
    /// before its rounding to f16 (max|x| / 127) and Σq from the quants (here from the VNNI corrections, −128·Σq by
    /// lanes).
    /// </summary>
    public static void BlockSums(float* x, int* c, float* s, int k)
    {
        for (int b = 0; b < k / 32; b++)
        {
            float* xs = x + b * 32;
            var m = Vector256.Max(
                Vector256.Max(Vector256.Abs(Vector256.Load(xs)), Vector256.Abs(Vector256.Load(xs + 8))),
                Vector256.Max(Vector256.Abs(Vector256.Load(xs + 16)), Vector256.Abs(Vector256.Load(xs + 24))));
            float amax = 0;
            for (int i = 0; i < 8; i++) amax = MathF.Max(amax, m[i]);
            int sum = -Vector256.Sum(Vector256.Load(c + b * 8)) / 128;
            s[b] = (float)(System.Half)(amax / 127f * sum);
        }
    }

    /// <summary>Rows [n0, n1) of y [M × ldy]: weights w [N × K/32 blocks] against activations quantized by
    /// <see cref="Quantize.RowQ8"/> (quants [M × K], corrections [M × K/4], scales and sums [M × K/32]).</summary>
    public static void MatMul<TBlock>(byte* w, sbyte* xq, int* xc, float* xd, float* xs, float* y, float* bias, int m,
        int k, int ldy, int n0, int n1) where TBlock : struct, ILegacyBlock
    {
        if (!Fast)
        {
            if (Vector128.IsHardwareAccelerated) MatMul128<TBlock>(w, xq, xc, xd, xs, y, bias, m, k, ldy, n0, n1);
            else Portable<TBlock>(w, xq, xd, xs, y, bias, m, k, ldy, n0, n1);
            return;
        }
        int blocks = k / 32;
        long rowBytes = (long)blocks * TBlock.Bytes;
        int tiles = n0 + (n1 - n0) / 4 * 4;
        float* s = stackalloc float[16];
        if (m == 1)
            // four rows about 32 KiB apart, each a sequential run, as MatMulKernels.Float reads rows, and no fetching
            // ahead in software (the 300m q5_0 step at batch 1: 11.36 → 9.81 ms, medians of five alternations)
            for (int n = n0; n < tiles;)
            {
                int apart = MatMulKernels.Apart(rowBytes, tiles - n, 4);
                for (int o = 0; o < apart; o++)
                {
                    Dot4x1<TBlock>(w + (n + o) * rowBytes, apart * rowBytes, new Activations(xq, xc, xd, xs), blocks,
                        s);
                    for (int i = 0; i < 4; i++)
                    {
                        int row = n + o + i * apart;
                        y[row] = s[i] + (bias == null ? 0 : bias[row]);
                    }
                }
                n += 4 * apart;
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
                        var x0 = Activations.Row(xq, xc, xd, xs, r, k);
                        var x1 = Activations.Row(xq, xc, xd, xs, Math.Min(r + 1, mEnd - 1), k);
                        var x2 = Activations.Row(xq, xc, xd, xs, Math.Min(r + 2, mEnd - 1), k);
                        var x3 = Activations.Row(xq, xc, xd, xs, Math.Min(r + 3, mEnd - 1), k);
                        Dot4x4<TBlock>(w + n * rowBytes, rowBytes, x0, x1, x2, x3, blocks, prefetch: r == mb, s);
                        for (int j = 0; j < 4 && r + j < mEnd; j++)
                            for (int i = 0; i < 4; i++)
                                y[(long)(r + j) * ldy + n + i] = s[i * 4 + j] + (bias == null ? 0 : bias[n + i]);
                    }
            }
        if (tiles < n1) Portable<TBlock>(w, xq, xd, xs, y, bias, m, k, ldy, tiles, n1);
    }

    /// <summary>One quantized activation row: quants, VNNI corrections, block scales and block sums.</summary>
    readonly struct Activations(sbyte* q, int* c, float* d, float* s)
    {
        public readonly sbyte* Q = q;
        public readonly int* C = c;
        public readonly float* D = d;
        public readonly float* S = s;

        public static Activations Row(sbyte* q, int* c, float* d, float* s, int r, int k) =>
            new(q + (long)r * k, c + (long)r * (k / 4), d + (long)r * (k / 32), s + (long)r * (k / 32));
    }

    /// <summary>
    /// Four weight rows, <paramref name="step"/> bytes apart, against the one activation row (a decode step of one
    /// sequence): s[i] = w[i] · x, each sum formed exactly as in <see cref="Dot4x4"/>, so a sequence gets the same bits
    /// alone or in a batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x1<TBlock>(byte* w, long step, Activations x, int blocks, float* s)
        where TBlock : struct, ILegacyBlock
    {
        int shift = TBlock.Offset == 0 ? 0 : BitOperations.Log2(128 / (uint)TBlock.Offset);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector128<float> mins = default;
        byte* wb = w;
        for (int b = 0; b < blocks; b++, wb += TBlock.Bytes)
        {
            Column<TBlock>(ref a0, ref a1, ref a2, ref a3, TBlock.Unpack(wb), TBlock.Unpack(wb + step),
                TBlock.Unpack(wb + 2 * step), TBlock.Unpack(wb + 3 * step), F16(wb), F16(wb + step),
                F16(wb + 2 * step), F16(wb + 3 * step), x, b, shift);
            if (TBlock.HasMin)
                mins = Vector128.FusedMultiplyAdd(Vector128.Create(F16(wb + 2), F16(wb + step + 2),
                    F16(wb + 2 * step + 2), F16(wb + 3 * step + 2)), Vector128.Create(x.S[b]), mins);
        }
        if (typeof(TBlock) == typeof(Q4_0Block)) a0.GetLower().Store(s);
        else
        {
            s[0] = Simd.HorizontalSum8(a0);
            s[1] = Simd.HorizontalSum8(a1);
            s[2] = Simd.HorizontalSum8(a2);
            s[3] = Simd.HorizontalSum8(a3);
        }
        if (TBlock.HasMin) (Vector128.Load(s) + mins).Store(s);
    }

    /// <summary>
    /// Four weight rows against four activation rows: s[i·4 + j] = w[i] · x_j. Each weight block is unpacked once for
    /// the four activation rows. VNNI multiplies unsigned by signed bytes: the unpacked quants carry the format's
    /// offset, and each lane's sum starts at −offset·Σx, the quantizer's −128·Σx shifted (exact: offsets are powers of
    /// two).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void Dot4x4<TBlock>(byte* w, long rowBytes, Activations x0, Activations x1, Activations x2, Activations x3,
        int blocks, bool prefetch, float* s) where TBlock : struct, ILegacyBlock
    {
        int shift = TBlock.Offset == 0 ? 0 : BitOperations.Log2(128 / (uint)TBlock.Offset);
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default,
            a10 = default, a11 = default, a12 = default, a13 = default,
            a20 = default, a21 = default, a22 = default, a23 = default,
            a30 = default, a31 = default, a32 = default, a33 = default;
        // the minimum terms, by weight row, one lane per activation row
        Vector128<float> m0 = default, m1 = default, m2 = default, m3 = default;
        byte* wb = w;
        for (int b = 0; b < blocks; b++, wb += TBlock.Bytes)
        {
            if (prefetch && (b & 1) == 0)
                for (int q = 4; q < 8; q++) Sse.Prefetch0(wb + q * rowBytes); // the next four rows
            var w0 = TBlock.Unpack(wb);
            var w1 = TBlock.Unpack(wb + rowBytes);
            var w2 = TBlock.Unpack(wb + 2 * rowBytes);
            var w3 = TBlock.Unpack(wb + 3 * rowBytes);
            float d0 = F16(wb), d1 = F16(wb + rowBytes), d2 = F16(wb + 2 * rowBytes), d3 = F16(wb + 3 * rowBytes);
            Column<TBlock>(ref a00, ref a10, ref a20, ref a30, w0, w1, w2, w3, d0, d1, d2, d3, x0, b, shift);
            Column<TBlock>(ref a01, ref a11, ref a21, ref a31, w0, w1, w2, w3, d0, d1, d2, d3, x1, b, shift);
            Column<TBlock>(ref a02, ref a12, ref a22, ref a32, w0, w1, w2, w3, d0, d1, d2, d3, x2, b, shift);
            Column<TBlock>(ref a03, ref a13, ref a23, ref a33, w0, w1, w2, w3, d0, d1, d2, d3, x3, b, shift);
            if (TBlock.HasMin)
            {
                var sums = Vector128.Create(x0.S[b], x1.S[b], x2.S[b], x3.S[b]);
                m0 = Vector128.FusedMultiplyAdd(Vector128.Create(F16(wb + 2)), sums, m0);
                m1 = Vector128.FusedMultiplyAdd(Vector128.Create(F16(wb + rowBytes + 2)), sums, m1);
                m2 = Vector128.FusedMultiplyAdd(Vector128.Create(F16(wb + 2 * rowBytes + 2)), sums, m2);
                m3 = Vector128.FusedMultiplyAdd(Vector128.Create(F16(wb + 3 * rowBytes + 2)), sums, m3);
            }
        }
        if (typeof(TBlock) == typeof(Q4_0Block))
            Chains(a00.GetLower(), a01.GetLower(), a02.GetLower(), a03.GetLower(), s);
        else
        {
            s[0] = Simd.HorizontalSum8(a00);
            s[1] = Simd.HorizontalSum8(a01);
            s[2] = Simd.HorizontalSum8(a02);
            s[3] = Simd.HorizontalSum8(a03);
            s[4] = Simd.HorizontalSum8(a10);
            s[5] = Simd.HorizontalSum8(a11);
            s[6] = Simd.HorizontalSum8(a12);
            s[7] = Simd.HorizontalSum8(a13);
            s[8] = Simd.HorizontalSum8(a20);
            s[9] = Simd.HorizontalSum8(a21);
            s[10] = Simd.HorizontalSum8(a22);
            s[11] = Simd.HorizontalSum8(a23);
            s[12] = Simd.HorizontalSum8(a30);
            s[13] = Simd.HorizontalSum8(a31);
            s[14] = Simd.HorizontalSum8(a32);
            s[15] = Simd.HorizontalSum8(a33);
        }
        if (TBlock.HasMin)
        {
            (Vector128.Load(s) + m0).Store(s);
            (Vector128.Load(s + 4) + m1).Store(s + 4);
            (Vector128.Load(s + 8) + m2).Store(s + 8);
            (Vector128.Load(s + 12) + m3).Store(s + 12);
        }
    }

    /// <summary>s[i·4 + j] = w[i] · x_j from q4_0's chains: those of activation row j in the lanes of
    /// <c>cj</c>, one per weight row.</summary>
    static void Chains(Vector128<float> c0, Vector128<float> c1, Vector128<float> c2, Vector128<float> c3, float* s)
    {
        for (int i = 0; i < 4; i++)
        {
            s[4 * i] = c0[i];
            s[4 * i + 1] = c1[i];
            s[4 * i + 2] = c2[i];
            s[4 * i + 3] = c3[i];
        }
    }


    /// <summary>One activation block against the four weight rows' blocks: a[i] += (dw[i]·dx) × Σ w[i]·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Column<TBlock>(ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2,
        ref Vector256<float> a3, Vector256<byte> w0, Vector256<byte> w1, Vector256<byte> w2, Vector256<byte> w3,
        float d0, float d1, float d2, float d3, Activations x, int b, int shift) where TBlock : struct, ILegacyBlock
    {
        var q = Vector256.Load(x.Q + b * 32);
        var c = TBlock.Offset == 0 ? default : Vector256.ShiftRightArithmetic(Vector256.Load(x.C + b * 8), shift);
        float dx = x.D[b];
        if (typeof(TBlock) == typeof(Q4_0Block))
        {
            // ggml's x86 builds with AVX2 repack q4_0 (rows a multiple of 8), and their gemv/gemm add whole-block
            // integer sums into one f32 chain per output: the four rows' chains ride in lanes 0-3 of a0 (see
            // Chains), the block's lanes summed for all four rows at once
            var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(Dot(c, w0, q), Dot(c, w1, q)),
                Avx2.HorizontalAdd(Dot(c, w2, q), Dot(c, w3, q)));
            var chains = Fma.MultiplyAdd(Vector128.ConvertToSingle(h.GetLower() + h.GetUpper()),
                Vector128.Create(d0 * dx, d1 * dx, d2 * dx, d3 * dx), a0.GetLower());
            a0 = chains.ToVector256Unsafe();
            return;
        }
        a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w0, q)), Vector256.Create(d0 * dx), a0);
        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w1, q)), Vector256.Create(d1 * dx), a1);
        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w2, q)), Vector256.Create(d2 * dx), a2);
        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Dot(c, w3, q)), Vector256.Create(d3 * dx), a3);
    }

    /// <summary>
    /// c + eight int lanes of four products w·q (vpdpbusd's lanes). Without AVX-VNNI, vpmaddubsw's int16 pairs and
    /// vpmaddwd by ones give the same lanes: the unpacked quants are at most 31, so a pair stays within
    /// 2·31·128 and never saturates.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Dot(Vector256<int> c, Vector256<byte> w, Vector256<sbyte> q) => AvxVnni.IsSupported
        ? AvxVnni.MultiplyWideningAndAdd(c, w, q)
        : c + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, q), Vector256<short>.One);

    /// <summary>
    /// The 128-bit kernel (Arm64's width; SSE on x64 without AVX2): four weight rows against up to
    /// <see cref="BatchBlock"/> batch rows, each weight block unpacked once for all of them; the eight lanes as two
    /// vectors (bytes 0-15 and 16-31), each row pair's lanes kept in L1 between blocks. The lanes are scaled with a
    /// separate multiply and add, as the portable path does on CPUs without AVX2 and FMA.
    /// </summary>
    static void MatMul128<TBlock>(byte* w, sbyte* xq, int* xc, float* xd, float* xs, float* y, float* bias, int m,
        int k, int ldy, int n0, int n1) where TBlock : struct, ILegacyBlock
    {
        int blocks = k / 32;
        long rowBytes = (long)blocks * TBlock.Bytes;
        int tiles = n0 + (n1 - n0) / 4 * 4;
        int shift = TBlock.Offset == 0 ? 0 : BitOperations.Log2(128 / (uint)TBlock.Offset);
        // per batch row: four weight rows' eight lanes, then their four minimum terms
        float* acc = stackalloc float[BatchBlock * 36];
        for (int mb = 0; mb < m; mb += BatchBlock)
        {
            int rows = Math.Min(BatchBlock, m - mb);
            for (int n = n0; n < tiles; n += 4)
            {
                new Span<float>(acc, rows * 36).Clear();
                byte* wb = w + n * rowBytes;
                for (int b = 0; b < blocks; b++, wb += TBlock.Bytes)
                {
                    var (w0, h0) = TBlock.Unpack128(wb);
                    var (w1, h1) = TBlock.Unpack128(wb + rowBytes);
                    var (w2, h2) = TBlock.Unpack128(wb + 2 * rowBytes);
                    var (w3, h3) = TBlock.Unpack128(wb + 3 * rowBytes);
                    float d0 = F16(wb), d1 = F16(wb + rowBytes), d2 = F16(wb + 2 * rowBytes),
                        d3 = F16(wb + 3 * rowBytes);
                    var mw = TBlock.HasMin ? Vector128.Create(F16(wb + 2), F16(wb + rowBytes + 2),
                        F16(wb + 2 * rowBytes + 2), F16(wb + 3 * rowBytes + 2)) : default;
                    for (int r = 0; r < rows; r++)
                    {
                        var x = Activations.Row(xq, xc, xd, xs, mb + r, k);
                        Vector128<sbyte> ql = Vector128.Load(x.Q + b * 32), qh = Vector128.Load(x.Q + b * 32 + 16);
                        Vector128<int> cl = default, ch = default;
                        if (TBlock.Offset != 0)
                        {
                            cl = Vector128.Load(x.C + b * 8) >> shift;
                            ch = Vector128.Load(x.C + b * 8 + 4) >> shift;
                        }
                        float dx = x.D[b];
                        float* a = acc + r * 36;
                        if (typeof(TBlock) == typeof(Q4_0Block))
                        {
                            // one chain per output in lane 0, as Portable (the other lanes stay 0)
                            Chain(a, ByteDot128.Add(cl, w0, ql) + ByteDot128.Add(ch, h0, qh), d0 * dx);
                            Chain(a + 8, ByteDot128.Add(cl, w1, ql) + ByteDot128.Add(ch, h1, qh), d1 * dx);
                            Chain(a + 16, ByteDot128.Add(cl, w2, ql) + ByteDot128.Add(ch, h2, qh), d2 * dx);
                            Chain(a + 24, ByteDot128.Add(cl, w3, ql) + ByteDot128.Add(ch, h3, qh), d3 * dx);
                            continue;
                        }
                        Lanes(a, ByteDot128.Add(cl, w0, ql), ByteDot128.Add(ch, h0, qh), d0 * dx);
                        Lanes(a + 8, ByteDot128.Add(cl, w1, ql), ByteDot128.Add(ch, h1, qh), d1 * dx);
                        Lanes(a + 16, ByteDot128.Add(cl, w2, ql), ByteDot128.Add(ch, h2, qh), d2 * dx);
                        Lanes(a + 24, ByteDot128.Add(cl, w3, ql), ByteDot128.Add(ch, h3, qh), d3 * dx);
                        if (TBlock.HasMin) (Vector128.Load(a + 32) + mw * Vector128.Create(x.S[b])).Store(a + 32);
                    }
                }
                for (int r = 0; r < rows; r++)
                    for (int i = 0; i < 4; i++)
                    {
                        float* a = acc + r * 36;
                        float sum = Simd.HorizontalSum8(Vector128.Load(a + 8 * i), Vector128.Load(a + 8 * i + 4));
                        if (TBlock.HasMin) sum += a[32 + i];
                        y[(long)(mb + r) * ldy + n + i] = sum + (bias == null ? 0 : bias[n + i]);
                    }
            }
        }
        if (tiles < n1) Portable<TBlock>(w, xq, xd, xs, y, bias, m, k, ldy, tiles, n1);
    }

    /// <summary>a[0..8) += d × lanes 0-3 and 4-7, multiplied and added apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Lanes(float* a, Vector128<int> lo, Vector128<int> hi, float d)
    {
        var dv = Vector128.Create(d);
        (Vector128.Load(a) + Vector128.ConvertToSingle(lo) * dv).Store(a);
        (Vector128.Load(a + 4) + Vector128.ConvertToSingle(hi) * dv).Store(a + 4);
    }

    /// <summary>a[0] += d × the block's whole integer sum, multiplied and added apart (as Portable without
    /// FMA).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Chain(float* a, Vector128<int> lanes, float d) => a[0] += Vector128.Sum(lanes) * d;


    /// <summary>
    /// The same products one at a time (CPUs without SIMD, and the rows left over after the tiles of four), in the
    /// same order as ggml's AVX2 vec_dot: eight lanes of four products per block, each lane scaled into its own f32
    /// sum, the lanes added as its hsum_float_8 does, the minimum terms last. ggml's AVX2 build fuses those
    /// multiply-adds and its AVX build does not: so does this where FMA is missing.
    /// </summary>
    public static void Portable<TBlock>(byte* w, sbyte* xq, float* xd, float* xs, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1) where TBlock : struct, ILegacyBlock
    {
        int blocks = k / 32;
        long rowBytes = (long)blocks * TBlock.Bytes;
        bool fused = Avx2.IsSupported && Fma.IsSupported;
        float* lanes = stackalloc float[8];
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                new Span<float>(lanes, 8).Clear();
                float mins = 0;
                for (int b = 0; b < blocks; b++)
                {
                    byte* wb = w + n * rowBytes + b * TBlock.Bytes;
                    sbyte* xb = xq + (long)r * k + b * 32;
                    float d = F16(wb) * xd[(long)r * blocks + b];
                    if (typeof(TBlock) == typeof(Q4_0Block))
                    {
                        // one chain of whole-block sums, as ggml's repacked q4_0 gemv (see Column); its AVX
                        // build, which the 128-bit path is checked against, gives the same tokens
                        int isum = 0;
                        for (int j = 0; j < 32; j++) isum += (TBlock.Quant(wb, j) - TBlock.Offset) * xb[j];
                        lanes[0] = fused ? MathF.FusedMultiplyAdd(isum, d, lanes[0]) : lanes[0] + isum * d;
                        continue;
                    }
                    for (int l = 0; l < 8; l++)
                    {
                        int isum = 0;
                        for (int j = 4 * l; j < 4 * l + 4; j++) isum += (TBlock.Quant(wb, j) - TBlock.Offset) * xb[j];
                        lanes[l] = fused ? MathF.FusedMultiplyAdd(d, isum, lanes[l]) : lanes[l] + d * isum;
                    }
                    if (TBlock.HasMin)
                    {
                        float mw = F16(wb + 2), sx = xs[(long)r * blocks + b];
                        mins = fused ? MathF.FusedMultiplyAdd(mw, sx, mins) : mins + mw * sx;
                    }
                }
                float sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
                    + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
                y[(long)r * ldy + n] = sum + mins + (bias == null ? 0 : bias[n]);
            }
    }
}
