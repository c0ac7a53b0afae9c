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
}

/// <summary>A completed turn: the reply, the tool calls it made (when tools were offered) and its accounting.</summary>
public sealed record WeftReply(string Text, string FinishReason, Usage Usage, IReadOnlyList<int> TokenIds,
    IReadOnlyList<ToolCall>? ToolCalls = null);

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

    public static async Task<WeftReply> CollectAsync(IAsyncEnumerable<TurnDelta> deltas)
    {
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        TurnDelta? last = null;
        await foreach (var d in deltas)
        {
            text.Append(d.Text);
            tokens.AddRange(d.TokenIds);
            last = d;
        }
        return new WeftReply(text.ToString(), last?.FinishReason ?? "stop", last?.Usage ?? new Usage(0, 0, 0), tokens,
            last?.ToolCalls);
    }

    public Task<ConversationHistory> GetHistoryAsync() => grain.GetHistoryAsync();

    /// <summary>Forgets the history and frees the conversation's KV cache.</summary>
    public Task ResetAsync() => grain.ResetAsync();

    /// <summary>Removes the conversation: history, stored state and KV cache (as DELETE /v1/conversations/{id}).
    /// False when there was nothing to remove; a <see cref="WeftException"/> with
    /// <see cref="WeftErrorCode.Conflict"/> while a turn runs.</summary>
    public Task<bool> DeleteAsync() => grain.DeleteAsync();
}
