namespace Weft.Abstractions;

/// <summary>
/// One conversation: its persisted history and its KV-cache handle on the device it was placed on. Turns run one at a
/// time; the reply streams back as it is generated. Cancelling the enumeration stops generation and frees its slot.
/// </summary>
[Alias("weft.IConversationGrain")]
public interface IConversationGrain : IGrainWithStringKey
{
    [Alias("Send")]
    IAsyncEnumerable<TurnDelta> SendAsync(TurnRequest request, CancellationToken cancellationToken = default);

    [Alias("GetHistory")]
    Task<ConversationHistory> GetHistoryAsync();

    /// <summary>Forgets the history and releases the KV cache.</summary>
    [Alias("Reset")]
    Task ResetAsync();
}
