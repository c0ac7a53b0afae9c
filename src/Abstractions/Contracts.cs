namespace Weft.Abstractions;

/// <summary>One chat message. Roles: system, user, assistant and tool. An assistant message may carry the tool calls
/// it made; a tool message answers the call named by <see cref="ToolCallId"/>.</summary>
[GenerateSerializer, Immutable, Alias("weft.ChatMessage")]
public sealed record ChatMessage(
    [property: Id(0)] string Role,
    [property: Id(1)] string Content,
    [property: Id(2)] IReadOnlyList<ToolCall>? ToolCalls = null,
    [property: Id(3)] string? ToolCallId = null);

/// <summary>A function call the model made: its id ("call_..."), the function's name and its arguments as JSON
/// text.</summary>
[GenerateSerializer, Immutable, Alias("weft.ToolCall")]
public sealed record ToolCall([property: Id(0)] string Id, [property: Id(1)] string Name,
    [property: Id(2)] string Arguments);

/// <summary>A piece of a streamed tool call: the first of a call carries its id and name, every one more of its
/// arguments' text (the pieces of a call add up to its <see cref="ToolCall.Arguments"/>). Index: the call's place
/// among the reply's calls.</summary>
[GenerateSerializer, Immutable, Alias("weft.ToolCallDelta")]
public sealed record ToolCallDelta([property: Id(0)] int Index, [property: Id(1)] string? Id,
    [property: Id(2)] string? Name, [property: Id(3)] string Arguments);

/// <summary>The tools (OpenAI's array) a call the reply may start is held to, a strict function's with its parameters
/// and the others' with any object, and whether it may make several calls.</summary>
[GenerateSerializer, Immutable, Alias("weft.LazyToolCalls")]
public sealed record LazyToolCalls([property: Id(0)] string ToolsJson, [property: Id(1)] bool Parallel);

/// <summary>
/// Sampling settings of a turn (OpenAI/vLLM meanings); null fields take the defaults. Temperature 0 is greedy.
/// </summary>
[GenerateSerializer, Immutable, Alias("weft.SamplingOptions")]
public sealed record SamplingOptions
{
    [Id(0)] public float? Temperature { get; init; }
    [Id(1)] public float? TopP { get; init; }
    [Id(2)] public int? TopK { get; init; }
    [Id(3)] public float? MinP { get; init; }
    [Id(4)] public ulong? Seed { get; init; }
    /// <summary>Null: as many as the context allows.</summary>
    [Id(5)] public int? MaxTokens { get; init; }
    [Id(6)] public float? PresencePenalty { get; init; }
    [Id(7)] public float? FrequencyPenalty { get; init; }
    [Id(8)] public float? RepetitionPenalty { get; init; }
    [Id(9)] public bool IgnoreEos { get; init; }
    /// <summary>Generation stops before any of these strings; the string itself is not returned.</summary>
    [Id(10)] public IReadOnlyList<string> Stop { get; init; } = [];
    [Id(11)] public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Added to a token's logit before sampling (OpenAI's logit_bias; -100 bans a token).</summary>
    [Id(12)] public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>A JSON schema the reply must match, as compact JSON output; "{}" for any JSON object (json_object).
    /// Null: unconstrained.</summary>
    [Id(13)] public string? JsonSchema { get; init; }
    /// <summary>Report each sampled token's log-probability and this many of the most likely tokens' (0 to 20);
    /// null: none.</summary>
    [Id(14)] public int? Logprobs { get; init; }
    /// <summary>A GBNF grammar the reply must follow (llama.cpp's grammar field); null: unconstrained. Not together
    /// with <see cref="JsonSchema"/>.</summary>
    [Id(15)] public string? Grammar { get; init; }
    /// <summary>tool_choice auto with strict functions: a tool call the reply starts, in the model family's format,
    /// is held to these tools' schemas from its marker on; the text before is free. Null: none.</summary>
    [Id(16)] public LazyToolCalls? LazyToolCalls { get; init; }

    /// <summary>The most alternatives <see cref="Logprobs"/> may ask for: OpenAI's top_logprobs limit.</summary>
    public const int MaxLogprobs = 20;
}

/// <summary>A sampled token's log-probability (the log-softmax of the model's raw logits, or with the silo's
/// logprobs-mode processed_logprobs of the distribution it was drawn from) and the most likely tokens' at its step,
/// most likely first.</summary>
[GenerateSerializer, Immutable, Alias("weft.TokenLogprob")]
public sealed record TokenLogprob(
    [property: Id(0)] int Token,
    [property: Id(1)] float Logprob,
    [property: Id(2)] IReadOnlyList<int> TopIds,
    [property: Id(3)] IReadOnlyList<float> TopLogprobs);

/// <summary>
/// A turn of a conversation. Exactly one of <see cref="Messages"/>, <see cref="Prompt"/> or
/// <see cref="PromptTokenIds"/> is set. Chat messages are appended to the conversation's history, or replace it when
/// <see cref="ReplaceHistory"/> is set (the OpenAI API sends the whole conversation with every request). Either
/// way, tokens the conversation's KV cache already holds are not computed again.
/// </summary>
[GenerateSerializer, Immutable, Alias("weft.TurnRequest")]
public sealed record TurnRequest
{
    [Id(0)] public IReadOnlyList<ChatMessage>? Messages { get; init; }
    [Id(1)] public bool ReplaceHistory { get; init; }
    /// <summary>A raw completion prompt, tokenized as is (with BOS where the model adds one).</summary>
    [Id(2)] public string? Prompt { get; init; }
    [Id(3)] public IReadOnlyList<int>? PromptTokenIds { get; init; }
    [Id(4)] public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Lower runs first under load.</summary>
    [Id(5)] public int Priority { get; init; }
    /// <summary>Send the prompt's token ids with the first delta and each delta's token ids.</summary>
    [Id(6)] public bool ReturnTokenIds { get; init; }
    /// <summary>A one-off turn (the HTTP API without a conversation id): nothing of it is persisted and its KV blocks
    /// are freed when it ends, so it costs no storage writes and leaves nothing behind.</summary>
    [Id(7)] public bool Ephemeral { get; init; }
    /// <summary>What happens when the conversation no longer fits the model's context; null keeps the
    /// conversation's setting (<see cref="Abstractions.Truncation.Auto"/> until a turn sets another, which then
    /// sticks).</summary>
    [Id(8)] public Truncation? Truncation { get; init; }
    /// <summary>The client's id of this turn (X-Turn-Id): a turn resent with an id the conversation has already
    /// applied is not run again; the reply it stored is returned.</summary>
    [Id(20)] public string? TurnId { get; init; }
    /// <summary>The functions the model may call, as OpenAI's "tools" array in JSON; null for none. They are given
    /// to the chat template and the reply is parsed for calls.</summary>
    [Id(9)] public string? ToolsJson { get; init; }
    /// <summary>OpenAI's parallel_tool_calls: false keeps only the first call a reply makes (forced calls are held
    /// to one by their schema).</summary>
    [Id(11)] public bool ParallelToolCalls { get; init; } = true;
    /// <summary>Independent replies to the same prompt (OpenAI's n), each delta naming its
    /// <see cref="TurnDelta.Choice"/>; more than one only for an <see cref="Ephemeral"/> turn, since a conversation
    /// keeps one reply per turn.</summary>
    [Id(10)] public int Choices { get; init; } = 1;
    /// <summary>The id the client got for this request (the HTTP API's chatcmpl-…, cmpl-… or resp_…), which names
    /// it in the log; null: the <see cref="TurnId"/>, or a fresh id.</summary>
    [Id(21)] public string? RequestId { get; init; }

    /// <summary>The most <see cref="Choices"/> a turn may ask for: each is a sequence of the batch.</summary>
    public const int MaxChoices = 8;
}

/// <summary>What a conversation does when its next turn would not fit the model's context.</summary>
[GenerateSerializer, Alias("weft.Truncation")]
public enum Truncation
{
    /// <summary>The oldest whole turns are dropped (leading system messages stay) until the turn fits; the reply's
    /// <see cref="Usage.DroppedTokens"/> says how many tokens went.</summary>
    Auto,
    /// <summary>The turn is refused with <see cref="WeftErrorCode.ContextLengthExceeded"/>.</summary>
    Disabled,
}

[GenerateSerializer, Immutable, Alias("weft.Usage")]
public sealed record Usage(
    [property: Id(0)] int PromptTokens,
    [property: Id(1)] int CompletionTokens,
    [property: Id(2)] int CachedTokens,
    [property: Id(3)] int DroppedTokens = 0)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>
/// A piece of a streamed reply. The last delta of a turn carries <see cref="FinishReason"/> ("stop", "length" or
/// "tool_calls"), <see cref="Usage"/> and the tool calls parsed from the reply. Text is held back while it may still
/// be the start of a stop string or of an incomplete UTF-8 character.
/// </summary>
[GenerateSerializer, Immutable, Alias("weft.TurnDelta")]
public sealed record TurnDelta
{
    [Id(0)] public string Text { get; init; } = "";
    [Id(1)] public IReadOnlyList<int> TokenIds { get; init; } = [];
    [Id(2)] public string? FinishReason { get; init; }
    [Id(3)] public Usage? Usage { get; init; }
    /// <summary>Only on the first delta, when the request asked for token ids.</summary>
    [Id(4)] public IReadOnlyList<int>? PromptTokenIds { get; init; }
    /// <summary>Only on the last delta of a turn that offered tools: the calls the reply made (their text is not in
    /// any delta's <see cref="Text"/>).</summary>
    [Id(5)] public IReadOnlyList<ToolCall>? ToolCalls { get; init; }
    /// <summary>The pieces of the reply's tool calls that came with this delta, in order; a stream shows calls by
    /// them, as they are written.</summary>
    [Id(8)] public IReadOnlyList<ToolCallDelta>? ToolCallDeltas { get; init; }
    /// <summary>When the turn asked for them: one per token sampled since the last delta, in order.</summary>
    [Id(6)] public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
    /// <summary>Which of the turn's <see cref="TurnRequest.Choices"/> this delta belongs to; each ends with a delta of
    /// its own that carries its finish reason and usage (its completion tokens).</summary>
    [Id(7)] public int Choice { get; init; }
}

[GenerateSerializer, Immutable, Alias("weft.ConversationHistory")]
public sealed record ConversationHistory(
    [property: Id(0)] IReadOnlyList<ChatMessage> Messages,
    [property: Id(1)] int TokenCount,
    [property: Id(2)] string? Silo);
