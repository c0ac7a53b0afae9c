using Weft.Models.Chat;
using Weft.Models.Tests.Tokenization;
using Weft.Models.Tokenization;

namespace Weft.Models.Tests.Chat;

public class TurnTokensTests
{
    static ChatTemplate Template(Tokenizer t, string name) =>
        ChatTemplate.Resolve(null, name, t.TokenText(t.BosId), t.TokenText(t.EosId), t.AddBos);

    /// <summary>The text a stream of sampled ids shows the client, as the batch grain decodes it.</summary>
    static string Streamed(Tokenizer t, IEnumerable<int> ids)
    {
        var decoder = t.CreateStreamingDecoder();
        return string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
    }

    /// <summary>
    /// One chat turn as the conversation grain runs it: render, take the prompt, "sample" <paramref name="reply"/> (and
    /// an end-of-generation token), keep what the next turn can extend. Returns the kept tokens and the history.
    /// </summary>
    static (TurnTokens Kept, List<(string Role, string Content)> History, int[] Prompt) Turn(Tokenizer t,
        ChatTemplate template, TurnTokens tokens, List<(string Role, string Content)> history, string user, int[] reply)
    {
        List<(string Role, string Content)> messages = [.. history, ("user", user)];
        string rendered = template.Render(messages, addGenerationPrompt: true);
        var prompt = tokens.Prompt(t, rendered);
        string replyText = Streamed(t, reply);
        var kept = TurnTokens.AfterReply(t, prompt, rendered, [.. reply, t.EosId], replyText);
        return (kept, [.. messages, ("assistant", replyText)], prompt);
    }

    [Fact]
    public void A_rendering_that_extends_the_text_keeps_the_old_ids_and_tokenizes_only_the_rest()
    {
        var t = TestVocab.Qwen2;
        var chatml = Template(t, "chatml");
        // " water" sampled as " wat" + "er": not how the tokenizer would split the text again
        int[] sampled = [.. t.Encode(" wat", addSpecial: false), .. t.Encode("er", addSpecial: false)];
        Assert.NotEqual(t.Encode(" water", addSpecial: false), sampled);

        var (kept, history, prompt1) = Turn(t, chatml, TurnTokens.Empty, [], "Where does rain come from", sampled);
        Assert.Equal([.. prompt1, .. sampled], kept.Ids);
        Assert.EndsWith("<|im_start|>assistant\n water", kept.Text);

        string rendered = chatml.Render([.. history, ("user", "And then")], addGenerationPrompt: true);
        var prompt2 = kept.Prompt(t, rendered);

        string rest = rendered[kept.Text.Length..];
        Assert.StartsWith("<|im_end|>", rest);
        Assert.Equal([.. kept.Ids, .. t.EncodeChat(rest, addSpecial: false)], prompt2);
        Assert.Equal(rendered, t.Decode(prompt2, renderSpecial: true));
        Assert.NotEqual(t.EncodeChat(rendered), prompt2);
    }

    [Fact]
    public void A_rendering_that_does_not_extend_the_text_is_tokenized_afresh()
    {
        var t = TestVocab.Qwen2;
        var chatml = Template(t, "chatml");
        int[] sampled = [.. t.Encode(" wat", addSpecial: false), .. t.Encode("er", addSpecial: false)];
        var (kept, history, _) = Turn(t, chatml, TurnTokens.Empty, [], "Where does rain come from", sampled);

        // the client sent the whole conversation with its first message edited
        List<(string Role, string Content)> edited =
            [("user", "Where does snow come from"), .. history[1..], ("user", "And then")];
        string rendered = chatml.Render(edited, addGenerationPrompt: true);
        Assert.False(rendered.StartsWith(kept.Text, StringComparison.Ordinal));

        Assert.Equal(t.EncodeChat(rendered), kept.Prompt(t, rendered));
    }

    public static TheoryData<string, string> FormatsWhoseRestStartsAtASpecialToken => new()
    {
        { "qwen2", "chatml" },
        { "llama3", "chatml" },
        { "spm", "mistral-v3" },
        { "spm", "zephyr" },
    };

    [Theory]
    [MemberData(nameof(FormatsWhoseRestStartsAtASpecialToken))]
    public void Extending_at_a_special_token_with_canonical_reply_ids_equals_a_fresh_tokenization(
        string vocabulary, string format)
    {
        var t = vocabulary switch { "qwen2" => TestVocab.Qwen2, "llama3" => TestVocab.Llama3, _ => TestVocab.Spm };
        var template = Template(t, format);
        var tokens = TurnTokens.Empty;
        List<(string Role, string Content)> history = [];
        foreach (var user in new[] { "Where does rain come from", "And then", "Why" })
        {
            string rendered = template.Render([.. history, ("user", user)], addGenerationPrompt: true);
            Assert.True(history.Count == 0 || rendered.StartsWith(tokens.Text, StringComparison.Ordinal));
            (tokens, history, var prompt) = Turn(t, template, tokens, history, user,
                t.Encode("It falls from clouds", addSpecial: false));
            Assert.Equal(t.EncodeChat(rendered), prompt);
        }
        Assert.Equal(t.EncodeChat(tokens.Text), tokens.Ids);
    }

    [Fact]
    public void An_extension_that_starts_inside_a_word_keeps_the_split_that_a_fresh_tokenization_would_merge()
    {
        var t = TestVocab.Llama3;
        var tokens = new TurnTokens("Where does wat", t.EncodeChat("Where does wat"));

        var prompt = tokens.Prompt(t, "Where does water come from");

        Assert.Equal([.. tokens.Ids, .. t.EncodeChat("er come from", addSpecial: false)], prompt);
        Assert.NotEqual(t.EncodeChat("Where does water come from"), prompt);
        Assert.Equal("Where does water come from", t.Decode(prompt.Skip(1)));
    }

    [Fact]
    public void An_extension_that_starts_in_plain_text_gets_a_sentencepiece_space_prefix_as_the_llama2_format_shows()
    {
        // Llama 2 writes " </s>" after a reply: the rest starts with a space, which SentencePiece tokenizes as text
        // after a special token, so the kept prompt holds one "▁" more than a fresh tokenization, before the EOS.
        var t = TestVocab.Spm;
        var llama2 = Template(t, "llama2");
        var (kept, history, _) = Turn(t, llama2, TurnTokens.Empty, [], "Where does rain come from",
            t.Encode("It falls from clouds", addSpecial: false));
        string rendered = llama2.Render([.. history, ("user", "And then")], addGenerationPrompt: true);
        Assert.StartsWith(" </s>", rendered[kept.Text.Length..]);

        var prompt = kept.Prompt(t, rendered);

        var fresh = t.EncodeChat(rendered);
        int eos = Array.IndexOf(fresh, t.EosId);
        Assert.Equal([.. fresh[..eos], t.FindToken("▁")!.Value, .. fresh[eos..]], prompt);
    }

    [Fact]
    public void Without_history_text_the_whole_rendering_is_tokenized_with_bos()
    {
        var t = TestVocab.Llama3;
        string rendered = Template(t, "llama3").Render([("user", "Where does rain come from")], true);
        var fresh = t.EncodeChat(rendered);
        Assert.Equal(t.BosId, fresh[0]);

        Assert.Equal(fresh, TurnTokens.Empty.Prompt(t, rendered));
        // a conversation of raw prompts keeps ids but no text: a chat turn after it starts afresh
        Assert.Equal(fresh, new TurnTokens("", [t.BosId, 7, 8]).Prompt(t, rendered));
    }

    [Fact]
    public void A_reply_cut_short_by_a_stop_string_keeps_only_the_prompt_and_its_text()
    {
        var t = TestVocab.Qwen2;
        int[] prompt = t.Encode("Where does rain come from", addSpecial: true);
        int[] reply = t.Encode(" It falls from clouds", addSpecial: false);

        var kept = TurnTokens.AfterReply(t, prompt, "Where does rain come from", reply, " It falls");

        Assert.Equal("Where does rain come from", kept.Text);
        Assert.Equal(prompt, kept.Ids);
    }

    [Fact]
    public void A_raw_prompt_keeps_its_ids_and_the_reply_without_the_final_end_of_generation_token_but_no_text()
    {
        var t = TestVocab.Qwen2;
        int[] prompt = t.Encode("Where does rain come from", addSpecial: true);
        int[] reply = t.Encode(" It falls from clouds", addSpecial: false);

        var kept = TurnTokens.AfterReply(t, prompt, rendered: null, [.. reply, t.EosId], " It falls from clouds");

        Assert.Equal("", kept.Text);
        Assert.Equal([.. prompt, .. reply], kept.Ids);
    }
}
