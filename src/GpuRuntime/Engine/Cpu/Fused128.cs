using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// a·b + c rounded once, for the 128-bit kernels' f32 chains: FMA's instruction where the CPU has one (all Arm64, x64
/// with FMA); else .NET falls back to a call per lane, which made the 128-bit q4_K_M decode step 2.6x slower than with
/// an unfused multiply-add (180 against 69 ms here), so the lanes go through doubles instead.
/// </summary>
static class Fused128
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c)
    {
        if (Fma.IsSupported || AdvSimd.IsSupported) return Vector128.FusedMultiplyAdd(a, b, c);
        return Emulated(a, b, c);
    }

    /// <summary>
    /// The product of two floats is exact in a double; the sum is rounded to odd (round to nearest, then to the odd
    /// neighbour if inexact and even, the error from Knuth's TwoSum), and a double rounded to odd then rounded to
    /// float is the correctly rounded sum, since 53 ≥ 2·24 + 2 (Boldo and Melquiond, 2008).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Emulated(Vector128<float> a, Vector128<float> b, Vector128<float> c)
    {
        Vector128<double> al = Vector128.WidenLower(a), bl = Vector128.WidenLower(b), cl = Vector128.WidenLower(c),
            ah = Vector128.WidenUpper(a), bh = Vector128.WidenUpper(b), ch = Vector128.WidenUpper(c);
        Vector128<double> lo = al * bl + cl, hi = ah * bh + ch;
        // Float midpoints are doubles, so rounding the exact sum to a double never carries it across one: the double
        // rounds to the same float unless it landed on a midpoint itself. (Below float's normal range the sum is
        // exact in a double.) Those rare lanes take the rounding to odd; the rest skip its eleven operations, which
        // were a third of the 128-bit q6_K kernel's time at batch 16.
        if ((OnMidpoint(lo) | OnMidpoint(hi)) == Vector128<long>.Zero) return Vector128.Narrow(lo, hi);
        return RoundedToOdd(al, bl, cl, ah, bh, ch);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static Vector128<float> RoundedToOdd(Vector128<double> al, Vector128<double> bl, Vector128<double> cl,
        Vector128<double> ah, Vector128<double> bh, Vector128<double> ch) =>
        Vector128.Narrow(ToOdd(al, bl, cl), ToOdd(ah, bh, ch));

    /// <summary>Lanes exactly halfway between two floats: the 29 bits below a float's mantissa 1 then
    /// zeros.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<long> OnMidpoint(Vector128<double> s) =>
        Vector128.Equals(s.AsInt64() & Vector128.Create(0x1FFFFFFFL), Vector128.Create(0x10000000L));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<double> ToOdd(Vector128<double> a, Vector128<double> b, Vector128<double> c)
    {
        var p = a * b;
        var s = p + c;
        var bb = s - p;
        var err = (p - (s - bb)) + (c - bb);
        var bits = s.AsInt64();
        var inexactEven = ~Vector128.Equals(err, Vector128<double>.Zero).AsInt64()
            & Vector128.Equals(bits & Vector128<long>.One, Vector128<long>.Zero);
        // one step away from zero when the error has s's sign, towards it otherwise
        var step = ((bits ^ err.AsInt64()) >> 63) | Vector128<long>.One;
        return (bits + (step & inexactEven)).AsDouble();
    }
}
