namespace Weft.Abstractions;

/// <summary>
/// One conversation: its persisted history and its KV-cache handle on the device it was placed on. Turns run one at a
/// time (a second concurrent turn is refused with <see cref="WeftErrorCode.Conflict"/>); the reply streams back as it
/// is generated. Cancelling the enumeration stops generation and frees its slot. The key is
/// <see cref="ConversationKey"/>: "{tenant}/{id}".
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

    /// <summary>Removes the conversation: its history, its stored state and its KV cache; the activation goes too.
    /// False when there was nothing to remove. Refused (<see cref="WeftErrorCode.Conflict"/>) while a turn
    /// runs.</summary>
    [Alias("Delete")]
    Task<bool> DeleteAsync();
}

/// <summary>
/// Conversation grain keys: "{tenant}/{id}", so the same client-chosen id under two tenants names two conversations
/// (two histories, two KV caches, two prefix-cache salts). Tenant names hold no '/'; a key without one has no tenant.
/// </summary>
public static class ConversationKey
{
    public static string Of(string tenant, string id) => $"{tenant}/{id}";

    public static string Tenant(string key) => key.IndexOf('/') is var slash and > 0 ? key[..slash] : "";
}
