using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Weft.Abstractions;
using Weft.Grains;

namespace Weft.Silo;

/// <summary>
/// The OpenAI-compatible endpoints (and vLLM's /tokenize, /detokenize, token ids and sampling extensions). Each
/// generation request is a turn of a <see cref="IConversationGrain"/>: the one named by "conversation_id" or the
/// X-Conversation-Id header, or else a conversation of its own that is reset when the request ends.
/// </summary>
sealed partial class OpenAiApi(ModelHost host, SiloOptions silo, ILocalSiloDetails local, IGrainFactory grains,
    ILogger<OpenAiApi> logger)
{
    /// <summary>OpenAI's default for the legacy completions endpoint; chat replies run to the end of the
    /// context.</summary>
    const int DefaultCompletionMaxTokens = 16;

    public async Task HealthAsync(HttpContext ctx)
    {
        var (status, code) = host.Status switch
        {
            ModelStatus.Ready => ("ready", StatusCodes.Status200OK),
            ModelStatus.Loading => ("loading", StatusCodes.Status503ServiceUnavailable),
            _ => ("failed", StatusCodes.Status503ServiceUnavailable),
        };
        string? error = host.Error;
        // a silo whose store is gone can answer nothing that needs a conversation: the load balancer should look away
        if (code == StatusCodes.Status200OK && await ctx.RequestServices.GetRequiredService<Storage.StorageHealth>()
            .ProblemAsync() is { } problem)
            (status, code, error) = ("storage_unavailable", StatusCodes.Status503ServiceUnavailable, problem);
        ctx.Response.StatusCode = code;
        await ctx.Response.WriteAsJsonAsync(new HealthResponse(status, host.ModelName, error),
            ApiJson.Default.HealthResponse, cancellationToken: ctx.RequestAborted);
    }

    ModelCard Card => new(host.ModelName, host.Created.ToUnixTimeSeconds(), host.MaxModelLen);

    public Task ModelsAsync(HttpContext ctx) =>
        ctx.Response.WriteAsJsonAsync(new ModelList([Card]), ApiJson.Default.ModelList,
            cancellationToken: ctx.RequestAborted);

    public Task ModelAsync(HttpContext ctx)
    {
        string id = ctx.Request.RouteValues["id"] as string ?? "";
        if (id != host.ModelName) throw ApiException.ModelNotFound(id, host.ModelName);
        return ctx.Response.WriteAsJsonAsync(Card, ApiJson.Default.ModelCard, cancellationToken: ctx.RequestAborted);
    }

    public async Task ChatAsync(HttpContext ctx)
    {
        var body = await ReadAsync(ctx);
        RefuseUnsupported(body, ChatFields);
        var messages = Messages(body);
        var truncation = Truncation(body);
        // history that may be dropped to fit is not held against the context; the new message always is
        bool mayDrop = (truncation ?? (ConversationId(ctx, body) is null ? Abstractions.Truncation.Disabled
            : Abstractions.Truncation.Auto)) == Abstractions.Truncation.Auto;
        RefuseLongerThan(mayDrop ? messages[^1].Content.Length : messages.Sum(m => (long)m.Content.Length),
            host.MaxModelLen, "messages", "the context length", "context_length_exceeded",
            mayDrop || messages.Count < 2 ? null
                : "; truncation is disabled, and \"truncation\": \"auto\" would drop the oldest turns instead");
        var (tools, schema, lazy) = ChatTools.Read(body);
        var sampling = Sampling(body, body.Int("max_completion_tokens") ?? body.Int("max_tokens"));
        GrammarField.RefuseWithSchema(body, sampling.Grammar, schema);
        if (lazy is not null && sampling.Grammar is not null)
            throw ApiException.BadRequest("'grammar' cannot be used with a strict function and tool_choice 'auto': " +
                "a reply follows one grammar", "grammar");
        var turn = new TurnRequest
        {
            Messages = messages,
            // the client sends the whole conversation each time
            ReplaceHistory = true,
            Truncation = truncation,
            Sampling = sampling with
            {
                JsonSchema = schema,
                LazyToolCalls = lazy,
                Logprobs = ChatLogprobs(body),
            },
            Priority = body.Int("priority") ?? 0,
            ReturnTokenIds = body.Bool("return_token_ids"),
            ToolsJson = tools,
            ParallelToolCalls = body.Bool("parallel_tool_calls", true),
        };
        await GenerateAsync(ctx, body, turn, chat: true);
    }

    public async Task CompletionsAsync(HttpContext ctx)
    {
        var body = await ReadAsync(ctx);
        RefuseUnsupported(body, CompletionFields);
        if (body.String("suffix") is { Length: > 0 })
            throw ApiException.Unsupported("suffix", "'suffix' (insertion) is not supported");
        var (prompt, promptIds) = Prompt(body);
        if (prompt is not null)
            RefuseLongerThan(prompt.Length, host.MaxModelLen, "prompt", "the context length",
                "context_length_exceeded");
        var turn = new TurnRequest
        {
            Prompt = prompt,
            PromptTokenIds = promptIds,
            Sampling = Sampling(body, body.Int("max_tokens") ?? DefaultCompletionMaxTokens) with
            {
                Logprobs = CompletionLogprobs(body),
            },
            Priority = body.Int("priority") ?? 0,
            ReturnTokenIds = body.Bool("return_token_ids"),
        };
        await GenerateAsync(ctx, body, turn, chat: false);
    }

    public async Task TokenizeAsync(HttpContext ctx)
    {
        var body = await ReadAsync(ctx);
        // as the chat and completion endpoints tokenize: with BOS where the model adds one
        bool addSpecial = body.Bool("add_special_tokens", true);
        int limit = silo.MaxTokenizeTokens ?? host.MaxModelLen;
        bool chat = body.Field("messages") is not null;
        string text = chat ? Render(Messages(body), body.Bool("add_generation_prompt", true))
            : RequestBody.AsString(body.Required("prompt"), "prompt");
        string param = chat ? "messages" : "prompt";
        RefuseLongerThan(text.Length, limit, param, "/tokenize returns", "too_many_tokens");
        int[] tokens = host.Tokenizer.Encode(text, addSpecial, parseSpecial: chat);
        if (tokens.Length > limit)
            throw ApiException.BadRequest($"'{param}' is {tokens.Length} tokens, more than /tokenize returns " +
                $"({limit} tokens)", param, "too_many_tokens");
        await ctx.Response.WriteAsJsonAsync(new TokenizeResponse(tokens.Length, host.MaxModelLen, tokens),
            ApiJson.Default.TokenizeResponse, cancellationToken: ctx.RequestAborted);
    }

    public async Task DetokenizeAsync(HttpContext ctx)
    {
        var body = await ReadAsync(ctx);
        var tokens = RequestBody.AsInts(body.Required("tokens"), "tokens");
        CheckVocabulary(tokens, "tokens");
        // The text the tokens stand for, so that detokenize undoes tokenize: a BOS the tokenizer added goes, and with
        // it the space prefix of the first word (llama_detokenize with remove_special).
        var text = tokens.Count > 0 && tokens[0] == host.Tokenizer.BosId && host.Tokenizer.AddBos
            ? tokens.Skip(1) : tokens;
        await ctx.Response.WriteAsJsonAsync(new DetokenizeResponse(host.Tokenizer.Decode(text)),
            ApiJson.Default.DetokenizeResponse, cancellationToken: ctx.RequestAborted);
    }

    public async Task DeleteConversationAsync(HttpContext ctx)
    {
        string id = ctx.Request.RouteValues["id"] as string ?? "";
        CheckConversationId(id);
        var conversation = grains.GetGrain<IConversationGrain>(ConversationKey.Of(WeftApiEndpoints.Tenant(ctx), id));
        if (!await conversation.DeleteAsync()) throw ApiException.NotFound($"there is no conversation '{id}'");
        await ctx.Response.WriteAsJsonAsync(new ConversationDeleted(id, Deleted: true),
            ApiJson.Default.ConversationDeleted, cancellationToken: ctx.RequestAborted);
    }

    /// <summary>
    /// Refuses text that cannot fit in <paramref name="limit"/> tokens before tokenizing it: no token stands for more
    /// than <see cref="Weft.Models.Tokenization.Tokenizer.MaxTokenChars"/> characters, so the text takes at least its
    /// length over that (a 29 MB message was tokenized whole, hundreds of MB, before the context check refused it).
    /// </summary>
    void RefuseLongerThan(long chars, int limit, string param, string what, string code, string? hint = null)
    {
        long fewest = (chars + host.Tokenizer.MaxTokenChars - 1) / host.Tokenizer.MaxTokenChars;
        if (fewest > limit)
            throw ApiException.BadRequest($"'{param}' holds {chars} characters, at least {fewest} tokens, more than " +
                $"{what} ({limit} tokens){hint}", param, code);
    }

    async Task<RequestBody> ReadAsync(HttpContext ctx)
    {
        var body = await RequestBody.ReadAsync(ctx.Request, ctx.RequestAborted);
        if (body.String("model") is { } name && name != host.ModelName)
            throw ApiException.ModelNotFound(name, host.ModelName);
        return body;
    }

    SamplingOptions Sampling(RequestBody b, int? maxTokens) => new()
    {
        LogitBias = ChatTools.LogitBias(b, host.Tokenizer.VocabSize),
        Temperature = b.Float("temperature"),
        TopP = b.Float("top_p"),
        TopK = b.Int("top_k"),
        MinP = b.Float("min_p"),
        // OpenAI seeds are signed 64-bit integers; any one of them names a reproducible stream
        Seed = b.Long("seed") is { } seed ? unchecked((ulong)seed) : null,
        MaxTokens = maxTokens,
        PresencePenalty = b.Float("presence_penalty"),
        FrequencyPenalty = b.Float("frequency_penalty"),
        RepetitionPenalty = b.Float("repetition_penalty"),
        IgnoreEos = b.Bool("ignore_eos"),
        Stop = b.Strings("stop"),
        StopTokenIds = b.Ints("stop_token_ids") ?? [],
        Grammar = GrammarField.Read(b),
    };

    // The fields each endpoint reads. "user" only names the end user to the provider, and "store": false asks for
    // what this server does anyway; every other field is refused by name rather than ignored.
    static readonly HashSet<string> CommonFields =
    [
        "model", "temperature", "top_p", "top_k", "min_p", "seed", "max_tokens", "presence_penalty",
        "frequency_penalty", "repetition_penalty", "ignore_eos", "stop", "stop_token_ids", "stream", "stream_options",
        "n", "logprobs", "priority", "return_token_ids", "conversation_id", "logit_bias", "user", "grammar",
    ];

    static readonly HashSet<string> ChatFields =
    [
        .. CommonFields, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "store", "truncation",
    ];

    static readonly HashSet<string> CompletionFields = [.. CommonFields, "prompt", "suffix", "best_of", "echo"];

    /// <summary>OpenAI features this server does not implement are refused rather than silently ignored.</summary>
    static void RefuseUnsupported(RequestBody b, HashSet<string> known)
    {
        if (b.Names.FirstOrDefault(n => !known.Contains(n)) is { } unknown)
            throw ApiException.Unsupported(unknown, $"'{unknown}' is not supported by this server");
        if (b.Bool("store")) throw ApiException.Unsupported("store", "stored completions are not supported");
        if (b.Int("best_of") is > 1) throw ApiException.Unsupported("best_of", "best_of is not supported");
        if (b.Bool("echo")) throw ApiException.Unsupported("echo", "echo is not supported");
    }

    /// <summary>Chat's "logprobs": true, with "top_logprobs" (0 to 20) alternatives per token; null when not
    /// asked.</summary>
    static int? ChatLogprobs(RequestBody b)
    {
        bool wanted = b.Bool("logprobs");
        int? top = b.Int("top_logprobs");
        if (top is not null && !wanted)
            throw ApiException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        if (top is < 0 or > SamplingOptions.MaxLogprobs)
            throw ApiException.BadRequest(
                $"'top_logprobs' must be between 0 and {SamplingOptions.MaxLogprobs}", "top_logprobs");
        return wanted ? top ?? 0 : null;
    }

    /// <summary>The legacy completions' "logprobs": how many alternatives per token, 0 to 5 (OpenAI's limit); false
    /// or null asks for none.</summary>
    static int? CompletionLogprobs(RequestBody b)
    {
        if (b.Field("logprobs") is { ValueKind: JsonValueKind.False }) return null;
        int? k = b.Int("logprobs");
        if (k is < 0 or > MaxCompletionLogprobs)
            throw ApiException.BadRequest($"'logprobs' must be between 0 and {MaxCompletionLogprobs}", "logprobs");
        return k;
    }

    const int MaxCompletionLogprobs = 5;

    /// <summary>"n": 1 to <see cref="TurnRequest.MaxChoices"/> replies; more than one only without a conversation,
    /// which keeps one reply per turn.</summary>
    static int Choices(HttpContext ctx, RequestBody b)
    {
        int n = b.Int("n") ?? 1;
        if (n is < 1 or > TurnRequest.MaxChoices)
            throw ApiException.BadRequest($"'n' must be between 1 and {TurnRequest.MaxChoices}", "n");
        if (n > 1 && ConversationId(ctx, b) is not null)
            throw ApiException.BadRequest("'n' above 1 needs a request without a conversation: a conversation keeps " +
                "one reply per turn, so send conversation_id (or X-Conversation-Id) only with n = 1", "n");
        return n;
    }

    static IReadOnlyList<ChatMessage> Messages(RequestBody b)
    {
        var messages = b.Required("messages");
        if (messages.ValueKind != JsonValueKind.Array) throw ApiException.WrongType("messages", "an array of messages");
        if (messages.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must not be empty", "messages");
        return messages.EnumerateArray().Select((m, i) => Message(m, $"messages[{i}]")).ToList();
    }

    static ChatMessage Message(JsonElement m, string path)
    {
        if (m.ValueKind != JsonValueKind.Object)
            throw ApiException.WrongType(path, "an object with 'role' and 'content'");
        if (!m.TryGetProperty("role", out var r) || r.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest($"'{path}.role' is required", $"{path}.role", "missing_required_parameter");
        string role = RequestBody.AsString(r, $"{path}.role") switch
        {
            "system" or "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            var other => throw ApiException.BadRequest(
                $"'{path}.role' is '{other}'; the roles are system (or developer), user, assistant and tool",
                $"{path}.role"),
        };
        var calls = role == "assistant" ? ChatTools.Calls(m, path) : null;
        string? callId = role != "tool" ? null
            : m.TryGetProperty("tool_call_id", out var idElement) && idElement.ValueKind != JsonValueKind.Null
                ? RequestBody.AsString(idElement, $"{path}.tool_call_id")
                : throw ApiException.BadRequest($"'{path}.tool_call_id' is required", $"{path}.tool_call_id",
                    "missing_required_parameter");
        bool present = m.TryGetProperty("content", out var c) && c.ValueKind != JsonValueKind.Null;
        string content = !present
            ? role == "assistant" ? ""
                : throw ApiException.BadRequest($"'{path}.content' is required", $"{path}.content",
                    "missing_required_parameter")
            : c.ValueKind switch
            {
                JsonValueKind.String => RequestBody.AsString(c, $"{path}.content"),
                JsonValueKind.Array => TextParts(c, $"{path}.content"),
                _ => throw ApiException.WrongType($"{path}.content", "a string or an array of text parts"),
            };
        return new ChatMessage(role, content, calls, callId);
    }

    /// <summary>Text content parts joined by newlines, as vLLM does; other kinds of parts (images, audio) are
    /// refused.</summary>
    static string TextParts(JsonElement parts, string path) =>
        string.Join('\n', parts.EnumerateArray().Select((part, i) =>
    {
        string at = $"{path}[{i}]";
        if (part.ValueKind != JsonValueKind.Object)
            throw ApiException.WrongType(at, "an object with 'type' and 'text'");
        string type = part.TryGetProperty("type", out var t) ? RequestBody.AsString(t, $"{at}.type") : "";
        if (type != "text") throw ApiException.Unsupported($"{at}.type",
            $"content parts of type '{type}' are not supported; only text");
        return part.TryGetProperty("text", out var text) ? RequestBody.AsString(text, $"{at}.text")
            : throw ApiException.BadRequest($"'{at}.text' is required", $"{at}.text", "missing_required_parameter");
    }));

    /// <summary>A completion prompt: a string, an array of token ids, or either alone in an array (OpenAI's batch form
    /// with one prompt).</summary>
    (string? Text, IReadOnlyList<int>? Ids) Prompt(RequestBody b)
    {
        var p = b.Required("prompt");
        if (p.ValueKind == JsonValueKind.Array && p.GetArrayLength() == 1
            && p[0].ValueKind is JsonValueKind.String or JsonValueKind.Array) p = p[0];
        switch (p.ValueKind)
        {
            case JsonValueKind.String:
                return (RequestBody.AsString(p, "prompt"), null);
            case JsonValueKind.Array when p.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number):
                var ids = RequestBody.AsInts(p, "prompt");
                if (ids.Count == 0) throw ApiException.BadRequest("'prompt' must not be empty", "prompt");
                CheckVocabulary(ids, "prompt");
                return (null, ids);
            case JsonValueKind.Array
                when p.EnumerateArray().All(e => e.ValueKind is JsonValueKind.String or JsonValueKind.Array):
                throw ApiException.Unsupported("prompt",
                    "several prompts in one request are not supported: send one request per prompt");
            default:
                throw ApiException.WrongType("prompt", "a string or an array of token ids");
        }
    }

    void CheckVocabulary(IReadOnlyList<int> ids, string param)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)host.Tokenizer.VocabSize)
                throw ApiException.BadRequest($"token id {id} in '{param}' is outside the vocabulary " +
                    $"(0..{host.Tokenizer.VocabSize - 1})", param);
    }

    string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        try
        {
            return host.Template.Render(messages.Select(m => (m.Role, m.Content)).ToList(), addGenerationPrompt);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, "messages");
        }
    }

    async Task GenerateAsync(HttpContext ctx, RequestBody body, TurnRequest turn, bool chat)
    {
        host.EnsureReady();
        bool stream = body.Bool("stream");
        bool includeUsage = IncludeUsage(body);
        string? id = ConversationId(ctx, body);
        if (id is not null) CheckConversationId(id);
        // The client's turn id, or one of the edge's own, so that the edge's resends during a failover apply once too.
        string? turnId = ctx.Request.Headers["X-Turn-Id"] is { Count: > 0 } turnHeader ? turnHeader.ToString() : null;
        if (turnId is not null) CheckTurnId(turnId);
        if (id is not null) turn = turn with { TurnId = turnId ?? Guid.NewGuid().ToString("N") };
        // without an id the request is a conversation of its own that keeps nothing
        if (id is null) turn = turn with { Ephemeral = true };
        int choices = Choices(ctx, body);
        turn = turn with { Choices = choices };
        // the tenant's own namespace: another tenant's conversation of the same id is another grain
        var conversation = grains.GetGrain<IConversationGrain>(
            ConversationKey.Of(WeftApiEndpoints.Tenant(ctx), id ?? $"http-{Guid.NewGuid():N}"));
        string requestId = $"{(chat ? "chatcmpl" : "cmpl")}-{Guid.NewGuid():N}";
        turn = turn with { RequestId = requestId };
        // a refused request's client gets no body with the id: the header lets it find the request's log line too
        ctx.Response.Headers["X-Request-Id"] = requestId;
        var reply = new ReplyWriter(ctx.Response, chat, requestId, DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            host.ModelName, turn.ReturnTokenIds, choices, host.Tokenizer, ctx.RequestAborted);
        var ct = ctx.RequestAborted;
        try
        {
            // A refusal (bad value, full queue) comes with the first step, before any byte of the answer: it gets its
            // own status code even for a stream.
            var deltas = await ClusterFailover.OpenAsync(conversation, turn, silo, local.SiloAddress, ct);
            try
            {
                if (stream) await StreamAsync(reply, deltas, includeUsage, ct);
                else await reply.WholeAsync(deltas, turn.Sampling.Logprobs is not null);
            }
            finally
            {
                await ClusterFailover.DisposeQuietlyAsync(deltas);
            }
            await ctx.Response.CompleteAsync();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the client went away; cancelling the enumeration stopped its generation and freed its KV blocks
        }
    }

    static string? ConversationId(HttpContext ctx, RequestBody body) => body.String("conversation_id")
        ?? (ctx.Request.Headers["X-Conversation-Id"] is { Count: > 0 } header ? header.ToString() : null);

    /// <summary>"truncation": "auto" drops a conversation's oldest turns to fit the context (the default for a
    /// conversation), "disabled" refuses the turn instead (the default without a conversation id).</summary>
    static Truncation? Truncation(RequestBody body) => body.String("truncation") switch
    {
        null => null,
        "auto" => Abstractions.Truncation.Auto,
        "disabled" => Abstractions.Truncation.Disabled,
        var other => throw ApiException.BadRequest($"truncation is 'auto' or 'disabled', not '{other}'", "truncation"),
    };

    static void CheckConversationId(string id)
    {
        if (id.Length is 0 or > 256 || id.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            throw ApiException.BadRequest(
                "a conversation id has 1 to 256 characters, none of them whitespace or control characters",
                "conversation_id");
    }

    static void CheckTurnId(string id)
    {
        if (id.Length is 0 or > 256 || id.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            throw ApiException.BadRequest(
                "a turn id (X-Turn-Id) has 1 to 256 characters, none of them whitespace or control characters",
                "X-Turn-Id");
    }

    static bool IncludeUsage(RequestBody body)
    {
        if (body.Field("stream_options") is not { } options) return false;
        if (options.ValueKind != JsonValueKind.Object) throw ApiException.WrongType("stream_options", "an object");
        return options.TryGetProperty("include_usage", out var v) && v.ValueKind != JsonValueKind.Null
            && RequestBody.AsBool(v, "stream_options.include_usage");
    }

    async Task StreamAsync(ReplyWriter reply, IAsyncEnumerator<TurnDelta> deltas, bool includeUsage,
        CancellationToken ct)
    {
        await reply.StartStreamAsync(deltas.Current);
        try
        {
            Usage? usage = null;
            do
            {
                await reply.ChunkAsync(deltas.Current);
                usage = ReplyWriter.Sum(usage, deltas.Current);
            }
            while (await deltas.MoveNextAsync());
            if (includeUsage && usage is not null) await reply.UsageChunkAsync(usage);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // the status line is long gone: the error becomes the stream's last event
            await reply.ErrorEventAsync(e is WeftException refusal ? ApiException.From(refusal)
                : ClusterFailover.IsSiloLoss(e) ? ClusterFailover.Unavailable(silo) : Unexpected(e));
        }
        await reply.DoneAsync();
    }

    /// <summary>Logs a failure that is not the client's doing and gives the client only a generic message.</summary>
    public ApiException Unexpected(Exception e)
    {
        LogUnexpected(logger, e);
        return ApiException.Internal();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "request failed")]
    static partial void LogUnexpected(ILogger logger, Exception e);
}

/// <summary>Routes, the error body of every failure, and the API key check.</summary>
static class WeftApiEndpoints
{
    static readonly object TenantItem = new();

    /// <summary>The tenant of a request to a route that needs a key (see <see cref="Tenants"/>).</summary>
    public static string Tenant(HttpContext ctx) => (string)ctx.Items[TenantItem]!;

    public static void MapWeftApi(this WebApplication app, SiloOptions options, Tenants tenants)
    {
        app.Use(ErrorsAsync);
        // unknown routes and wrong methods: the router's empty 404 and 405 get an error body too
        app.UseStatusCodePages(c => NoRoute(c.HttpContext).WriteAsync(c.HttpContext.Response));
        app.Use((ctx, next) =>
        {
            var path = ctx.Request.Path;
            if (!NeedsKey(path)) return next(ctx);
            ctx.Items[TenantItem] = !tenants.RequireKey ? WeftDefaults.Tenant
                : tenants.Resolve(ctx.Request.Headers.Authorization.ToString()) ?? throw ApiException.Unauthorized();
            // Kestrel enforces it as the body is read: a declared length over it fails the first read, before any
            // parsing, and a chunked body fails once past it.
            if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
                limit.MaxRequestBodySize =
                    path.StartsWithSegments("/tokenize") || path.StartsWithSegments("/detokenize")
                        ? options.MaxTokenizeBytes : options.MaxRequestBytes;
            return next(ctx);
        });
        // The API is resolved per request, not here: resolving it opens the model, which the host does first.
        app.MapGet("/health", ctx => Api(ctx).HealthAsync(ctx));
        app.MapGet("/v1/models", ctx => Api(ctx).ModelsAsync(ctx));
        app.MapGet("/v1/models/{**id}", ctx => Api(ctx).ModelAsync(ctx));
        app.MapPost("/v1/chat/completions", ctx => Api(ctx).ChatAsync(ctx));
        app.MapPost("/v1/completions", ctx => Api(ctx).CompletionsAsync(ctx));
        app.MapPost("/tokenize", ctx => Api(ctx).TokenizeAsync(ctx));
        app.MapPost("/detokenize", ctx => Api(ctx).DetokenizeAsync(ctx));
        app.MapDelete("/v1/conversations/{**id}", ctx => Api(ctx).DeleteConversationAsync(ctx));
        app.MapPost("/v1/responses", ctx => Api(ctx).ResponsesAsync(ctx));
        app.MapGet("/v1/responses/{id}", ctx => Api(ctx).GetResponseAsync(ctx));
        app.MapDelete("/v1/responses/{id}", ctx => Api(ctx).DeleteResponseAsync(ctx));
    }

    static OpenAiApi Api(HttpContext ctx) => ctx.RequestServices.GetRequiredService<OpenAiApi>();

    static ApiException NoRoute(HttpContext ctx) => ctx.Response.StatusCode == StatusCodes.Status405MethodNotAllowed
        ? new(StatusCodes.Status405MethodNotAllowed, "invalid_request_error", "method_not_allowed",
            $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}")
        : new(ctx.Response.StatusCode, "not_found_error", "not_found",
            $"no route for {ctx.Request.Method} {ctx.Request.Path}");

    static bool NeedsKey(PathString path) =>
        path.StartsWithSegments("/v1") || path.StartsWithSegments("/tokenize")
            || path.StartsWithSegments("/detokenize");

    static async Task ErrorsAsync(HttpContext ctx, RequestDelegate next)
    {
        try
        {
            await next(ctx);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // nobody is listening any more
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            var error = e switch
            {
                ApiException a => a,
                WeftException w => ApiException.From(w),
                BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } b =>
                    new ApiException(b.StatusCode, "invalid_request_error", "request_too_large", b.Message),
                BadHttpRequestException b =>
                    new ApiException(b.StatusCode, "invalid_request_error", "bad_request", b.Message),
                _ when Storage.StorageHealth.IsUnreachable(e) => ApiException.StorageUnavailable(),
                _ when ClusterFailover.IsSiloLoss(e) =>
                    ClusterFailover.Unavailable(ctx.RequestServices.GetRequiredService<SiloOptions>()),
                _ => Api(ctx).Unexpected(e),
            };
            // the request's id survives the error: it names the refusal's log line
            var requestId = ctx.Response.Headers["X-Request-Id"];
            ctx.Response.Clear();
            if (requestId.Count > 0) ctx.Response.Headers["X-Request-Id"] = requestId;
            await error.WriteAsync(ctx.Response);
        }
    }
}
