using System.Text.Json;
using System.Text.Json.Serialization;

namespace Weft.Silo;

// The shapes of OpenAI's Responses API. As in ApiJson, nulls are written (previous_response_id: null, error: null)
// except where a field belongs to only some kinds of item or event.

/// <summary>A response: "in_progress" in a stream's first events, then "completed", or "incomplete" when it ran out
/// of tokens. Tools, tool_choice, text and metadata echo the request (or OpenAI's defaults).</summary>
sealed record ResponseObject(string Id, long CreatedAt, string Status, IncompleteDetails? IncompleteDetails,
    string? Instructions, int? MaxOutputTokens, string Model, IReadOnlyList<OutputItem> Output,
    bool ParallelToolCalls, string? PreviousResponseId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ConversationRef? Conversation,
    bool Store, float? Temperature, float? TopP, JsonElement ToolChoice, JsonElement Tools, JsonElement Text,
    string Truncation, ResponseUsage? Usage, JsonElement Metadata)
{
    public string Object => "response";
    public ErrorDetail? Error => null;
}

sealed record IncompleteDetails(string Reason);

sealed record ConversationRef(string Id);

/// <summary>An output item: a "message" (role and content) or a "function_call" (call id, name and
/// arguments).</summary>
sealed record OutputItem(string Type, string Id, string Status,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<OutputText>? Content = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? CallId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Arguments = null);

sealed record OutputText(string Text)
{
    public string Type => "output_text";
    public IReadOnlyList<string> Annotations => [];
}

sealed record ResponseUsage(int InputTokens, InputTokensDetails InputTokensDetails, int OutputTokens,
    OutputTokensDetails OutputTokensDetails)
{
    public int TotalTokens => InputTokens + OutputTokens;
}

sealed record InputTokensDetails(int CachedTokens);

sealed record OutputTokensDetails(int ReasoningTokens);

/// <summary>One server-sent event of a streamed response: its type, its place in the stream, and the fields of its
/// type.</summary>
sealed record ResponseEvent(string Type, int SequenceNumber)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ResponseObject? Response { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? OutputIndex { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? ItemId { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? ContentIndex { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public OutputItem? Item { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public OutputText? Part { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Delta { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Text { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Name { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Arguments { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Code { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Message { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Param { get; init; }
}

/// <summary>As OpenAI's DELETE /v1/responses/{id}.</summary>
sealed record ResponseDeleted(string Id, bool Deleted)
{
    public string Object => "response.deleted";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ResponseObject))]
[JsonSerializable(typeof(ResponseEvent))]
[JsonSerializable(typeof(ResponseDeleted))]
sealed partial class ResponsesJson : JsonSerializerContext;
