using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Weft.Abstractions;
using AI = Microsoft.Extensions.AI;

namespace Weft.Client;

/// <summary>
/// Weft behind Microsoft.Extensions.AI's <see cref="IChatClient"/>. With <see cref="ChatOptions.ConversationId"/> the
/// service keeps the history, as in that abstraction's stateful mode: only the new messages are sent and the grain
/// appends them. Without it the messages are the whole conversation; the response then names the conversation it
/// created, so a caller can continue statefully.
/// <para>
/// OpenAI's request fields that <see cref="ChatOptions"/> has no property for go in
/// <see cref="ChatOptions.AdditionalProperties"/> under their OpenAI names, as Microsoft.Extensions.AI's OpenAI client
/// reads them: "logprobs" (bool) and "top_logprobs" (0 to 20), "grammar" (a GBNF grammar, llama.cpp's field) and "n"
/// (1 only: a response is one reply; <see cref="WeftClient.ChoicesAsync"/> gives several) and "logit_bias" (token ids
/// to biases from -100 to 100). Any other key, and options Weft cannot honour (another ModelId, Reasoning,
/// background responses, a RawRepresentationFactory), throw rather than being dropped. Log-probabilities come
/// back under <see cref="LogprobsKey"/> in the response's (and each update's) AdditionalProperties, where that client
/// puts OpenAI's, as a list of <see cref="TokenLogprob"/>: token ids, since the client holds no tokenizer.
/// </para>
/// </summary>
public sealed class WeftChatClient(WeftClient client, string modelId = "weft") : IChatClient
{
    /// <summary>The AdditionalProperties key of the log-probabilities (Microsoft.Extensions.AI.OpenAI's
    /// name).</summary>
    public const string LogprobsKey = "ContentTokenLogProbabilities";

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var (conversation, request) = Prepare(messages, options);
        var reply = await WeftConversation.CollectAsync(conversation.SendAsync(request, cancellationToken));
        var message = new AI.ChatMessage(ChatRole.Assistant, reply.Text);
        foreach (var call in reply.ToolCalls ?? []) message.Contents.Add(Call(call));
        return new ChatResponse(message)
        {
            ConversationId = conversation.Id,
            ModelId = modelId,
            FinishReason = FinishReason(reply.FinishReason),
            Usage = Usage(reply.Usage),
            CreatedAt = DateTimeOffset.UtcNow,
            AdditionalProperties = reply.Logprobs is { } logprobs ? new() { [LogprobsKey] = logprobs } : null,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AI.ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (conversation, request) = Prepare(messages, options);
        string responseId = Guid.NewGuid().ToString("n");
        await foreach (var d in conversation.SendAsync(request, cancellationToken))
        {
            var update = new ChatResponseUpdate(ChatRole.Assistant, d.Text)
            {
                ConversationId = conversation.Id,
                ResponseId = responseId,
                ModelId = modelId,
                FinishReason = d.FinishReason is null ? null : FinishReason(d.FinishReason),
                AdditionalProperties = d.Logprobs is { Count: > 0 } logprobs
                    ? new() { [LogprobsKey] = logprobs } : null,
            };
            foreach (var call in d.ToolCalls ?? []) update.Contents.Add(Call(call));
            if (d.Usage is { } usage) update.Contents.Add(new UsageContent(Usage(usage)));
            yield return update;
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("weft", null, modelId)
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType == typeof(WeftClient) ? client
        : null;

    public void Dispose() { }

    (WeftConversation, TurnRequest) Prepare(IEnumerable<AI.ChatMessage> messages, ChatOptions? options)
    {
        var turns = messages.SelectMany(ToTurns).ToList();
        bool stateful = options?.ConversationId is not null;
        if (options?.Instructions is { Length: > 0 } instructions)
        {
            // The service keeps a conversation's history; instructions slipped in before each new turn would rewrite
            // that history (and most chat templates take a system message only at the start).
            if (stateful)
                throw new NotSupportedException("Instructions cannot be added to a conversation the service holds " +
                    "(ConversationId set); give them as the system message of its first turn");
            turns.Insert(0, new Abstractions.ChatMessage("system", instructions));
        }
        Refuse(options);
        var conversation = stateful ? client.Conversation(options!.ConversationId!) : client.NewConversation();
        var (tools, schema) = Tools(options);
        var extra = options?.AdditionalProperties;
        string? grammar = Extra<string>(extra, "grammar");
        if (grammar is not null && schema is not null)
            throw new NotSupportedException("a grammar and a JSON response format or a required tool call cannot " +
                "both shape a reply");
        if (Extra<int?>(extra, "n") is { } n && n != 1)
            throw new NotSupportedException($"a chat response is one reply, not n = {n}; " +
                "WeftClient.ChoicesAsync gives several");
        return (conversation, new TurnRequest
        {
            Messages = turns,
            ReplaceHistory = !stateful,
            Sampling = Sampling(options) with
            {
                JsonSchema = schema,
                Grammar = grammar,
                Logprobs = Logprobs(extra),
                LogitBias = LogitBias(extra),
            },
            ToolsJson = tools,
            ParallelToolCalls = options?.AllowMultipleToolCalls ?? true,
        });
    }

    static readonly HashSet<string> ExtraKeys = ["logprobs", "top_logprobs", "grammar", "n", "logit_bias"];

    /// <summary>Options this client has no way to honour: an unknown additional property, another model, reasoning,
    /// background responses or an OpenAI-specific raw representation.</summary>
    void Refuse(ChatOptions? o)
    {
        if (o is null) return;
        if (o.AdditionalProperties?.Keys.FirstOrDefault(k => !ExtraKeys.Contains(k)) is { } key)
            throw new NotSupportedException($"the additional property \"{key}\" is not supported by Weft; it takes " +
                string.Join(", ", ExtraKeys.Select(k => $"\"{k}\"")));
        if (o.ModelId is { } model && model != modelId)
            throw new NotSupportedException($"this client serves the model '{modelId}', not '{model}'");
        if (o.Reasoning is not null)
            throw new NotSupportedException("Weft does not control reasoning (ChatOptions.Reasoning)");
        if (o.AllowBackgroundResponses is true || o.ContinuationToken is not null)
            throw new NotSupportedException("Weft does not run background responses");
        if (o.RawRepresentationFactory is not null)
            throw new NotSupportedException("Weft has no raw request representation (RawRepresentationFactory)");
    }

    /// <summary>"logit_bias": token ids (numbers, or strings as OpenAI's JSON keys) to biases; the service checks
    /// them against the vocabulary and the range -100 to 100.</summary>
    static Dictionary<int, float>? LogitBias(AdditionalPropertiesDictionary? extra)
    {
        if (extra is null || !extra.TryGetValue("logit_bias", out object? value) || value is null) return null;
        IEnumerable<(object Key, object? Bias)> entries = value switch
        {
            JsonElement { ValueKind: JsonValueKind.Object } json =>
                json.EnumerateObject().Select(p => ((object)p.Name, (object?)p.Value.GetDouble())),
            System.Collections.IDictionary d => d.Keys.Cast<object>().Select(k => (k, d[k])),
            _ => throw new ArgumentException("\"logit_bias\" is a map of token ids to biases, not a " +
                value.GetType().Name),
        };
        try
        {
            var map = entries.ToDictionary(e => Convert.ToInt32(e.Key, CultureInfo.InvariantCulture),
                e => Convert.ToSingle(e.Bias, CultureInfo.InvariantCulture));
            return map.Count == 0 ? null : map;
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or OverflowException)
        {
            throw new ArgumentException("\"logit_bias\" maps token ids to numbers", e);
        }
    }

    /// <summary>"logprobs": true with "top_logprobs" alternatives (0 when absent), as OpenAI's request.</summary>
    static int? Logprobs(AdditionalPropertiesDictionary? extra)
    {
        bool wanted = Extra<bool?>(extra, "logprobs") ?? false;
        int? top = Extra<int?>(extra, "top_logprobs");
        if (top is not null && !wanted) throw new ArgumentException("\"top_logprobs\" needs \"logprobs\": true");
        if (top is < 0 or > SamplingOptions.MaxLogprobs)
            throw new ArgumentException($"\"top_logprobs\" must be between 0 and {SamplingOptions.MaxLogprobs}");
        return wanted ? top ?? 0 : null;
    }

    /// <summary>An additional property as <typeparamref name="T"/> (numbers of any integer type, and JSON values, as
    /// a deserialised request carries them); absent is default, another type throws.</summary>
    static T? Extra<T>(AdditionalPropertiesDictionary? extra, string key)
    {
        if (extra is null || !extra.TryGetValue(key, out object? value) || value is null) return default;
        try
        {
            return value is JsonElement json ? json.Deserialize<T>(AIJsonUtilities.DefaultOptions)
                : value is T typed ? typed
                : (T)Convert.ChangeType(value, Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T));
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException
            or JsonException)
        {
            throw new ArgumentException($"the additional property \"{key}\" is a {value.GetType().Name}, " +
                $"not a {(Nullable.GetUnderlyingType(typeof(T)) ?? typeof(T)).Name}", e);
        }
    }

    /// <summary>
    /// The tools as OpenAI's array, and the schema the reply must follow: forced calls (ToolMode RequireAny or a
    /// named function) or ResponseFormat's JSON. ToolMode None offers no tools. Tools other than functions, and a JSON
    /// format beside forced calls, cannot be honoured and throw.
    /// </summary>
    static (string? ToolsJson, string? Schema) Tools(ChatOptions? o)
    {
        string? format = o?.ResponseFormat switch
        {
            null or ChatResponseFormatText => null,
            ChatResponseFormatJson { Schema: { } schema } => schema.GetRawText(),
            ChatResponseFormatJson => "{}",
            var other => throw new NotSupportedException($"Weft does not support the response format {other}"),
        };
        if (o?.Tools is not { Count: > 0 } declared || o.ToolMode is NoneChatToolMode) return (null, format);
        var tools = new JsonArray();
        foreach (var tool in declared)
        {
            if (tool is not AIFunctionDeclaration f)
                throw new NotSupportedException($"Weft calls functions only, not the tool '{tool.Name}' ({tool})");
            tools.Add(new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = f.Name,
                    ["description"] = f.Description,
                    ["parameters"] = JsonNode.Parse(f.JsonSchema.GetRawText()),
                },
            });
        }
        string json = tools.ToJsonString();
        if (o.ToolMode is not RequiredChatToolMode required) return (json, format);
        if (format is not null)
            throw new NotSupportedException(
                "a required tool call and a JSON response format cannot both shape a reply");
        return (json, ToolCallSchema.For(json, required.RequiredFunctionName, o.AllowMultipleToolCalls ?? true));
    }

    static IEnumerable<Abstractions.ChatMessage> ToTurns(AI.ChatMessage m)
    {
        if (m.Role == ChatRole.Tool)
        {
            foreach (var c in m.Contents)
                yield return c is FunctionResultContent r
                    ? new Abstractions.ChatMessage("tool", Result(r.Result), ToolCallId: r.CallId)
                    : throw new NotSupportedException($"a tool message holds {c.GetType().Name}");
            yield break;
        }
        string role = m.Role == ChatRole.System ? "system"
            : m.Role == ChatRole.User ? "user"
            : m.Role == ChatRole.Assistant ? "assistant"
            : throw new NotSupportedException(
                $"Weft chat takes system, user, assistant and tool messages, not '{m.Role}'");
        var calls = m.Contents.OfType<FunctionCallContent>()
            .Select(c => new ToolCall(c.CallId, c.Name, JsonSerializer.Serialize(c.Arguments ?? new Dictionary<string,
                object?>(), AIJsonUtilities.DefaultOptions))).ToList();
        if (calls.Count > 0 && role != "assistant")
            throw new NotSupportedException($"a {role} message cannot hold function calls");
        if (m.Contents.FirstOrDefault(c => c is not (TextContent or FunctionCallContent)) is { } other)
            throw new NotSupportedException($"Weft chat takes text and function calls; a {role} message holds " +
                other.GetType().Name);
        yield return new Abstractions.ChatMessage(role, m.Text, calls.Count > 0 ? calls : null);
    }

    static string Result(object? result) => result switch
    {
        null => "",
        string s => s,
        JsonElement e when e.ValueKind == JsonValueKind.String => e.GetString()!,
        _ => JsonSerializer.Serialize(result, AIJsonUtilities.DefaultOptions),
    };

    static FunctionCallContent Call(ToolCall call) =>
        new(call.Id, call.Name, JsonSerializer.Deserialize<Dictionary<string, object?>>(call.Arguments,
            AIJsonUtilities.DefaultOptions));

    static SamplingOptions Sampling(ChatOptions? o) => o is null ? new() : new SamplingOptions
    {
        Temperature = o.Temperature,
        TopP = o.TopP,
        TopK = o.TopK,
        Seed = o.Seed is { } seed ? unchecked((ulong)seed) : null,
        MaxTokens = o.MaxOutputTokens,
        PresencePenalty = o.PresencePenalty,
        FrequencyPenalty = o.FrequencyPenalty,
        Stop = o.StopSequences?.ToArray() ?? [],
    };

    static ChatFinishReason FinishReason(string reason) => reason switch
    {
        "length" => ChatFinishReason.Length,
        "tool_calls" => ChatFinishReason.ToolCalls,
        _ => ChatFinishReason.Stop,
    };

    static UsageDetails Usage(Usage u) => new()
    {
        InputTokenCount = u.PromptTokens,
        OutputTokenCount = u.CompletionTokens,
        TotalTokenCount = u.TotalTokens,
        CachedInputTokenCount = u.CachedTokens,
    };
}
