using Microsoft.Extensions.AI;
using Weft.Abstractions;
using Weft.Testing;
using AI = Microsoft.Extensions.AI;

namespace Weft.Client.Tests;

/// <summary>Log-probabilities, several choices and a GBNF grammar through <see cref="WeftClient"/> and
/// <see cref="WeftChatClient"/>.</summary>
public sealed class ClientSamplingTests(WeftCluster cluster) : IClassFixture<WeftCluster>
{
    WeftClient Client => new(cluster.Cluster.Client);
    IChatClient Chat => new WeftChatClient(Client, "test-model");
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    const string YesNo = "root ::= \"yes\" | \"no\"";
    static readonly string[] Answers = ["yes", "no"];

    [Fact]
    public async Task A_greedy_reply_reports_each_tokens_logprob_and_its_alternatives()
    {
        var reply = await Client.NewConversation().AskAsync("Name a colour.",
            new SamplingOptions { Temperature = 0, MaxTokens = 6, IgnoreEos = true, Logprobs = 3 }, Ct);
        var logprobs = Assert.IsAssignableFrom<IReadOnlyList<TokenLogprob>>(reply.Logprobs);
        Assert.Equal(reply.TokenIds, logprobs.Select(l => l.Token));
        foreach (var l in logprobs)
        {
            Assert.Equal(3, l.TopIds.Count);
            // greedy takes the likeliest token, so it heads the alternatives with the same value
            Assert.Equal(l.Token, l.TopIds[0]);
            Assert.Equal(l.TopLogprobs[0], l.Logprob);
            Assert.True(l.TopLogprobs[0] >= l.TopLogprobs[1] && l.TopLogprobs[1] >= l.TopLogprobs[2]);
            Assert.True(l.Logprob is < 0 and > -20);
        }
        var plain = await Client.NewConversation().AskAsync("Name a colour.",
            new SamplingOptions { Temperature = 0, MaxTokens = 6, IgnoreEos = true }, Ct);
        Assert.Null(plain.Logprobs);
    }

    [Fact]
    public async Task Several_choices_are_each_the_reply_of_its_own_seed()
    {
        Abstractions.ChatMessage[] messages = [new("user", "Tell me a story.")];
        var sampling = new SamplingOptions { Temperature = 1, Seed = 7, MaxTokens = 8, IgnoreEos = true };
        var choices = await Client.ChoicesAsync(messages, 3, sampling, Ct);

        Assert.Equal(3, choices.Count);
        for (int i = 0; i < 3; i++)
        {
            var alone = await Client.NewConversation().AskAsync("Tell me a story.",
                sampling with { Seed = 7 + (ulong)i }, Ct);
            Assert.Equal(alone.TokenIds, choices[i].TokenIds);
            Assert.Equal(alone.Text, choices[i].Text);
            Assert.Equal(8, choices[i].Usage.CompletionTokens);
        }
        Assert.True(choices.Select(c => c.Text).Distinct().Count() > 1, "different seeds drew different replies");
    }

    [Fact]
    public async Task A_grammar_shapes_the_reply_through_both_clients()
    {
        for (ulong seed = 0; seed < 4; seed++)
        {
            var reply = await Client.NewConversation().AskAsync("Well?",
                new SamplingOptions { Temperature = 1, Seed = seed, MaxTokens = 16, Grammar = YesNo }, Ct);
            Assert.Contains(reply.Text, Answers);

            var options = new ChatOptions
            {
                Temperature = 1, Seed = (long)seed, MaxOutputTokens = 16,
                AdditionalProperties = new() { ["grammar"] = YesNo },
            };
            var response = await Chat.GetResponseAsync([new AI.ChatMessage(ChatRole.User, "Well?")], options, Ct);
            Assert.Contains(response.Text, Answers);
        }
    }

    [Fact]
    public async Task Chat_client_logprobs_come_back_streamed_and_not_under_the_openai_clients_key()
    {
        var options = new ChatOptions
        {
            Temperature = 0, MaxOutputTokens = 6,
            AdditionalProperties = new() { ["logprobs"] = true, ["top_logprobs"] = 2L },
        };
        List<AI.ChatMessage> messages = [new(ChatRole.User, "Name a colour.")];
        var response = await Chat.GetResponseAsync(messages, options, Ct);
        var logprobs = Assert.IsAssignableFrom<IReadOnlyList<TokenLogprob>>(
            response.AdditionalProperties?[WeftChatClient.LogprobsKey]);
        Assert.Equal(response.Usage!.OutputTokenCount, logprobs.Count);
        Assert.All(logprobs, l => Assert.Equal(2, l.TopIds.Count));

        var streamed = new List<TokenLogprob>();
        await foreach (var u in Chat.GetStreamingResponseAsync(messages, options, Ct))
            if (u.AdditionalProperties?[WeftChatClient.LogprobsKey] is IReadOnlyList<TokenLogprob> l)
                streamed.AddRange(l);
        Assert.Equal(logprobs.Select(l => (l.Token, l.Logprob)), streamed.Select(l => (l.Token, l.Logprob)));

        var none = await Chat.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 6 }, Ct);
        Assert.Null(none.AdditionalProperties);
    }

    [Fact]
    public async Task What_the_chat_client_cannot_honour_throws()
    {
        List<AI.ChatMessage> messages = [new(ChatRole.User, "Hi")];
        Task Ask(ChatOptions o) => Chat.GetResponseAsync(messages, o, Ct);

        await Assert.ThrowsAsync<NotSupportedException>(() =>
            Ask(new ChatOptions { AdditionalProperties = new() { ["n"] = 2 } }));
        await Assert.ThrowsAsync<NotSupportedException>(() => Ask(new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.Json, AdditionalProperties = new() { ["grammar"] = YesNo },
        }));
        await Assert.ThrowsAsync<ArgumentException>(() =>
            Ask(new ChatOptions { AdditionalProperties = new() { ["top_logprobs"] = 2 } }));
        await Assert.ThrowsAsync<ArgumentException>(() =>
            Ask(new ChatOptions { AdditionalProperties = new() { ["logprobs"] = true, ["top_logprobs"] = 21 } }));
        await Assert.ThrowsAsync<ArgumentException>(() =>
            Ask(new ChatOptions { AdditionalProperties = new() { ["logprobs"] = "sometimes" } }));
        var unknown = await Assert.ThrowsAsync<NotSupportedException>(() =>
            Ask(new ChatOptions { AdditionalProperties = new() { ["service_tier"] = "flex" } }));
        Assert.Contains("service_tier", unknown.Message);
        var model = await Assert.ThrowsAsync<NotSupportedException>(() => Ask(new ChatOptions { ModelId = "gpt-4o" }));
        Assert.Contains("gpt-4o", model.Message);
        await Assert.ThrowsAsync<NotSupportedException>(() =>
            Ask(new ChatOptions { Reasoning = new ReasoningOptions { Effort = ReasoningEffort.Low } }));
        await Assert.ThrowsAsync<NotSupportedException>(() => Ask(new ChatOptions { AllowBackgroundResponses = true }));
        // the client's own model may be named
        var named = await Chat.GetResponseAsync(messages,
            new ChatOptions { ModelId = "test-model", MaxOutputTokens = 1 }, Ct);
        Assert.Equal("test-model", named.ModelId);
    }

    static readonly List<AI.ChatMessage> Story = [new(ChatRole.User, "Tell me a story.")];

    async Task<string> TextAsync(ChatOptions options) => (await Chat.GetResponseAsync(Story, options, Ct)).Text;

    [Fact]
    public async Task Top_k_of_one_makes_any_temperature_greedy()
    {
        string greedy = await TextAsync(new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });
        var free = new HashSet<string>();
        for (long seed = 1; seed <= 4; seed++)
        {
            Assert.Equal(greedy, await TextAsync(new ChatOptions
            {
                Temperature = 2, TopK = 1, Seed = seed, MaxOutputTokens = 8,
            }));
            free.Add(await TextAsync(new ChatOptions { Temperature = 2, Seed = seed, MaxOutputTokens = 8 }));
        }
        Assert.True(free.Count > 1, "without top_k the seeds draw different replies");
    }

    [Fact]
    public async Task Stop_sequences_end_the_reply_before_them()
    {
        string whole = await TextAsync(new ChatOptions { Temperature = 0, MaxOutputTokens = 16 });
        Assert.True(whole.Length >= 8, whole);
        string stop = whole.Substring(4, 3);
        var response = await Chat.GetResponseAsync(Story,
            new ChatOptions { Temperature = 0, MaxOutputTokens = 16, StopSequences = [stop] }, Ct);
        Assert.Equal(whole[..whole.IndexOf(stop, StringComparison.Ordinal)], response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task Logit_bias_from_the_additional_properties_bans_the_greedy_first_token()
    {
        var greedy = await Client.NewConversation().AskAsync("Tell me a story.",
            new SamplingOptions { Temperature = 0, MaxTokens = 8 }, Ct);
        Assert.Equal(greedy.Text, await TextAsync(new ChatOptions { Temperature = 0, MaxOutputTokens = 8 }));
        var biased = await Chat.GetResponseAsync(Story, new ChatOptions
        {
            Temperature = 0, MaxOutputTokens = 8,
            AdditionalProperties = new() { ["logit_bias"] = new Dictionary<int, int> { [greedy.TokenIds[0]] = -100 } },
        }, Ct);
        Assert.NotEqual(greedy.Text, biased.Text);
        await Assert.ThrowsAsync<ArgumentException>(() => Chat.GetResponseAsync(Story, new ChatOptions
        {
            AdditionalProperties = new() { ["logit_bias"] = "ban" },
        }, Ct));
    }
}
