using Weft.Abstractions;

namespace Weft.Client;

/// <summary>Entry point of the SDK: conversations of a Weft cluster, reached through an Orleans cluster client, as
/// one tenant (by default the HTTP API's tenant when it has a single key or none).</summary>
public sealed class WeftClient(IClusterClient cluster, string tenant = WeftDefaults.Tenant)
{
    public string Tenant { get; } = tenant;

    /// <summary>The conversation with this id (created on first use, placed on the silo with the most free KV
    /// capacity).</summary>
    public WeftConversation Conversation(string id) =>
        new(id, cluster.GetGrain<IConversationGrain>(ConversationKey.Of(Tenant, id)));

    public WeftConversation NewConversation() => Conversation(Guid.NewGuid().ToString("n"));

    /// <summary>
    /// <paramref name="n"/> independent replies to the same messages (OpenAI's n, up to
    /// <see cref="TurnRequest.MaxChoices"/>), choice i drawn with seed + i. A conversation keeps one reply per turn, so
    /// this runs as a one-off turn that keeps nothing; the replies after the first reuse the first's prompt from the
    /// prefix cache.
    /// </summary>
    public async Task<IReadOnlyList<WeftReply>> ChoicesAsync(IReadOnlyList<ChatMessage> messages, int n,
        SamplingOptions? sampling = null, CancellationToken cancellationToken = default)
    {
        var request = new TurnRequest
        {
            Messages = messages, ReplaceHistory = true, Ephemeral = true, Choices = n, Sampling = sampling ?? new(),
            ReturnTokenIds = true,
        };
        return await WeftConversation.CollectChoicesAsync(NewConversation().SendAsync(request, cancellationToken), n);
    }
}

/// <summary>A completed turn: the reply, the tool calls it made (when tools were offered), its accounting and, when
/// <see cref="SamplingOptions.Logprobs"/> asked for them, each token's log-probabilities.</summary>
public sealed record WeftReply(string Text, string FinishReason, Usage Usage, IReadOnlyList<int> TokenIds,
    IReadOnlyList<ToolCall>? ToolCalls = null, IReadOnlyList<TokenLogprob>? Logprobs = null);

/// <summary>One conversation. Its history lives in the grain; each turn sends only the new message.</summary>
public sealed class WeftConversation(string id, IConversationGrain grain)
{
    public string Id { get; } = id;

    /// <summary>Appends a user message and streams the assistant's reply as it is generated.</summary>
    public IAsyncEnumerable<TurnDelta> SendAsync(string userMessage, SamplingOptions? sampling = null,
        CancellationToken cancellationToken = default) =>
        SendAsync(new TurnRequest
        {
            Messages = [new ChatMessage("user", userMessage)], Sampling = sampling ?? new(), ReturnTokenIds = true
        }, cancellationToken);

    public IAsyncEnumerable<TurnDelta> SendAsync(TurnRequest request, CancellationToken cancellationToken = default) =>
        grain.SendAsync(request, cancellationToken);

    /// <summary>Appends a user message and waits for the whole reply.</summary>
    public async Task<WeftReply> AskAsync(string userMessage, SamplingOptions? sampling = null,
        CancellationToken cancellationToken = default) =>
        await CollectAsync(SendAsync(userMessage, sampling, cancellationToken));

    public static async Task<WeftReply> CollectAsync(IAsyncEnumerable<TurnDelta> deltas) =>
        (await CollectChoicesAsync(deltas, 1))[0];

    /// <summary>The replies of a turn of <paramref name="choices"/> choices, by
    /// <see cref="TurnDelta.Choice"/>.</summary>
    public static async Task<IReadOnlyList<WeftReply>> CollectChoicesAsync(IAsyncEnumerable<TurnDelta> deltas,
        int choices)
    {
        var texts = new System.Text.StringBuilder[choices];
        var tokens = new List<int>[choices];
        var logprobs = new List<TokenLogprob>?[choices];
        var lasts = new TurnDelta?[choices];
        for (int c = 0; c < choices; c++) (texts[c], tokens[c]) = (new(), []);
        await foreach (var d in deltas)
        {
            texts[d.Choice].Append(d.Text);
            tokens[d.Choice].AddRange(d.TokenIds);
            if (d.Logprobs is { } l) (logprobs[d.Choice] ??= []).AddRange(l);
            lasts[d.Choice] = d;
        }
        return [.. Enumerable.Range(0, choices).Select(c => new WeftReply(texts[c].ToString(),
            lasts[c]?.FinishReason ?? "stop", lasts[c]?.Usage ?? new Usage(0, 0, 0), tokens[c], lasts[c]?.ToolCalls,
            logprobs[c]))];
    }

    public Task<ConversationHistory> GetHistoryAsync() => grain.GetHistoryAsync();

    /// <summary>Forgets the history and frees the conversation's KV cache.</summary>
    public Task ResetAsync() => grain.ResetAsync();

    /// <summary>Removes the conversation: history, stored state and KV cache (as DELETE /v1/conversations/{id}).
    /// False when there was nothing to remove; a <see cref="WeftException"/> with
    /// <see cref="WeftErrorCode.Conflict"/> while a turn runs.</summary>
    public Task<bool> DeleteAsync() => grain.DeleteAsync();
}
