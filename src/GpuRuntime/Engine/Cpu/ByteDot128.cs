using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The integer core of the 128-bit quantized kernels: int32 lanes of sums of four byte products (lane L: bytes
/// 4L..4L+3), the same lanes as the 256-bit kernels' halves. SSSE3's pmaddubsw then pmaddwd on x64, sdot on Arm64
/// with the dot-product extension, else a widening fallback; the sums are exact integers, so every branch gives the
/// same lanes.
/// </summary>
static unsafe class ByteDot128
{
    /// <summary>
    /// acc + lanes of Σ u·s, for u ≤ 127: sdot reads u as signed, and pmaddubsw's int16 pairs stay below
    /// 2·127·128 &lt; 32768, so they never saturate.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Add(Vector128<int> acc, Vector128<byte> u, Vector128<sbyte> s)
    {
        if (Ssse3.IsSupported)
            return acc + Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(u, s), Vector128<short>.One);
        if (Dp.IsSupported) return Dp.DotProduct(acc, u.AsSByte(), s);
        return AddWidening(acc, u, s);
    }

    /// <summary><see cref="Add"/> for 128-bit SIMD with neither SSSE3 nor sdot: each byte of a lane shifted into
    /// place and sign- or zero-extended to 32 bits.</summary>
    public static Vector128<int> AddWidening(Vector128<int> acc, Vector128<byte> u, Vector128<sbyte> s)
    {
        Vector128<int> ui = u.AsInt32(), si = s.AsInt32();
        for (int i = 0; i < 4; i++) acc += ((ui >> (8 * i)) & Vector128.Create(0xFF)) * ((si << (24 - 8 * i)) >> 24);
        return acc;
    }

    /// <summary>acc + scale × lanes of Σ u·s (a K-quant sub-block's 6- or 8-bit scale), u ≤ 127.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddScaled(Vector128<int> acc, Vector128<byte> u, Vector128<sbyte> s, short scale) =>
        AddScaled(acc, u, s, Vector128.Create(scale));

    /// <summary><see cref="AddScaled(Vector128{int}, Vector128{byte}, Vector128{sbyte}, short)"/> with the scale
    /// already in every 16-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddScaled(Vector128<int> acc, Vector128<byte> u, Vector128<sbyte> s,
        Vector128<short> scale)
    {
        if (Ssse3.IsSupported) return acc + Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(u, s), scale);
        return acc + Add(default, u, s) * (scale.AsInt32() >> 16);
    }

    /// <summary>
    /// acc + scale × lanes of Σ u·s over two 16-byte pairs sharing a scale (a q4_K sub-block's two halves), u ≤ 15:
    /// on x64 the byte-pair sums of both add as 16 bits (|sum| ≤ 4·15·128) before the one multiply by the scale,
    /// three multiplies for 32 products instead of four.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> AddScaled2(Vector128<int> acc, Vector128<byte> u0, Vector128<byte> u1, sbyte* s,
        Vector128<short> scale)
    {
        if (Ssse3.IsSupported)
            return acc + Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(u0, Vector128.Load(s))
                + Ssse3.MultiplyAddAdjacent(u1, Vector128.Load(s + 16)), scale);
        return acc + Add(Add(default, u0, Vector128.Load(s)), u1, Vector128.Load(s + 16)) * (scale.AsInt32() >> 16);
    }

    /// <summary>The lane sums of four vectors, in order (exact; the order of the adds does not matter).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Sum4(Vector128<int> a, Vector128<int> b, Vector128<int> c, Vector128<int> d)
    {
        if (Ssse3.IsSupported)
            return Ssse3.HorizontalAdd(Ssse3.HorizontalAdd(a, b), Ssse3.HorizontalAdd(c, d));
        if (AdvSimd.Arm64.IsSupported)
            return AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(a, b), AdvSimd.Arm64.AddPairwise(c, d));
        return Vector128.Create(Vector128.Sum(a), Vector128.Sum(b), Vector128.Sum(c), Vector128.Sum(d));
    }

    /// <summary>Lane i = a[2i]·b[2i] + a[2i+1]·b[2i+1] (pmaddwd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Pairs(Vector128<short> a, Vector128<short> b)
    {
        return Sse2.IsSupported ? Sse2.MultiplyAddAdjacent(a, b) : PairsWidening(a, b);
    }

    /// <summary><see cref="Pairs"/> without SSE2: the even and odd halves of each lane sign-extended apart.</summary>
    public static Vector128<int> PairsWidening(Vector128<short> a, Vector128<short> b)
    {
        Vector128<int> ai = a.AsInt32(), bi = b.AsInt32();
        return ((ai << 16) >> 16) * ((bi << 16) >> 16) + (ai >> 16) * (bi >> 16);
    }
}
