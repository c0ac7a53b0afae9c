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

/// <summary>Content is null in a reply that only calls tools, as OpenAI's.</summary>
sealed record ChatMessageOut(string Role, string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallOut>? ToolCalls);

/// <summary>A tool call in a reply.</summary>
sealed record ToolCallOut(string Id, FunctionCallOut Function)
{
    public string Type => "function";
}

sealed record FunctionCallOut(string Name, string Arguments);

/// <summary>A piece of a streamed tool call, as OpenAI's chunks carry it: the first of a call with its id, type and
/// name, every one with its place among the reply's calls and more of its arguments.</summary>
sealed record ToolCallChunk(int Index,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Type,
    FunctionCallChunk Function);

sealed record FunctionCallChunk(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name, string Arguments);

sealed record ChatChoice(int Index, ChatMessageOut Message, string FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds,
    ChatLogprobs? Logprobs);

/// <summary>A chat choice's log-probabilities: one entry per token of its content.</summary>
sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content)
{
    public object? Refusal => null;
}

/// <summary>A token as text, its UTF-8 bytes (a token may hold part of a character) and its log-probability.</summary>
sealed record ChatTokenLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes,
    IReadOnlyList<ChatTopLogprob> TopLogprobs);

sealed record ChatTopLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes);

/// <summary>The legacy completions' log-probabilities: parallel lists over the choice's tokens, each top entry a map
/// from token text to log-probability, and each token's character offset in the choice's text.</summary>
sealed record CompletionLogprobs(IReadOnlyList<string> Tokens, IReadOnlyList<float> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>> TopLogprobs, IReadOnlyList<int> TextOffset);

sealed record ChatCompletion(string Id, long Created, string Model, IReadOnlyList<ChatChoice> Choices, UsageInfo Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? PromptTokenIds)
{
    public string Object => "chat.completion";
}

sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallChunk>? ToolCalls =
        null);

sealed record ChatChunkChoice(int Index, ChatDelta Delta, string? FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds,
    ChatLogprobs? Logprobs = null);

sealed record ChatChunk(string Id, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageInfo? Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? PromptTokenIds)
{
    public string Object => "chat.completion.chunk";
}

sealed record CompletionChoice(int Index, string Text, string? FinishReason,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<int>? TokenIds,
    CompletionLogprobs? Logprobs = null);

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
