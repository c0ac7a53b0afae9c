using System.Text.Json.Serialization;

namespace Weft.Silo;

// The response shapes of the OpenAI API (and vLLM's token ids). Nulls are written, as OpenAI does (logprobs: null,
// finish_reason: null in stream chunks), except where a field is marked as appearing only on request.

sealed record ErrorBody(ErrorDetail Error);

sealed record ErrorDetail(string Message, string Type, string? Param, string Code);

sealed record HealthResponse(string Status, string Model,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error);

sealed record ModelList(IReadOnlyList<ModelCard> Data)
{
    public string Object => "list";
}

sealed record ModelCard(string Id, long Created, int MaxModelLen)
{
    public string Object => "model";
    public string OwnedBy => "weft";
}

sealed record PromptTokensDetails(int CachedTokens);

/// <summary>OpenAI's usage, and the tokens of history a conversation dropped to fit the context (only when it
/// did).</summary>
sealed record UsageInfo(int PromptTokens, int CompletionTokens, PromptTokensDetails PromptTokensDetails,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? DroppedTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

sealed record ChatMessageOut(string Role, string Content);

sealed record ChatChoice(int Index, ChatMessageOut Message, string FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds)
{
    public object? Logprobs => null;
}

sealed record ChatCompletion(string Id, long Created, string Model, IReadOnlyList<ChatChoice> Choices, UsageInfo Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? PromptTokenIds)
{
    public string Object => "chat.completion";
}

sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

sealed record ChatChunkChoice(int Index, ChatDelta Delta, string? FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds)
{
    public object? Logprobs => null;
}

sealed record ChatChunk(string Id, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageInfo? Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? PromptTokenIds)
{
    public string Object => "chat.completion.chunk";
}

sealed record CompletionChoice(int Index, string Text, string? FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds)
{
    public object? Logprobs => null;
}

/// <summary>A completion, or one chunk of a streamed completion (OpenAI uses the same object for both).</summary>
sealed record Completion(string Id, long Created, string Model, IReadOnlyList<CompletionChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageInfo? Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? PromptTokenIds)
{
    public string Object => "text_completion";
}

sealed record TokenizeResponse(int Count, int MaxModelLen, IReadOnlyList<int> Tokens);

sealed record DetokenizeResponse(string Prompt);

/// <summary>As OpenAI's DELETE /v1/conversations/{id}.</summary>
sealed record ConversationDeleted(string Id, bool Deleted)
{
    public string Object => "conversation.deleted";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelCard))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatChunk))]
[JsonSerializable(typeof(Completion))]
[JsonSerializable(typeof(TokenizeResponse))]
[JsonSerializable(typeof(DetokenizeResponse))]
[JsonSerializable(typeof(ConversationDeleted))]
sealed partial class ApiJson : JsonSerializerContext;
