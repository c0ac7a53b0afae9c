using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// Vectorised f16/bf16 → f32 conversion. TensorPrimitives.ConvertToSingle(Half) runs at scalar speed (~4.5 GB/s
/// measured here), too slow for a loop that streams every weight each step; this widens the bits and rescales:
/// shifting the 15 magnitude bits into an f32 and multiplying by 2^112 re-biases the exponent, exact for normal and
/// subnormal halves alike (weights hold no inf/NaN).
/// </summary>
static class HalfMath
{
    static readonly Vector512<float> Rebias = Vector512.Create(5.192297e33f); // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Load32(ushort* h, out Vector512<float> lo, out Vector512<float> hi)
    {
        var (a, b) = Vector512.Widen(Vector512.Load(h));
        lo = Convert(a);
        hi = Convert(b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Convert(Vector512<uint> u)
    {
        var sign = (u & Vector512.Create(0x8000u)) << 16;
        var mag = ((u & Vector512.Create(0x7FFFu)) << 13).AsSingle() * Rebias;
        return (mag.AsUInt32() | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void LoadBf16x32(ushort* h, out Vector512<float> lo, out Vector512<float> hi)
    {
        var (a, b) = Vector512.Widen(Vector512.Load(h));
        lo = (a << 16).AsSingle();
        hi = (b << 16).AsSingle();
    }

    /// <summary>Converts n halves (any n) to f32.</summary>
    public static unsafe void ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Load32(src + i, out var lo, out var hi);
            lo.Store(dst + i);
            hi.Store(dst + i + 16);
        }
        for (; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
    }

    public static unsafe void Bf16ToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            LoadBf16x32(src + i, out var lo, out var hi);
            lo.Store(dst + i);
            hi.Store(dst + i + 16);
        }
        for (; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }
}
