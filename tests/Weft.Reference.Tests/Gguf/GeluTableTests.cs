using Weft.GpuRuntime.Engine;

namespace Weft.Reference.Tests.Gguf;

/// <summary>Gemma's GeGLU against the table ggml's CPU backend looks GELU up in.</summary>
public sealed class GeluTableTests
{
    [Fact]
    public void GeGlu_rounds_as_ggml_s_gelu_table_for_every_f16_input()
    {
        var table = GgmlNative.GeluTable();
        var mismatches = new List<string>();
        for (int i = 0; i < table.Length; i++)
        {
            float x = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            // ggml passes inputs at or beyond ±10 by the table; and the table of a NaN is no number to compare
            if (!float.IsFinite(x) || MathF.Abs(x) >= 10f) continue;
            float expected = (float)BitConverter.UInt16BitsToHalf(table[i]);
            float ours = LlamaMath.GeGlu(x, 1f);
            if (BitConverter.SingleToInt32Bits(ours) != BitConverter.SingleToInt32Bits(expected))
                mismatches.Add($"{x}: ggml {expected}, ours {ours}");
        }
        Assert.True(mismatches.Count == 0,
            $"{mismatches.Count} inputs differ: {string.Join("; ", mismatches.Take(10))}");
    }
}
