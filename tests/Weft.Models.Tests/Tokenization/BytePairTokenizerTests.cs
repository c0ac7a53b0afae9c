using Weft.Models.Tokenization;
using static Weft.Models.Tests.Tokenization.TestVocab;

namespace Weft.Models.Tests.Tokenization;

public class BytePairTokenizerTests
{
    public static TheoryData<string> Kinds => ["llama-bpe", "qwen2"];

    static Tokenizer Get(string kind) => kind == "qwen2" ? Qwen2 : Llama3;

    [Fact]
    public void Reads_the_special_tokens_and_flags()
    {
        var t = Llama3;
        Assert.Equal("<|begin_of_text|>", t.TokenText(t.BosId));
        Assert.Equal("<|end_of_text|>", t.TokenText(t.EosId));
        Assert.True(t.AddBos);
        Assert.False(Qwen2.AddBos);
        Assert.Null(t.UnkId);
        Assert.Equal(["<|end_of_text|>", "<|eot_id|>", "<|im_end|>"], t.EndOfGenerationIds.Select(t.TokenText)
            .Order(StringComparer.Ordinal));
        Assert.Equal(TokenType.Control, t.GetTokenType(t.FindToken("<|start_header_id|>")!.Value));
        Assert.Equal(TokenType.Normal, t.GetTokenType(t.FindToken("Ġpeople")!.Value));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Empty_text_is_just_BOS_when_the_vocabulary_adds_one(string kind)
    {
        var t = Get(kind);
        Assert.Equal(t.AddBos ? [t.BosId] : [], t.Encode(""));
        Assert.Empty(t.Encode("", addSpecial: false));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Encodes_words_with_their_leading_space(string kind)
    {
        var t = Get(kind);
        Assert.Equal(["the", "Ġpeople"], Pieces(t, t.Encode("the people", addSpecial: false)));
        Assert.Equal(["Ġ", "Ġthe"], Pieces(t, t.Encode("  the", addSpecial: false)));
        Assert.Equal(["the", "ĠĠ"], Pieces(t, t.Encode("the  ", addSpecial: false)));
        Assert.Equal(["a", "Ċ", "ĉ", "b"], Pieces(t, t.Encode("a\n\tb", addSpecial: false)));
        // é spelled as its two bytes
        Assert.Equal(["c", "a", "f", "Ã", "©"], Pieces(t, t.Encode("café", addSpecial: false)));
    }

    [Fact]
    public void Numbers_split_in_threes_for_llama3_and_in_single_digits_for_qwen2()
    {
        var llama = Llama3.Encode("1234567", addSpecial: false).Select(id => Llama3.Decode([id])).ToArray();
        Assert.Equal("1234567", string.Concat(llama));
        Assert.All(llama, piece => Assert.InRange(piece.Length, 1, 3));
        Assert.Equal(["1", "2", "3", "4", "5", "6", "7"], Qwen2.Encode("1234567", addSpecial: false)
            .Select(id => Qwen2.Decode([id])));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Control_tokens_are_matched_only_with_parse_special(string kind)
    {
        var t = Get(kind);
        int eot = t.FindToken("<|eot_id|>")!.Value;
        Assert.Equal([eot], t.Encode("<|eot_id|>", addSpecial: false, parseSpecial: true));
        int[] plain = t.Encode("<|eot_id|>", addSpecial: false);
        Assert.True(plain.Length > 1);
        Assert.Equal("<|eot_id|>", t.Decode(plain));
        Assert.Equal("", t.Decode([eot]));
        Assert.Equal("<|eot_id|>", t.Decode([eot], renderSpecial: true));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_byte_has_a_token_so_any_text_round_trips(string kind)
    {
        var t = Get(kind);
        foreach (string text in (string[])["Hello world", " leading", "trailing   ", "  many   spaces  ",
                     "\nnew\n\nlines\r\n", "\ttabs", "café naïve", "日本語 한국어 Привет",
                     "🎉👩‍💻 𝐀𝐁𝐂", "don't I'll WE'RE", "3.14159 2024", "\u0001\u007F\u00A0\u2003"])
            Assert.Equal(text, t.Decode(t.Encode(text, addSpecial: false)));
    }

    [Fact]
    public void Llama3_decoding_cleans_up_spaces_before_punctuation_and_qwen2_does_not()
    {
        // llama.cpp's clean_up_tokenization_spaces is on for llama-bpe, off for qwen2.
        Assert.Equal("a, b. c! d? e's f're g 't h 'll i'm",
            Llama3.Decode(Llama3.Encode("a , b . c ! d ? e 's f 're g 't h 'll i 'm", addSpecial: false)));
        Assert.Equal("a , b . c 's", Qwen2.Decode(Qwen2.Encode("a , b . c 's", addSpecial: false)));
    }

    [Fact]
    public void Normal_tokens_outside_the_byte_alphabet_decode_to_llama_cpp_marker()
    {
        var spec = DemoVocabulary.ByteLevelBpe(400);
        var tokens = (string[])spec.Tokens.Clone();
        tokens[300] = "a中";
        var t = Load(spec with { Tokens = tokens });
        Assert.Equal("a[UNK_BYTE_0xe4b8ada中]"u8.ToArray(), t.DecodeToken(300));
    }
}
