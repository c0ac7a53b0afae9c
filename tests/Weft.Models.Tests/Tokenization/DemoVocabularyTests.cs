using Weft.Models.Tokenization;
using static Weft.Models.Tests.Tokenization.TestVocab;

namespace Weft.Models.Tests.Tokenization;

public class DemoVocabularyTests
{
    [Theory]
    [InlineData(300)]
    [InlineData(2048)]
    [InlineData(32000)]
    public void SentencePiece_has_the_requested_size_and_layout(int size)
    {
        var v = DemoVocabulary.SentencePiece(size, chatTemplate: "{{ messages }}");
        Assert.Equal(size, v.Tokens.Length);
        Assert.Equal(size, v.Tokens.Distinct().Count());
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], v.Tokens[..4]);
        Assert.Equal("<0xFF>", v.Tokens[258]);
        Assert.Equal([(int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control], v.TokenTypes[..3]);
        Assert.All(v.TokenTypes[3..259], t => Assert.Equal((int)TokenType.Byte, t));
        Assert.All(v.TokenTypes[259..], t => Assert.Equal((int)TokenType.Normal, t));
        Assert.True(v.Scores![259..].Zip(v.Scores[260..]).All(p => p.First > p.Second), "scores fall in merge order");
        Assert.Equal(("llama", 1, 2, 0, true, true, "{{ messages }}"),
            (v.Model, v.BosId, v.EosId, v.UnkId, v.AddBos, v.AddSpacePrefix, v.ChatTemplate));
    }

    [Theory]
    [InlineData(300)]
    [InlineData(2048)]
    [InlineData(32000)]
    public void ByteLevelBpe_has_the_requested_size_and_consistent_merges(int size)
    {
        var v = DemoVocabulary.ByteLevelBpe(size);
        Assert.Equal(size, v.Tokens.Length);
        Assert.Equal(size, v.Tokens.Distinct().Count());
        Assert.Equal(["!", "\"", "#"], v.Tokens[..3]);
        Assert.Equal("Ġ", v.Tokens[220]); // GPT-2's id for the space byte
        Assert.Equal(DemoVocabulary.ByteLevelSpecialTokens, v.Tokens[^7..]);
        Assert.All(v.TokenTypes[^7..], t => Assert.Equal((int)TokenType.Control, t));
        var tokens = v.Tokens.ToHashSet();
        Assert.All(v.Merges!, m =>
        {
            var parts = m.Split(' ');
            Assert.Equal(2, parts.Length);
            Assert.Contains(parts[0], tokens);
            Assert.Contains(parts[1], tokens);
            Assert.Contains(parts[0] + parts[1], tokens);
        });
        Assert.Equal(("gpt2", "llama-bpe", "<|begin_of_text|>", "<|end_of_text|>"),
            (v.Model, v.Pre, v.Tokens[v.BosId], v.Tokens[v.EosId]));
    }

    [Fact]
    public void Vocabularies_are_deterministic()
    {
        Assert.Equal(DemoVocabulary.SentencePiece(5000).Tokens, DemoVocabulary.SentencePiece(5000).Tokens);
        Assert.Equal(DemoVocabulary.ByteLevelBpe(5000, "qwen2").Merges,
            DemoVocabulary.ByteLevelBpe(5000, "qwen2").Merges);
    }

    [Fact]
    public void Common_words_are_single_tokens()
    {
        foreach (var word in (string[])["the", "and", "of", "water", "people", "question"])
        {
            Assert.Single(Spm.Encode(word, addSpecial: false));
            Assert.Single(Llama3.Encode(" " + word, addSpecial: false));
        }
    }

    [Fact]
    public void Impossible_requests_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DemoVocabulary.SentencePiece(259));
        Assert.Throws<ArgumentOutOfRangeException>(() => DemoVocabulary.ByteLevelBpe(263));
        Assert.Throws<ArgumentException>(() => DemoVocabulary.ByteLevelBpe(1000, "no-such-pre"));
    }
}
