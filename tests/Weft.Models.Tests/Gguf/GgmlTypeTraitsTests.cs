using Weft.Models.Gguf;

namespace Weft.Models.Tests.Gguf;

public sealed class GgmlTypeTraitsTests
{
    /// <summary>ggml's type_traits (ggml.c): name, elements per block, bytes per block.</summary>
    public static TheoryData<GgmlType, string, int, int> Ggml => new()
    {
        { GgmlType.F32, "f32", 1, 4 }, { GgmlType.F16, "f16", 1, 2 }, { GgmlType.BF16, "bf16", 1, 2 },
        { GgmlType.Q4_0, "q4_0", 32, 18 }, { GgmlType.Q4_1, "q4_1", 32, 20 }, { GgmlType.Q5_0, "q5_0", 32, 22 },
        { GgmlType.Q5_1, "q5_1", 32, 24 }, { GgmlType.Q8_0, "q8_0", 32, 34 }, { GgmlType.Q8_1, "q8_1", 32, 36 },
        { GgmlType.Q2_K, "q2_K", 256, 84 }, { GgmlType.Q3_K, "q3_K", 256, 110 }, { GgmlType.Q4_K, "q4_K", 256, 144 },
        { GgmlType.Q5_K, "q5_K", 256, 176 }, { GgmlType.Q6_K, "q6_K", 256, 210 }, { GgmlType.Q8_K, "q8_K", 256, 292 },
        { GgmlType.IQ4_NL, "iq4_nl", 32, 18 }, { GgmlType.IQ4_XS, "iq4_xs", 256, 136 },
        { GgmlType.I8, "i8", 1, 1 }, { GgmlType.I16, "i16", 1, 2 }, { GgmlType.I32, "i32", 1, 4 },
        { GgmlType.I64, "i64", 1, 8 }, { GgmlType.F64, "f64", 1, 8 },
    };

    [Theory]
    [MemberData(nameof(Ggml))]
    public void Each_type_has_ggml_s_name_and_block_layout(GgmlType type, string name, int blockSize, int blockBytes)
    {
        var t = GgmlTypeTraits.Of(type);
        Assert.Equal((name, blockSize, blockBytes), (t.Name, t.BlockSize, t.BlockBytes));
        Assert.Equal(3L * blockBytes, t.RowBytes(3L * blockSize));
    }

    [Fact]
    public void Every_type_number_the_enum_names_has_traits_and_no_other_does()
    {
        Assert.Equal(Enum.GetValues<GgmlType>().Order(), GgmlTypeTraits.All.Select(t => t.Type).Order());
        Assert.Null(GgmlTypeTraits.Find((GgmlType)4)); // q4_2, removed from ggml
        Assert.Throws<ArgumentException>(() => GgmlTypeTraits.Of((GgmlType)99));
    }

    [Fact]
    public void A_row_that_is_not_whole_blocks_has_no_size()
    {
        var e = Assert.Throws<ArgumentException>(() => GgmlTypeTraits.RowBytes(GgmlType.Q4_K, 300));
        Assert.Equal("300 elements is not a whole number of Q4_K blocks of 256", e.Message);
    }

    [Fact]
    public void The_matrix_types_the_loader_accepts_are_those_with_a_reference_dequantizer()
    {
        Assert.Equal(new[] { GgmlType.F32, GgmlType.F16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
            GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.BF16,
            GgmlType.IQ4_NL, GgmlType.IQ4_XS }.Order(),
            ModelWeights.MatrixTypes.Order());
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q4_0)]
    public void Quantizing_through_the_table_and_back_keeps_values_each_format_holds_exactly(GgmlType type)
    {
        // quarters from -2 to 1.75: q4_0's sixteen levels when every block's extreme is -2 (d = 0.25)
        var x = Enumerable.Range(0, 64).Select(i => (i % 16 - 8) / 4f).ToArray();
        Assert.Equal(x, GgmlQuant.Dequantize(type, GgmlQuant.Quantize(type, x), x.Length));
    }
}
