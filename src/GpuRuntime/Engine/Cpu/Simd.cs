using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The float kernels' operations for one vector width, <typeparamref name="TVec"/> being Vector512&lt;float&gt;,
/// Vector256&lt;float&gt; or Vector128&lt;float&gt;: the JIT compiles a kernel once per width and folds the type tests
/// away, so one kernel source serves AVX-512, AVX2 and 128-bit SIMD (SSE, AdvSimd) without a call in its loops.
/// </summary>
static unsafe class Simd<TVec> where TVec : struct
{
    public static int Count
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Unsafe.SizeOf<TVec>() / sizeof(float);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Load(float* p)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As(Vector512.Load(p));
        if (typeof(TVec) == typeof(Vector256<float>)) return As(Vector256.Load(p));
        return As(Vector128.Load(p));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(TVec v, float* p)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) Unsafe.BitCast<TVec, Vector512<float>>(v).Store(p);
        else if (typeof(TVec) == typeof(Vector256<float>)) Unsafe.BitCast<TVec, Vector256<float>>(v).Store(p);
        else Unsafe.BitCast<TVec, Vector128<float>>(v).Store(p);
    }

    /// <summary>a · b + c; fused wherever the CPU fuses (all AVX2 and Arm64 CPUs), a multiply and an add
    /// otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec MultiplyAdd(TVec a, TVec b, TVec c)
    {
        if (typeof(TVec) == typeof(Vector512<float>))
            return As(Vector512.FusedMultiplyAdd(V512(a), V512(b), V512(c)));
        if (typeof(TVec) == typeof(Vector256<float>))
            return As(Vector256.MultiplyAddEstimate(V256(a), V256(b), V256(c)));
        return As(Vector128.MultiplyAddEstimate(V128(a), V128(b), V128(c)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Multiply(TVec a, TVec b)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As(V512(a) * V512(b));
        if (typeof(TVec) == typeof(Vector256<float>)) return As(V256(a) * V256(b));
        return As(V128(a) * V128(b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Add(TVec a, TVec b)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As(V512(a) + V512(b));
        if (typeof(TVec) == typeof(Vector256<float>)) return As(V256(a) + V256(b));
        return As(V128(a) + V128(b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Broadcast(float x)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As(Vector512.Create(x));
        if (typeof(TVec) == typeof(Vector256<float>)) return As(Vector256.Create(x));
        return As(Vector128.Create(x));
    }

    /// <summary>The lanes' sum, in the order of the width's horizontal add (fixed per width).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(TVec v)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return Vector512.Sum(V512(v));
        if (typeof(TVec) == typeof(Vector256<float>)) return Vector256.Sum(V256(v));
        return Vector128.Sum(V128(v));
    }

    /// <summary>
    /// <see cref="Count"/> halves to f32, exactly, in integer lanes: exponent and mantissa shifted into place and the
    /// exponent rebiased by an add; a subnormal half (exponent 0) is given the implicit one's exponent and loses its
    /// value again by a subtraction of normal floats, which is exact. Rebiasing by a multiply by 2^112 instead took
    /// four operations, but multiplying the f32 subnormals it makes of f16 subnormals takes a microcode assist:
    /// the 0.15 % of such weights in a random f16 model (about what a trained one holds) cost a quarter of a
    /// stream's speed (8 MB of halves, one thread: 5.2 against 7.2 GB/s; 7.8 with none). Weights hold no inf/NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec LoadHalf(ushort* h)
    {
        const int magnitude = 0x7FFF, one = 1 << 23, rebias = 112 << 23, sign = int.MinValue;
        if (typeof(TVec) == typeof(Vector512<float>))
        {
            var x = Widen512(h);
            var mag = (x & Vector512.Create(magnitude)) << 13;
            var tiny = Vector512.LessThan(mag, Vector512.Create(one));
            var f = (mag + Vector512.Create(rebias) + (tiny & Vector512.Create(one))).AsSingle()
                - (tiny & Vector512.Create(rebias + one)).AsSingle();
            return As((f.AsInt32() | (x & Vector512.Create(sign))).AsSingle());
        }
        if (typeof(TVec) == typeof(Vector256<float>))
        {
            var x = Widen256(h);
            var mag = (x & Vector256.Create(magnitude)) << 13;
            var tiny = Vector256.LessThan(mag, Vector256.Create(one));
            var f = (mag + Vector256.Create(rebias) + (tiny & Vector256.Create(one))).AsSingle()
                - (tiny & Vector256.Create(rebias + one)).AsSingle();
            return As((f.AsInt32() | (x & Vector256.Create(sign))).AsSingle());
        }
        {
            var x = Widen128(h);
            var mag = (x & Vector128.Create(magnitude)) << 13;
            var tiny = Vector128.LessThan(mag, Vector128.Create(one));
            var f = (mag + Vector128.Create(rebias) + (tiny & Vector128.Create(one))).AsSingle()
                - (tiny & Vector128.Create(rebias + one)).AsSingle();
            return As((f.AsInt32() | (x & Vector128.Create(sign))).AsSingle());
        }
    }

    /// <summary>
    /// <see cref="Count"/> halves stored as 2^10 times their value (<see cref="ScaledF16Format"/>) to f32, exactly, in
    /// <see cref="Shifted"/>'s three operations: no stored half is subnormal, so no f32 there is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec LoadScaledHalf(ushort* h) => Shifted(h, 5.0706024e30f); // 2^102: 2^112 less the 2^10

    /// <summary>
    /// <see cref="Count"/> halves to f32, exactly, in <see cref="Shifted"/>'s three operations, for halves that are
    /// almost never subnormal: the KV cache (activations of magnitude about one, rounded), not weights (about 0.2 %
    /// of an f16 model's are; see <see cref="LoadHalf"/>). A vector holding a subnormal takes a microcode assist and is
    /// still exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec LoadCachedHalf(ushort* h) => Shifted(h, 5.1922969e33f); // 2^112

    /// <summary>Sign, exponent and mantissa of each half shifted into an f32 (the widening's copies of the sign masked
    /// out), the exponent then rebiased by a multiply; an f32 subnormal from a subnormal half takes a microcode
    /// assist in that multiply.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TVec Shifted(ushort* h, float rebias)
    {
        const int fields = unchecked((int)0x8FFFE000);
        if (typeof(TVec) == typeof(Vector512<float>))
            return As(((Widen512(h) << 13) & Vector512.Create(fields)).AsSingle() * Vector512.Create(rebias));
        if (typeof(TVec) == typeof(Vector256<float>))
            return As(((Widen256(h) << 13) & Vector256.Create(fields)).AsSingle() * Vector256.Create(rebias));
        return As(((Widen128(h) << 13) & Vector128.Create(fields)).AsSingle() * Vector128.Create(rebias));
    }

    /// <summary>v with its lanes from <paramref name="n"/> on set to zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec FirstLanes(TVec v, int n)
    {
        if (typeof(TVec) == typeof(Vector512<float>))
            return As(Vector512.ConditionalSelect(Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(n))
                .AsSingle(), V512(v), default));
        if (typeof(TVec) == typeof(Vector256<float>))
            return As(Vector256.ConditionalSelect(Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(n))
                .AsSingle(), V256(v), default));
        return As(Vector128.ConditionalSelect(Vector128.LessThan(Vector128<int>.Indices, Vector128.Create(n))
            .AsSingle(), V128(v), default));
    }

    /// <summary><see cref="Count"/> bf16 values to f32: the upper half of an f32, so the shift drops the sign
    /// extension.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec LoadBf16(ushort* h)
    {
        if (typeof(TVec) == typeof(Vector512<float>)) return As((Widen512(h) << 16).AsSingle());
        if (typeof(TVec) == typeof(Vector256<float>)) return As((Widen256(h) << 16).AsSingle());
        return As((Widen128(h) << 16).AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Widen512(ushort* h) => Avx512F.IsSupported
        ? Avx512F.ConvertToVector512Int32(Vector256.Load((short*)h))
        : Vector512.WidenLower(Vector256.Load((short*)h).ToVector512());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Widen256(ushort* h) => Avx2.IsSupported
        ? Avx2.ConvertToVector256Int32((short*)h)
        : Vector256.WidenLower(Vector128.Load((short*)h).ToVector256());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<int> Widen128(ushort* h)
    {
        if (Sse41.IsSupported) return Sse41.ConvertToVector128Int32((short*)h);
        if (AdvSimd.IsSupported) return AdvSimd.SignExtendWideningLower(Vector64.Load((short*)h));
        return Vector128.WidenLower(Vector128.CreateScalar(*(long*)h).AsInt16());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static TVec As<T>(T v) where T : struct => Unsafe.BitCast<T, TVec>(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> V512(TVec v) => Unsafe.BitCast<TVec, Vector512<float>>(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> V256(TVec v) => Unsafe.BitCast<TVec, Vector256<float>>(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> V128(TVec v) => Unsafe.BitCast<TVec, Vector128<float>>(v);
}

static unsafe class Simd
{
    /// <summary>ggml's hsum_float_8: the halves added, then lanes 0+2 and 1+3, then those two.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum8(Vector256<float> v) => HorizontalSum8(v.GetLower(), v.GetUpper());

    /// <summary><see cref="HorizontalSum8(Vector256{float})"/> of eight lanes held as 0-3 and 4-7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum8(Vector128<float> lo, Vector128<float> hi)
    {
        var h = lo + hi;
        return (h[0] + h[2]) + (h[1] + h[3]);
    }

    /// <summary>Asks for the cache line at <paramref name="p"/> (x86 only: .NET has no Arm prefetch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(void* p)
    {
        if (Sse.IsSupported) Sse.Prefetch0(p);
    }
}
