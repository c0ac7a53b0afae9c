using Weft.Models.Tokenization;

namespace Weft.Models.Tests.Tokenization;

public class PreTokenizerTests
{
    static string[] Words(string pre, string text)
    {
        var ranges = new List<Range>();
        BpeDialect.Find(pre)!.Splitter.Split(text, ranges);
        return ranges.Select(r => text[r]).ToArray();
    }

    [Theory]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")] // the same expression run as a regular expression over the collapsed text
    public void Llama3_style_splits_contractions_case_insensitively_and_keeps_one_space_for_the_next_word(string pre)
    {
        Assert.Equal(["don", "'t", " I", "'ll", " WE", "'RE"], Words(pre, "don't I'll WE'RE"));
        Assert.Equal(["a", "\n\n", " ", " b"], Words(pre, "a\n\n  b"));
        Assert.Equal(["x", "   "], Words(pre, "x   ")); // trailing whitespace stays together
        Assert.Equal(["(a", "),", " ..."], Words(pre, "(a), ...")); // one non-letter may lead a word
        Assert.Equal([" ?!\n", "x"], Words(pre, " ?!\nx"));
    }

    [Fact]
    public void Gpt2_contractions_are_case_sensitive()
    {
        Assert.Equal(["don", "'t", " DON", "'", "T"], Words("gpt-2", "don't DON'T"));
    }

    [Theory]
    [InlineData("llama-bpe", new[] { "123", "456", "7" })]
    [InlineData("qwen2", new[] { "1", "2", "3", "4", "5", "6", "7" })]
    [InlineData("gpt-2", new[] { "1234567" })]
    public void Digits_group_as_each_pre_tokenizer_says(string pre, string[] words)
    {
        Assert.Equal(words, Words(pre, "1234567"));
    }

    [Theory]
    [InlineData("llama-bpe")]
    [InlineData("qwen2")]
    [InlineData("gpt-2")]
    public void Letters_outside_the_BMP_are_letters(string pre)
    {
        // .NET's \p{L} sees the two UTF-16 halves of 𝐀 (U+1D400) as non-letters; llama.cpp sees one letter.
        Assert.Equal(["x𝐀𝐁y", " 𝑧"], Words(pre, "x𝐀𝐁y 𝑧"));
        Assert.Equal(["a", " 🎉🎉"], Words(pre, "a 🎉🎉")); // an emoji is a symbol, not a letter
    }

    [Fact]
    public void Non_ascii_whitespace_is_whitespace_and_the_default_pre_tokenizer_splits_in_four_passes()
    {
        Assert.Equal(["a", "\u3000", "\u00A0b"], Words("llama-bpe", "a\u3000\u00A0b"));
        Assert.Equal(["x", "123", "4", "!!", "y"], Words("default", "x1234!!y"));
    }
}
