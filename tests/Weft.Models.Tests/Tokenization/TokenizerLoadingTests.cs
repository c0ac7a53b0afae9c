using Weft.Models.Gguf;
using Weft.Models.Tokenization;
using static Weft.Models.Tests.Tokenization.TestVocab;

namespace Weft.Models.Tests.Tokenization;

public class TokenizerLoadingTests
{
    static readonly VocabularySpec SpmSpec = DemoVocabulary.SentencePiece(400);
    static readonly VocabularySpec BpeSpec = DemoVocabulary.ByteLevelBpe(400);

    static void AssertRejected(VocabularySpec spec, string key, GgufValue? value, string expected)
    {
        var e = Assert.Throws<GgufFormatException>(() => LoadWith(spec, key, value));
        Assert.Contains(expected, e.Message);
        Assert.EndsWith(".gguf", e.FilePath);
    }

    [Fact]
    public void Missing_required_keys_are_format_errors()
    {
        AssertRejected(SpmSpec, "tokenizer.ggml.model", null, "tokenizer.ggml.model");
        AssertRejected(SpmSpec, "tokenizer.ggml.tokens", null, "tokenizer.ggml.tokens");
        AssertRejected(BpeSpec, "tokenizer.ggml.merges", null, "tokenizer.ggml.merges");
    }

    [Fact]
    public void Unsupported_tokenizers_are_format_errors()
    {
        AssertRejected(SpmSpec, "tokenizer.ggml.model", GgufValue.Of("bert"), "'bert' is not supported");
        AssertRejected(BpeSpec, "tokenizer.ggml.pre", GgufValue.Of("no-such-pre"),
            "pre-tokenizer 'no-such-pre' is not supported");
    }

    [Fact]
    public void Mistyped_values_are_format_errors()
    {
        AssertRejected(SpmSpec, "tokenizer.ggml.tokens", GgufValue.Of(3u), "tokenizer.ggml.tokens");
        AssertRejected(SpmSpec, "tokenizer.ggml.scores", GgufValue.Of(["x"]), "tokenizer.ggml.scores");
        AssertRejected(SpmSpec, "tokenizer.ggml.bos_token_id", GgufValue.Of("one"), "tokenizer.ggml.bos_token_id");
        AssertRejected(SpmSpec, "tokenizer.ggml.add_bos_token", GgufValue.Of(1u), "tokenizer.ggml.add_bos_token");
    }

    [Fact]
    public void Arrays_of_different_lengths_are_format_errors()
    {
        AssertRejected(SpmSpec, "tokenizer.ggml.scores", GgufValue.Of(new float[399]), "399 entries for 400 tokens");
        AssertRejected(SpmSpec, "tokenizer.ggml.token_type", GgufValue.Of(new int[401]), "401 entries for 400 tokens");
    }

    [Fact]
    public void Special_token_ids_outside_the_vocabulary_are_format_errors()
    {
        AssertRejected(SpmSpec, "tokenizer.ggml.bos_token_id", GgufValue.Of(400u),
            "bos_token_id = 400 is outside the vocabulary of 400 tokens");
        AssertRejected(SpmSpec, "tokenizer.ggml.eos_token_id", GgufValue.Of(-1), "eos_token_id = -1");
        AssertRejected(BpeSpec, "tokenizer.ggml.padding_token_id", GgufValue.Of(1000u), "padding_token_id = 1000");
    }

    [Fact]
    public void Undefined_and_unknown_token_types_load_as_llama_cpp_reads_them()
    {
        var types = (int[])SpmSpec.TokenTypes.Clone();
        types[300] = 0;
        types[301] = 9;
        var tokenizer = LoadWith(SpmSpec, "tokenizer.ggml.token_type", GgufValue.Of(types));
        Assert.Equal(SpmSpec.Tokens.Length, tokenizer.VocabSize);
    }

    [Fact]
    public void Bad_token_tables_are_format_errors()
    {
        var tokens = (string[])SpmSpec.Tokens.Clone();
        tokens[300] = tokens[299];
        AssertRejected(SpmSpec, "tokenizer.ggml.tokens", GgufValue.Of(tokens),
            $"duplicate token '{tokens[299]}' has ids 299 and 300");

        var types = (int[])SpmSpec.TokenTypes.Clone();
        types[300] = (int)TokenType.Byte;
        AssertRejected(SpmSpec, "tokenizer.ggml.token_type", GgufValue.Of(types), "byte token 300");

        AssertRejected(SpmSpec, "tokenizer.ggml.tokens", GgufValue.Of(Array.Empty<string>()),
            "tokenizer.ggml.tokens is empty");
    }

    [Fact]
    public void Absent_optional_keys_take_llama_cpp_defaults()
    {
        // SentencePiece: BOS 1, EOS 2, <unk> 0, BOS added; every token normal without token types.
        var t = LoadWith(SpmSpec with { AddBos = false }, "tokenizer.ggml.add_bos_token", null);
        Assert.True(t.AddBos);
        t = LoadWith(SpmSpec, "tokenizer.ggml.token_type", null);
        Assert.Equal(TokenType.Normal, t.GetTokenType(3));
        Assert.Equal("<0x00>"u8.ToArray(), t.DecodeToken(3)); // a byte token that is not typed Byte is just text

        // Byte-level BPE: no BOS unless the pre-tokenizer adds one (llama-bpe does), no space prefix.
        t = LoadWith(BpeSpec, "tokenizer.ggml.add_bos_token", null);
        Assert.True(t.AddBos);
        t = LoadWith(BpeSpec with { Pre = "qwen2" }, "tokenizer.ggml.add_bos_token", null);
        Assert.False(t.AddBos);
        Assert.Equal("x y", t.Decode(t.Encode("x y")));
    }

    [Fact]
    public void Tokens_named_like_end_of_turn_markers_end_generation_and_become_control_tokens()
    {
        var tokens = (string[])BpeSpec.Tokens.Clone();
        tokens[300] = "<|endoftext|>";
        tokens[301] = "<|fim_pad|>";
        tokens[302] = "<|fim_prefix|>";
        var t = Load(BpeSpec with { Tokens = tokens });
        Assert.Contains(300, t.EndOfGenerationIds);
        Assert.Contains(301, t.EndOfGenerationIds);
        Assert.DoesNotContain(302, t.EndOfGenerationIds);
        Assert.All([300, 301, 302], id => Assert.Equal(TokenType.Control, t.GetTokenType(id)));
        Assert.Empty(t.DecodeToken(300));
    }

    [Fact]
    public void An_explicit_end_of_turn_id_ends_generation()
    {
        var t = LoadWith(SpmSpec, "tokenizer.ggml.eot_token_id", GgufValue.Of(300u));
        Assert.Equal([2, 300], t.EndOfGenerationIds.Order());
    }
}
