using Weft.Models.Tokenization;
using static Weft.Models.Tests.Tokenization.TestVocab;

namespace Weft.Models.Tests.Tokenization;

public class SentencePieceTokenizerTests
{
    static readonly Tokenizer T = Spm;

    [Fact]
    public void Reads_the_special_tokens_and_flags()
    {
        Assert.Equal(2048, T.VocabSize);
        Assert.Equal((1, 2, 0, (int?)null, true), (T.BosId, T.EosId, T.UnkId, T.PadId, T.AddBos));
        Assert.Equal([2], T.EndOfGenerationIds);
        Assert.Equal(TokenType.Unknown, T.GetTokenType(0));
        Assert.Equal(TokenType.Control, T.GetTokenType(1));
        Assert.Equal(TokenType.Byte, T.GetTokenType(3 + 0x41));
        Assert.Equal("<0x41>", T.TokenText(3 + 0x41));
        int the = Assert.NotNull(T.FindToken("▁the"));
        Assert.Equal(TokenType.Normal, T.GetTokenType(the));
        Assert.Null(T.FindToken("▁definitely-not-a-piece"));
    }

    [Fact]
    public void Empty_text_is_just_BOS_or_nothing()
    {
        Assert.Equal([1], T.Encode(""));
        Assert.Empty(T.Encode("", addSpecial: false));
    }

    [Theory]
    [InlineData("the people", new[] { "▁the", "▁people" })]
    [InlineData("  the", new[] { "▁", "▁", "▁the" })] // the space prefix is added even before existing spaces
    [InlineData("the  ", new[] { "▁the", "▁", "▁" })]
    [InlineData("a\n\tb", new[] { "▁a", "<0x0A>", "<0x09>", "b" })] // no piece for newline or tab: byte fallback
    // é is not in the vocabulary: its UTF-8 bytes
    [InlineData("café", new[] { "▁c", "a", "f", "<0xC3>", "<0xA9>" })]
    // outside the BMP: four bytes, one character
    [InlineData("🎉", new[] { "▁", "<0xF0>", "<0x9F>", "<0x8E>", "<0x89>" })]
    [InlineData("日本", new[] { "▁", "<0xE6>", "<0x97>", "<0xA5>", "<0xE6>", "<0x9C>", "<0xAC>" })]
    public void Encodes_with_space_prefix_and_byte_fallback(string text, string[] pieces)
    {
        Assert.Equal(pieces, Pieces(T, T.Encode(text, addSpecial: false)));
        Assert.Equal([1, .. T.Encode(text, addSpecial: false)], T.Encode(text));
    }

    [Fact]
    public void Control_tokens_are_matched_only_with_parse_special()
    {
        int[] plain = T.Encode("<s>x</s>", addSpecial: false);
        Assert.DoesNotContain(1, plain);
        Assert.DoesNotContain(2, plain);
        Assert.Equal("<s>x</s>", T.Decode(plain));

        int[] parsed = T.Encode("<s>x</s>", addSpecial: false, parseSpecial: true);
        Assert.Equal(1, parsed[0]);
        Assert.Equal(2, parsed[^1]);
        // text after a special token gets the space prefix too
        Assert.Equal("▁x", string.Concat(Pieces(T, parsed[1..^1])));
    }

    [Fact]
    public void User_defined_tokens_are_always_matched_and_followed_by_a_space_prefix()
    {
        var t = Load(TinySpm(("▁", TokenType.Normal), ("x", TokenType.Normal), ("y", TokenType.Normal),
            ("▁x", TokenType.Normal), ("▁y", TokenType.Normal), ("<tool>", TokenType.UserDefined)));
        Assert.Equal(["<s>", "▁x", "<tool>", "▁y"], Pieces(t, t.Encode("x<tool>y")));
        // User-defined tokens always render; the prefix space added after one stays (as in llama.cpp).
        Assert.Equal("x<tool> y", t.Decode(t.Encode("x<tool>y", addSpecial: false)));
    }

    [Fact]
    public void Without_byte_tokens_unknown_characters_become_unk()
    {
        var t = Load(TinySpm(("▁", TokenType.Normal), ("a", TokenType.Normal), ("▁a", TokenType.Normal)));
        // é is two UTF-8 bytes
        Assert.Equal(["▁a", "<unk>", "<unk>", "▁a"], Pieces(t, t.Encode("aé a", addSpecial: false)));
    }

    [Theory]
    [InlineData("Hello world")]
    [InlineData(" leading space")]
    [InlineData("trailing spaces   ")]
    [InlineData("  two  spaces  between  ")]
    [InlineData("\nnew\nlines\n\n")]
    [InlineData("\ttabs\tand\r\nCRLF")]
    [InlineData("café naïve résumé")]
    [InlineData("日本語のテキスト, 한국어, Привет")]
    [InlineData("emoji 🎉👩‍💻 and 𝐀𝐁𝐂 outside the BMP")]
    [InlineData("don't I'll we're, 3.14159 and 2024!")]
    [InlineData("<s> and </s> as plain text")]
    public void Decode_of_encode_gives_back_the_text(string text)
    {
        Assert.Equal(text, T.Decode(T.Encode(text, addSpecial: false)));
    }

    [Fact]
    public void Decode_keeps_the_space_after_BOS_and_renders_specials_on_request()
    {
        // llama_detokenize removes the prefix space only from the first token; a leading BOS is that token.
        int[] ids = T.Encode("the people");
        Assert.Equal(" the people", T.Decode(ids));
        Assert.Equal("<s> the people", T.Decode(ids, renderSpecial: true));
        Assert.Equal("the people", T.Decode(ids[1..]));
    }

    [Fact]
    public void DecodeToken_follows_llama_token_to_piece()
    {
        Assert.Equal(" the"u8.ToArray(), T.DecodeToken(T.FindToken("▁the")!.Value));
        Assert.Equal([0x0A], T.DecodeToken(3 + 0x0A));
        Assert.Empty(T.DecodeToken(1));
        Assert.Equal("<s>"u8.ToArray(), T.DecodeToken(1, renderSpecial: true));
        Assert.Empty(T.DecodeToken(0));
        Assert.Equal("<unk>"u8.ToArray(), T.DecodeToken(0, renderSpecial: true));
    }

    [Fact]
    public void Lone_surrogates_are_encoded_as_the_replacement_character()
    {
        Assert.Equal(T.Encode("a\uFFFDb"), T.Encode("a\uD800b"));
        Assert.Equal(T.Encode("\uFFFD"), T.Encode("\uDC00"));
    }

    [Fact]
    public void Ids_outside_the_vocabulary_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => T.TokenText(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => T.DecodeToken(T.VocabSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => T.Decode([5, T.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => T.GetTokenType(int.MaxValue));
    }

    [Fact]
    public void Long_text_encodes_in_one_pass_and_round_trips()
    {
        string text = string.Concat(Enumerable.Repeat("The model reads every token once; 42 times over!\n", 2000));
        int[] ids = T.Encode(text, addSpecial: false);
        Assert.InRange(ids.Length, text.Length / 8, text.Length / 2);
        Assert.Equal(text, T.Decode(ids));
    }
}
