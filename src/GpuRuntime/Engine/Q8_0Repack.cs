using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// A matrix as q8_0 split into its quants and its f32 block scales, for the cpu backend: the file's own blocks for
/// q8_0; for q4_0/q4_K/q6_K (whose values q8_0 holds almost exactly) each row dequantized and quantized again with
/// ggml's reference code, once at load.
/// </summary>
static unsafe class Q8_0Repack
{
    /// <param name="flip">XORed into every quant (0x80 stores them offset by 128, as the CPU's VNNI kernels read
    /// them).</param>
    public static void Split(GgmlType source, byte* src, long rows, long cols, byte* quants, float* scales, byte flip)
    {
        var q8 = GgmlTypeTraits.Q8_0;
        var traits = GgmlTypeTraits.Of(source);
        int bs = q8.BlockSize, bb = q8.BlockBytes, srcRowBytes = (int)traits.RowBytes(cols);
        long blocks = cols / bs;
        var row = source == GgmlType.Q8_0 ? null : new float[cols];
        var requantized = row is null ? null : new byte[q8.RowBytes(cols)];
        for (long r = 0; r < rows; r++)
        {
            var blocksOfRow = new ReadOnlySpan<byte>(src + r * srcRowBytes, srcRowBytes);
            if (row is not null)
            {
                traits.Dequantize!(blocksOfRow, row);
                q8.Quantize!(row, requantized);
                blocksOfRow = requantized;
            }
            for (long b = 0; b < blocks; b++)
            {
                var block = blocksOfRow.Slice((int)(b * bb), bb);
                scales[r * blocks + b] = (float)MemoryMarshal.Read<Half>(block);
                byte* q = quants + r * cols + b * bs;
                for (int j = 0; j < bs; j++) q[j] = (byte)(block[2 + j] ^ flip);
            }
        }
    }
}
