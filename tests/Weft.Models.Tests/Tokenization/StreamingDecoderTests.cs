using Weft.Models.Tokenization;
using static Weft.Models.Tests.Tokenization.TestVocab;

namespace Weft.Models.Tests.Tokenization;

public class StreamingDecoderTests
{
    [Fact]
    public void Holds_back_a_character_split_over_byte_tokens()
    {
        var t = Spm;
        var d = t.CreateStreamingDecoder();
        // "é" is <0xC3><0xA9> and "🎉" four byte tokens in this vocabulary.
        int[] ids = t.Encode("café 🎉!", addSpecial: false);
        var outputs = ids.Select(d.Push).ToList();
        outputs.Add(d.Flush());
        // each token as llama_token_to_piece renders it: no space removal
        Assert.Equal(" café 🎉!", string.Concat(outputs));
        Assert.Equal("", outputs[ids.ToList().IndexOf(3 + 0xC3)]);
        Assert.Equal("é", outputs[ids.ToList().IndexOf(3 + 0xA9)]);
        Assert.Equal(["", "", "", "🎉"], outputs.Skip(ids.ToList().IndexOf(3 + 0xF0)).Take(4));
    }

    [Fact]
    public void Byte_level_pieces_of_one_character_are_held_back_too()
    {
        var t = Llama3;
        var d = t.CreateStreamingDecoder();
        int[] ids = t.Encode("日本", addSpecial: false);
        Assert.Equal(6, ids.Length);
        Assert.Equal(["", "", "日", "", "", "本"], ids.Select(d.Push));
        Assert.Equal("", d.Flush());
    }

    [Fact]
    public void Flush_turns_an_incomplete_character_into_a_replacement_character()
    {
        var d = Spm.CreateStreamingDecoder();
        Assert.Equal("", d.Push(3 + 0xE6));
        Assert.Equal("", d.Push(3 + 0x97));
        Assert.Equal("\uFFFD", d.Flush());
        Assert.Equal("A", d.Push(3 + 0x41)); // usable again after a flush
    }

    [Fact]
    public void Invalid_bytes_become_replacement_characters_without_waiting()
    {
        var d = Spm.CreateStreamingDecoder();
        Assert.Equal("\uFFFD", d.Push(3 + 0x80)); // a continuation byte with nothing to continue
        Assert.Equal("", d.Push(3 + 0xE6));
        Assert.Equal("\uFFFDA", d.Push(3 + 0x41)); // the started character can no longer complete
    }

    [Fact]
    public void Special_tokens_are_empty_unless_rendered()
    {
        Assert.Equal("", Spm.CreateStreamingDecoder().Push(Spm.EosId));
        Assert.Equal("</s>", Spm.CreateStreamingDecoder(renderSpecial: true).Push(Spm.EosId));
        Assert.Throws<ArgumentOutOfRangeException>(() => Spm.CreateStreamingDecoder().Push(-1));
    }
}

public class ReplyDecoderTests
{
    /// <summary>Pushes the text's tokens one at a time; returns what each push released, then what Finish
    /// released.</summary>
    static (List<string> Deltas, ReplyDecoder Decoder) Decode(string text, params string[] stop)
    {
        var d = new ReplyDecoder(TestVocab.Spm, stop);
        var deltas = TestVocab.Spm.Encode(text, addSpecial: false).Select(d.Push).ToList();
        if (!d.Stopped) deltas.Add(d.Finish());
        return (deltas, d);
    }

    [Fact]
    public void A_stop_string_split_over_tokens_is_never_shown_in_part()
    {
        var (deltas, d) = Decode("hello world. the end", "world.");
        Assert.True(d.Stopped);
        Assert.Equal(" hello ", d.Text);
        Assert.Equal(" hello ", string.Concat(deltas));
        Assert.DoesNotContain(deltas, x => x.Contains('w'));
    }

    [Fact]
    public void A_held_back_tail_that_does_not_become_a_stop_string_is_released()
    {
        var (deltas, d) = Decode("hello wonder", "world");
        Assert.False(d.Stopped);
        Assert.Equal(" hello wonder", string.Concat(deltas));
        Assert.Equal(" hello wonder", d.Text);
    }

    [Fact]
    public void The_earliest_of_several_stop_strings_wins()
    {
        var (_, d) = Decode("one two three", "three", "two");
        Assert.Equal(" one ", d.Text);
    }
}
