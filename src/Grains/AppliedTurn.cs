using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>
/// A turn a conversation has applied under a client's turn id (X-Turn-Id), with its reply: a client whose connection
/// broke (its silo died mid-reply, a proxy timed out) cannot tell whether the turn was applied, and resends it with
/// the same id; the conversation then returns this reply instead of running the turn a second time.
/// </summary>
[GenerateSerializer, Alias("weft.AppliedTurn")]
public sealed record AppliedTurn(
    [property: Id(0)] string TurnId,
    [property: Id(1)] string Text,
    // a List: the ADO.NET store's JSON names each value's type, and a collection expression's own type cannot be read
    [property: Id(2)] List<int> TokenIds,
    [property: Id(3)] string FinishReason,
    [property: Id(4)] Usage Usage,
    /// <summary>The prompt's token ids, kept when the turn asked for token ids (a resend asks the same).</summary>
    [property: Id(5)] List<int>? PromptTokenIds = null,
    [property: Id(6)] List<ToolCall>? ToolCalls = null)
{
    /// <summary>How many turn ids a conversation remembers: a client resends the turn it is waiting for, not one of
    /// several turns back, and each kept reply is stored with the conversation.</summary>
    public const int Kept = 8;

    /// <summary>The stored reply as one delta: the whole text, its token ids and the prompt's when asked for, its
    /// tool calls (each whole in one piece), finish reason and usage.</summary>
    public TurnDelta Replay(bool returnTokenIds) => new()
    {
        Text = Text,
        TokenIds = returnTokenIds ? TokenIds : [],
        PromptTokenIds = returnTokenIds ? PromptTokenIds : null,
        ToolCalls = ToolCalls,
        ToolCallDeltas = ToolCalls?.Select((c, i) => new ToolCallDelta(i, c.Id, c.Name, c.Arguments)).ToList(),
        FinishReason = FinishReason,
        Usage = Usage,
    };
}
