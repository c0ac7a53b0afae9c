using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using Weft.Abstractions;
using ChatMessage = OpenAI.Chat.ChatMessage;

namespace Weft.Silo.Tests;

/// <summary>
/// logprobs / top_logprobs and n through the HTTP API: chat read by the official OpenAI SDK, the legacy completions
/// as raw JSON, whole and streamed. The values themselves are checked against the engine's logits in
/// Weft.GpuRuntime.Tests; here, their shape and that they belong to the tokens sent.
/// </summary>
// the SDK marks Seed as experimental
#pragma warning disable OPENAI001
public sealed class LogprobsTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    ChatClient Chat => silo.OpenAI().GetChatClient(SiloFixture.ModelName);

    static ChatCompletionOptions Options(int top) => new()
    {
        IncludeLogProbabilities = true,
        TopLogProbabilityCount = top,
        Temperature = 0,
        MaxOutputTokenCount = 12,
    };

    [Fact]
    public async Task Chat_logprobs_give_each_token_its_bytes_and_its_top_alternatives_whole_and_streamed()
    {
        ChatMessage[] messages = [new UserChatMessage("Tell me about the sea.")];
        OpenAI.Chat.ChatCompletion whole = await Chat.CompleteChatAsync(messages, Options(3), Ct);
        var tokens = whole.ContentTokenLogProbabilities;
        Assert.Equal(whole.Usage.OutputTokenCount, tokens.Count);
        foreach (var t in tokens)
        {
            Assert.True(t.LogProbability <= 0);
            Assert.NotNull(t.Utf8Bytes);
            Assert.Equal(3, t.TopLogProbabilities.Count);
            // at temperature 0 the sampled token is the most likely one
            Assert.Equal(t.Token, t.TopLogProbabilities[0].Token);
            Assert.Equal(t.LogProbability, t.TopLogProbabilities[0].LogProbability);
            Assert.True(t.TopLogProbabilities[0].LogProbability >= t.TopLogProbabilities[1].LogProbability);
            Assert.True(t.TopLogProbabilities.Sum(a => Math.Exp(a.LogProbability)) <= 1 + 1e-5);
        }
        // the tokens' bytes are the reply's text, the first token's leading space aside
        string joined = Encoding.UTF8.GetString([.. tokens.SelectMany(t => t.Utf8Bytes!.Value.ToArray())]);
        Assert.Equal(whole.Content[0].Text.TrimStart(), joined.TrimStart());

        var streamed = new List<ChatTokenLogProbabilityDetails>();
        await foreach (var update in Chat.CompleteChatStreamingAsync(messages, Options(3), Ct))
            streamed.AddRange(update.ContentTokenLogProbabilities);
        Assert.Equal(tokens.Select(t => (t.Token, t.LogProbability)),
            streamed.Select(t => (t.Token, t.LogProbability)));
    }

    [Fact]
    public async Task Logprobs_without_top_logprobs_give_only_the_sampled_tokens()
    {
        var options = Options(0);
        options.TopLogProbabilityCount = null;
        OpenAI.Chat.ChatCompletion reply = await Chat.CompleteChatAsync([new UserChatMessage("Hi")], options, Ct);
        Assert.NotEmpty(reply.ContentTokenLogProbabilities);
        Assert.All(reply.ContentTokenLogProbabilities, t => Assert.Empty(t.TopLogProbabilities));
        var (_, plain) = await silo.Http.PostAsync("/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4}""", Ct);
        Assert.Null(plain["choices"]![0]!["logprobs"]);
    }

    [Fact]
    public async Task Completion_logprobs_have_openai_s_legacy_shape_whole_and_streamed()
    {
        const string request = """{"prompt":"Once upon a time","max_tokens":10,"temperature":0,"logprobs":2{0}}""";
        var (status, whole) = await silo.Http.PostAsync("/v1/completions", request.Replace("{0}", ""), Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var lp = whole["choices"]![0]!["logprobs"]!;
        var tokens = lp["tokens"]!.AsArray().Select(t => (string)t!).ToList();
        var values = lp["token_logprobs"]!.AsArray().Select(v => (float)v!).ToList();
        var offsets = lp["text_offset"]!.AsArray().Select(o => (int)o!).ToList();
        var tops = lp["top_logprobs"]!.AsArray().Select(t => t!.AsObject()).ToList();
        Assert.Equal((int)whole["usage"]!["completion_tokens"]!, tokens.Count);
        Assert.Equal(tokens.Count, values.Count);
        Assert.Equal(tokens.Count, tops.Count);
        Assert.Equal(0, offsets[0]);
        for (int i = 1; i < tokens.Count; i++) Assert.Equal(offsets[i - 1] + tokens[i - 1].Length, offsets[i]);
        for (int i = 0; i < tokens.Count; i++)
        {
            // the two most likely, and the sampled token, which at temperature 0 is one of them; a map keyed by text
            // holds one entry for tokens of the same text (byte tokens that are no whole character each show U+FFFD)
            Assert.InRange(tops[i].Count, 1, 2);
            Assert.Equal(values[i], (float)tops[i][tokens[i]]!);
            Assert.Equal(values[i], tops[i].Max(p => (float)p.Value!));
        }

        var events = await silo.Http.StreamAsync("/v1/completions", request.Replace("{0}", ",\"stream\":true"),
            Ct);
        var chunks = events.SkipLast(1).Select(e => JsonNode.Parse(e)!["choices"]!.AsArray())
            .Where(c => c.Count > 0 && c[0]!["logprobs"] is not null).Select(c => c[0]!["logprobs"]!).ToList();
        Assert.Equal(tokens, chunks.SelectMany(c => c["tokens"]!.AsArray().Select(t => (string)t!)));
        Assert.Equal(offsets, chunks.SelectMany(c => c["text_offset"]!.AsArray().Select(o => (int)o!)));
        Assert.Equal(values, chunks.SelectMany(c => c["token_logprobs"]!.AsArray().Select(v => (float)v!)));
    }

    [Fact]
    public async Task N_choices_are_each_the_reply_of_their_own_seed_and_usage_sums_their_tokens()
    {
        const string request = """
            {"messages":[{"role":"user","content":"Write a line."}],"temperature":1,"max_tokens":8,
             "ignore_eos":true,"seed":{0}{1}}
            """;
        var (status, reply) = await silo.Http.PostAsync("/v1/chat/completions",
            request.Replace("{0}", "40").Replace("{1}", ",\"n\":3"), Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = reply["choices"]!.AsArray();
        Assert.Equal([0, 1, 2], choices.Select(c => (int)c!["index"]!));
        Assert.Equal(24, (int)reply["usage"]!["completion_tokens"]!);
        for (int i = 0; i < 3; i++)
        {
            var (_, single) = await silo.Http.PostAsync("/v1/chat/completions",
                request.Replace("{0}", $"{40 + i}").Replace("{1}", ""), Ct);
            Assert.Equal((string?)single["choices"]![0]!["message"]!["content"],
                (string?)choices[i]!["message"]!["content"]);
            Assert.Equal((int)single["usage"]!["prompt_tokens"]!, (int)reply["usage"]!["prompt_tokens"]!);
        }

        // streamed: each chunk names its choice, and each choice's text is the whole reply's
        var events = await silo.Http.StreamAsync("/v1/chat/completions",
            request.Replace("{0}", "40").Replace("{1}", ",\"n\":3,\"stream\":true"), Ct);
        var texts = new StringBuilder[3].Select(_ => new StringBuilder()).ToArray();
        var finished = new HashSet<int>();
        foreach (var e in events.SkipLast(1))
            foreach (var c in JsonNode.Parse(e)!["choices"]!.AsArray())
            {
                int index = (int)c!["index"]!;
                texts[index].Append((string?)c["delta"]!["content"]);
                if (c["finish_reason"] is not null) finished.Add(index);
            }
        Assert.Equal([0, 1, 2], finished.Order());
        Assert.Equal(choices.Select(c => (string?)c!["message"]!["content"]), texts.Select(t => t.ToString()));
    }

    [Fact]
    public async Task N_completions_give_n_choices_with_their_logprobs()
    {
        var (status, reply) = await silo.Http.PostAsync("/v1/completions",
            """{"prompt":"Once","max_tokens":5,"temperature":1,"seed":3,"n":2,"logprobs":1,"ignore_eos":true}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = reply["choices"]!.AsArray();
        Assert.Equal([0, 1], choices.Select(c => (int)c!["index"]!));
        Assert.All(choices, c => Assert.Equal(5, c!["logprobs"]!["tokens"]!.AsArray().Count));
        Assert.Equal(10, (int)reply["usage"]!["completion_tokens"]!);
    }

    /// <summary>The choices after the first are admitted once it has computed the prompt, as forks of it: they share
    /// its full blocks, copy its partial one and compute only the prompt's last token.</summary>
    [Fact]
    public async Task The_other_choices_reuse_the_first_choice_s_prompt_but_its_last_token()
    {
        // the fixture's pool is --kv-blocks 1024
        int blockSize = (await silo.BatchGrain().GetStatsAsync()).Load.TotalKvTokens / 1024;
        var random = new Random(Guid.NewGuid().GetHashCode());
        // a prompt no other test sent, so the first choice finds nothing cached
        int[] prompt = [1, .. Enumerable.Range(0, 3 * blockSize + 5).Select(_ => random.Next(3, 1000))];
        var last = new Dictionary<int, GenerationDelta>();
        await foreach (var d in silo.BatchGrain().GenerateAsync(new GenerationRequest
        {
            PromptTokens = prompt,
            Choices = 3,
            Sampling = new SamplingOptions { MaxTokens = 4, IgnoreEos = true, Temperature = 1, Seed = 1 },
        }, Ct))
            if (d.FinishReason is not null) last[d.Choice] = d;

        Assert.Equal([0, 1, 2], last.Keys.Order());
        Assert.Equal(0, last[0].CachedTokens);
        // the prompt ends 6 tokens into a block: the prefix cache alone would give 3 blocks' worth
        Assert.Equal(prompt.Length - 1, last[1].CachedTokens);
        Assert.Equal(prompt.Length - 1, last[2].CachedTokens);
        Assert.All(last.Values, d => Assert.Equal(4, d.CompletionTokens));
    }
}
