using Weft.Abstractions;

namespace Weft.Grains.Tests;

public sealed class ConversationTests(WeftCluster cluster) : IClassFixture<WeftCluster>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static SamplingOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true };

    [Fact]
    public async Task Concurrent_conversations_produce_what_each_produces_alone()
    {
        const int n = 128;
        TurnRequest Request(int i) => new()
        {
            PromptTokenIds = [1, .. Enumerable.Range(0, 3 + i % 29).Select(j => 259 + (i * 131 + j * 17) % 700)],
            Sampling = i % 2 == 0
                ? new SamplingOptions { Temperature = 0, MaxTokens = 4 + i % 13, IgnoreEos = true }
                : new SamplingOptions
                { Temperature = 0.9f, TopP = 0.95f, Seed = (ulong)i, MaxTokens = 4 + i % 13, IgnoreEos = true },
        };

        var alone = new TurnResult[n];
        for (int i = 0; i < n; i++)
            alone[i] = await cluster.Grains.GetGrain<IConversationGrain>($"alone-{i}").RunAsync(Request(i), Ct);
        var together = await Task.WhenAll(Enumerable.Range(0, n)
            .Select(i => cluster.Grains.GetGrain<IConversationGrain>($"together-{i}").RunAsync(Request(i), Ct)));

        for (int i = 0; i < n; i++)
        {
            Assert.Equal(alone[i].TokenIds, together[i].TokenIds);
            Assert.Equal(alone[i].Text, together[i].Text);
            Assert.Equal(4 + i % 13, together[i].Usage.CompletionTokens);
        }
        var stats = await cluster.BatchGrain().GetStatsAsync();
        Assert.True(stats.MeanBatchSize > 1,
            $"concurrent turns should share ticks (mean batch {stats.MeanBatchSize:F1})");
    }

    [Fact]
    public async Task Second_turn_computes_only_its_new_tokens_and_matches_a_fresh_conversation()
    {
        var conversation = cluster.Grains.GetGrain<IConversationGrain>("multi-turn");
        var first = await conversation.RunAsync(Turns.Chat("Tell me about the sea.", Greedy(12)), Ct);
        Assert.Equal("length", first.FinishReason);
        Assert.Equal(0, first.Usage.CachedTokens);

        var second = await conversation.RunAsync(Turns.Chat("And the mountains?", Greedy(12)), Ct);
        // Everything of turn 1 was computed except its last sampled token, which turn 2 computes with its own new
        // tokens.
        Assert.Equal(first.Usage.PromptTokens + first.Usage.CompletionTokens - 1, second.Usage.CachedTokens);
        Assert.Equal([.. first.PromptTokenIds, .. first.TokenIds],
            second.PromptTokenIds.Take(first.PromptTokenIds.Count + first.TokenIds.Count));

        // The same tokens given to a conversation of its own (no KV handle of its own; the shared prefix cache may
        // serve its full blocks) produce the same reply.
        var fresh = await cluster.Grains.GetGrain<IConversationGrain>("multi-turn-fresh")
            .RunAsync(new TurnRequest { PromptTokenIds = second.PromptTokenIds, Sampling = Greedy(12) }, Ct);
        Assert.Equal(second.TokenIds, fresh.TokenIds);

        var history = await conversation.GetHistoryAsync();
        Assert.Equal(["user", "assistant", "user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal(second.Text, history.Messages[^1].Content);
    }

    [Fact]
    public async Task Reset_forgets_the_history()
    {
        var conversation = cluster.Grains.GetGrain<IConversationGrain>("reset");
        var first = await conversation.RunAsync(Turns.Chat("Hello", Greedy(4)), Ct);
        await conversation.ResetAsync();
        Assert.Empty((await conversation.GetHistoryAsync()).Messages);
        var again = await conversation.RunAsync(Turns.Chat("Hello", Greedy(4)), Ct);
        Assert.Equal(first.PromptTokenIds, again.PromptTokenIds);
        Assert.Equal(first.TokenIds, again.TokenIds);
    }

    [Fact]
    public async Task Stop_string_ends_the_reply_before_it()
    {
        var request = new TurnRequest { PromptTokenIds = [1, 300, 301, 302], Sampling = Greedy(24) };
        var full = await cluster.Grains.GetGrain<IConversationGrain>("stop-a").RunAsync(request, Ct);
        string stop = full.Text.Substring(full.Text.Length / 2, 3);
        var cut = await cluster.Grains.GetGrain<IConversationGrain>("stop-b")
            .RunAsync(request with { Sampling = request.Sampling with { Stop = [stop] } }, Ct);
        Assert.Equal("stop", cut.FinishReason);
        Assert.Equal(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
    }

    static string Words(int n, int seed) =>
        string.Join(' ', Enumerable.Range(0, n).Select(i => $"w{(i * 7 + seed) % 97}"));

    /// <summary>Turns of long user messages on a conversation until one is cut (at most ten).</summary>
    static async Task<(TurnResult Cut, List<ChatMessage> Sent)> TalkPastTheContext(IConversationGrain c,
        Truncation? truncation = null)
    {
        var sent = new List<ChatMessage> { new("system", "Answer briefly.") };
        for (int turn = 0; turn < 10; turn++)
        {
            var messages = turn == 0 ? sent.ToList() : [];
            messages.Add(new("user", Words(90, turn)));
            sent.Add(messages[^1]);
            var r = await c.RunAsync(new TurnRequest
            {
                Messages = messages, Sampling = Greedy(16),
                Truncation = truncation
            }, Ct);
            if (r.Usage.DroppedTokens > 0) return (r, sent);
            sent.Add(new("assistant", r.Text));
        }
        throw new InvalidOperationException("ten turns of 90 words never outgrew a 1024-token context");
    }

    [Fact]
    public async Task A_conversation_past_the_context_drops_its_oldest_turns_and_keeps_the_system_prompt()
    {
        var c = cluster.Grains.GetGrain<IConversationGrain>("past-context");
        var (cut, sent) = await TalkPastTheContext(c);

        Assert.True(cut.Usage.PromptTokens + 16 <= 1024, $"{cut.Usage.PromptTokens} prompt tokens"); // the context
        var history = (await c.GetHistoryAsync()).Messages;
        Assert.Equal(sent[0], history[0]);
        Assert.Equal(sent[^1], history[^2]);
        Assert.DoesNotContain(sent[1], history);
        // the kept turns are whole and in order: the history is the system prompt and a tail of what was sent
        Assert.Equal(sent[^(history.Count - 2)..], history.Skip(1).SkipLast(1));
        // the reply is what a fresh conversation of the kept messages gives: the reused KV cache held nothing stale
        var fresh = await cluster.Grains.GetGrain<IConversationGrain>("past-context-fresh").RunAsync(
            new TurnRequest { Messages = [.. history.SkipLast(1)], Sampling = Greedy(16) }, Ct);
        Assert.Equal(fresh.TokenIds, cut.TokenIds);
        Assert.Equal(0, fresh.Usage.DroppedTokens);
    }

    [Fact]
    public async Task A_conversation_with_truncation_disabled_is_refused_past_the_context_and_keeps_the_setting()
    {
        var c = cluster.Grains.GetGrain<IConversationGrain>("no-truncation");
        await c.RunAsync(new TurnRequest
        {
            Messages = [new("user", "hello")], Sampling = Greedy(4),
            Truncation = Truncation.Disabled
        }, Ct);
        // later turns give no setting: the conversation's own applies
        var e = await Assert.ThrowsAsync<WeftException>(() => TalkPastTheContext(c));
        Assert.Equal(WeftErrorCode.ContextLengthExceeded, e.Code);
        Assert.Contains("truncation is disabled for this conversation", e.Message);
        Assert.Contains("\"truncation\": \"auto\"", e.Message);
        var history = (await c.GetHistoryAsync()).Messages;
        Assert.Equal("hello", history[0].Content);
    }

    [Fact]
    public async Task A_conversation_cut_without_max_tokens_keeps_room_for_a_long_reply_turn_after_turn()
    {
        int reserve = cluster.Host.TruncationReplyTokens;
        Assert.Equal(1024 / 4, reserve);
        // turns far shorter than the reserve: cut only to fit, the prompt would leave a reply of less than a turn
        var history = new List<ChatMessage> { new("system", "Answer briefly.") };
        for (int turn = 0; turn < 30; turn++)
            history.AddRange([new("user", Words(30, turn)), new("assistant", "Noted.")]);
        history.Add(new("user", "And now?"));
        var c = cluster.Grains.GetGrain<IConversationGrain>("cut-without-max-tokens");
        var unbounded = new SamplingOptions { Temperature = 0, IgnoreEos = true };

        var first = await c.RunAsync(new TurnRequest { Messages = history, Sampling = unbounded }, Ct);
        // the reply ran to the end of the context, so the next turn must cut again, and again keeps the room
        var second = await c.RunAsync(Turns.Chat("Go on.", unbounded), Ct);
        foreach (var r in new[] { first, second })
        {
            Assert.True(r.Usage.DroppedTokens > 0);
            Assert.Equal("length", r.FinishReason);
            Assert.True(r.Usage.CompletionTokens >= reserve, $"{r.Usage.CompletionTokens} tokens of reply");
            Assert.Equal(1024, r.Usage.PromptTokens + r.Usage.CompletionTokens);
        }
        Assert.Equal("system", (await c.GetHistoryAsync()).Messages[0].Role);
    }

    [Fact]
    public async Task Bad_requests_are_refused_with_a_clear_error()
    {
        var c = cluster.Grains.GetGrain<IConversationGrain>("bad");
        var e1 = await Assert.ThrowsAsync<WeftException>(() =>
            c.RunAsync(new TurnRequest { PromptTokenIds = [1, 5000], Sampling = Greedy(4) }, Ct));
        Assert.Equal(WeftErrorCode.InvalidRequest, e1.Code);
        Assert.Contains("token id 5000", e1.Message);
        var e2 = await Assert.ThrowsAsync<WeftException>(() =>
            c.RunAsync(new TurnRequest { PromptTokenIds = [1, 2, 3], Sampling = new() { Temperature = -1 } }, Ct));
        Assert.Contains("temperature", e2.Message);
        var e3 = await Assert.ThrowsAsync<WeftException>(() => c.RunAsync(
            new TurnRequest { PromptTokenIds = [.. Enumerable.Repeat(300, 1000)], Sampling = Greedy(100) }, Ct));
        Assert.Equal(WeftErrorCode.ContextLengthExceeded, e3.Code);
        var e4 = await Assert.ThrowsAsync<WeftException>(() =>
            c.RunAsync(Turns.Chat("hi", Greedy(4)) with { Messages = [new ChatMessage("robot", "hi")] }, Ct));
        Assert.Equal(WeftErrorCode.InvalidRequest, e4.Code);
        Assert.Contains("robot", e4.Message);
        // the conversation still works afterwards
        Assert.Equal(4, (await c.RunAsync(Turns.Chat("hi", Greedy(4)), Ct)).Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_reply_read_from_the_local_channel_equals_the_grain_stream_and_the_stats_split_the_time()
    {
        int[] prompt = [1, 310, 311, 312, 313];
        var batch = cluster.BatchGrain();
        var streamed = new List<int>();
        var request = new GenerationRequest { PromptTokens = prompt, Sampling = Greedy(8) };
        await foreach (var d in batch.GenerateAsync(request, Ct)) streamed.AddRange(d.TokenIds);
        var before = await batch.GetStatsAsync();

        var local = await cluster.Grains.GetGrain<IConversationGrain>("local-channel")
            .RunAsync(new TurnRequest { PromptTokenIds = prompt, Sampling = Greedy(8) }, Ct);

        Assert.Equal(streamed, local.TokenIds);
        var after = await batch.GetStatsAsync();
        Assert.Equal(1, after.FirstTokens - before.FirstTokens);
        Assert.True(after.PrefillMs > before.PrefillMs, "the first token's forward pass takes time");
        Assert.True(after.QueueMs >= before.QueueMs);
        // eight tokens alone: eight back-to-back forward passes, seven gaps between them
        double cycle = after.DeviceCycleMs - before.DeviceCycleMs, idle = after.DeviceIdleMs - before.DeviceIdleMs;
        Assert.True(cycle > 0 && idle >= 0 && idle < cycle, $"idle {idle:F2} ms of {cycle:F2} ms");
    }

    [Fact]
    public async Task Starting_on_a_channel_no_one_registered_on_the_silo_admits_nothing()
    {
        var batch = cluster.BatchGrain();
        var request = new GenerationRequest { PromptTokens = [1, 320, 321], Sampling = Greedy(4) };
        Assert.False(await batch.StartLocalAsync(request, Guid.NewGuid()));
        var load = (await batch.GetStatsAsync()).Load;
        Assert.Equal(0, load.Running + load.Waiting);
    }
}
