using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>A matrix uploaded as the file stores it (its bytes as 32-bit words, so the device holds no more than the
/// file: at most the 3 bytes that round the last word up) and read in place by <typeparamref name="TW"/>.</summary>
sealed class StoredFormat<TW>(GgmlType type, InputPrep prep, Func<ArrayView<uint>, int, TW> rows) : IlgpuWeightFormat
    where TW : struct, IWeightRows
{
    public override GgmlType Stored => type;
    public override InputPrep Prep => prep;

    public override unsafe IlgpuWeight Upload(Accelerator accelerator, GgufTensorInfo t, byte* src)
    {
        long whole = t.ByteSize / 4, tail = t.ByteSize - whole * 4;
        var data = accelerator.Allocate1D<uint>(whole + (tail > 0 ? 1 : 0));
        data.View.AsContiguous().SubView(0, whole).CopyFromCPU(ref *(uint*)src, whole);
        if (tail > 0)
        {
            // q4_0's 18-byte blocks, say, in an odd count: the file may end right after them, so no word read there
            uint last = 0;
            Buffer.MemoryCopy(src + whole * 4, &last, sizeof(uint), tail);
            data.View.AsContiguous().SubView(whole, 1).CopyFromCPU(ref last, 1);
        }
        return new IlgpuWeight(t, this, data, null);
    }

    public override FormatKernels CreateKernels(Accelerator accelerator) =>
        new FormatKernels<TW>(accelerator, w => rows(w.Data!.View.AsContiguous(), w.Columns));
}

/// <summary>
/// Reads from a matrix held as the file's bytes in 32-bit words. ggml's blocks are 18 to 210 bytes, so their fields
/// start at any byte; the loads stay 32-bit and aligned, and shifts put the bytes together.
/// </summary>
static class FileBytes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Byte(ArrayView<uint> words, long at) => words[at >> 2] >> (int)(at & 3) * 8 & 0xFFu;

    /// <summary>The f16 at an even offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(ArrayView<uint> words, long at) =>
        DeviceMath.HalfToFloat(words[at >> 2] >> (int)(at & 2) * 8 & 0xFFFFu);

    /// <summary>Eight bytes from any offset: two words, or three where they straddle a word boundary.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static U2 Bytes8(ArrayView<uint> words, long at)
    {
        long i = at >> 2;
        int s = (int)(at & 3) * 8;
        uint a = words[i], b = words[i + 1];
        if (s == 0) return new U2 { X = a, Y = b };
        uint c = words[i + 2];
        return new U2 { X = a >> s | b << (32 - s), Y = b >> s | c << (32 - s) };
    }

    /// <summary>Byte i of eight.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint At(in U2 q, int i) => (i < 4 ? q.X : q.Y) >> (i & 3) * 8 & 0xFFu;

    /// <summary>Bit <paramref name="bit"/> of each of eight bytes, as bits 0-7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint BitPlane(in U2 h, int bit)
    {
        uint x = h.X >> bit & 0x01010101u, y = h.Y >> bit & 0x01010101u;
        return (x | x >> 7 | x >> 14 | x >> 21 | y << 4 | y >> 3 | y >> 10 | y >> 17) & 0xFFu;
    }

    /// <summary>scale · q + offset for the eight 4-bit values at bit <paramref name="shift"/> of eight bytes, each
    /// with bit i of <paramref name="fifth"/> as its fifth bit (16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Float8 Nibbles(in U2 q, int shift, uint fifth, float scale, float offset) => new()
    {
        V0 = scale * Nibble(q, 0, shift, fifth) + offset, V1 = scale * Nibble(q, 1, shift, fifth) + offset,
        V2 = scale * Nibble(q, 2, shift, fifth) + offset, V3 = scale * Nibble(q, 3, shift, fifth) + offset,
        V4 = scale * Nibble(q, 4, shift, fifth) + offset, V5 = scale * Nibble(q, 5, shift, fifth) + offset,
        V6 = scale * Nibble(q, 6, shift, fifth) + offset, V7 = scale * Nibble(q, 7, shift, fifth) + offset,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Nibble(in U2 q, int i, int shift, uint fifth) =>
        (int)(At(q, i) >> shift & 0xFu | (fifth >> i & 1u) << 4);
}
