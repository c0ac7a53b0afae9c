using System.Text.Json;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// OpenAI's Responses API over the conversation grains. A response is a turn of a conversation: the one named by
/// "conversation", the one its previous_response_id ran in, or a new one when it is stored (a one-off turn when it is
/// not). A continuation sends the whole history to that conversation, whose KV cache already holds all of it but the
/// new input, so only the new tokens are computed; a second continuation of the same response is a fork, which
/// reuses the common prefix. Stored responses live in <see cref="IResponseGrain"/>s next to the conversations.
/// </summary>
sealed partial class OpenAiApi
{
    static readonly HashSet<string> ResponseFields =
    [
        "model", "input", "instructions", "temperature", "top_p", "top_k", "min_p", "seed", "max_output_tokens",
        "presence_penalty", "frequency_penalty", "repetition_penalty", "stop", "logit_bias", "tools", "tool_choice",
        "parallel_tool_calls", "text", "stream", "store", "previous_response_id", "conversation", "truncation",
        "metadata", "user", "priority",
    ];

    static readonly JsonElement NoTools = JsonDocument.Parse("[]").RootElement;
    static readonly JsonElement AutoChoice = JsonDocument.Parse("\"auto\"").RootElement;
    static readonly JsonElement PlainText = JsonDocument.Parse("""{"format":{"type":"text"}}""").RootElement;
    static readonly JsonElement NoMetadata = JsonDocument.Parse("{}").RootElement;

    public async Task ResponsesAsync(HttpContext ctx)
    {
        var body = await ReadAsync(ctx);
        if (body.Names.FirstOrDefault(n => !ResponseFields.Contains(n)) is { } unknown)
            throw ApiException.Unsupported(unknown, $"'{unknown}' is not supported by this server");
        host.EnsureReady();
        string tenant = WeftApiEndpoints.Tenant(ctx);
        bool store = body.Bool("store", true);
        string? previousId = body.String("previous_response_id");
        string? conversationId = Conversation(body);
        if (previousId is not null && conversationId is not null)
            throw ApiException.BadRequest("'previous_response_id' and 'conversation' cannot both be given",
                "previous_response_id");
        var input = ResponseInput.Messages(body.Required("input"));
        RefuseLongerThan(input.Sum(m => (long)m.Content.Length), host.MaxModelLen, "input", "the context length",
            "context_length_exceeded");
        string? instructions = body.String("instructions");
        var (tools, schema, lazy) = ResponseInput.Tools(body);
        if (body.Field("metadata") is { ValueKind: not JsonValueKind.Object })
            throw ApiException.WrongType("metadata", "an object");

        // the history this response continues, without instructions (a continuation does not inherit them)
        List<ChatMessage> history = [];
        string? conversation = conversationId;
        if (previousId is not null)
        {
            var previous = await grains.GetGrain<IResponseGrain>(ConversationKey.Of(tenant, previousId)).GetAsync()
                ?? throw ApiException.BadRequest($"there is no stored response '{previousId}'",
                    "previous_response_id", "previous_response_not_found");
            (conversation, history) = (previous.Conversation, previous.Messages);
        }
        else if (conversationId is not null)
        {
            CheckConversationId(conversationId);
            var held = await grains.GetGrain<IConversationGrain>(ConversationKey.Of(tenant, conversationId))
                .GetHistoryAsync();
            // a conversation's leading system message is the instructions of its latest turn that gave some
            history = instructions is not null && held.Messages is [{ Role: "system" }, ..]
                ? [.. held.Messages.Skip(1)] : [.. held.Messages];
        }
        else if (store) conversation = $"resp-{Guid.NewGuid():N}";
        List<ChatMessage> asked = [.. history, .. input];

        var turn = new TurnRequest
        {
            Messages = instructions is null ? asked : [new ChatMessage("system", instructions), .. asked],
            // the whole history each time: the conversation computes only what its KV cache does not hold
            ReplaceHistory = true,
            Truncation = Truncation(body),
            Sampling = Sampling(body, body.Int("max_output_tokens")) with { JsonSchema = schema, LazyToolCalls = lazy },
            Priority = body.Int("priority") ?? 0,
            ToolsJson = tools,
            ParallelToolCalls = body.Bool("parallel_tool_calls", true),
            Ephemeral = conversation is null,
            TurnId = conversation is null ? null
                : ctx.Request.Headers["X-Turn-Id"] is { Count: > 0 } turnHeader ? turnHeader.ToString()
                : Guid.NewGuid().ToString("N"),
        };
        if (turn.TurnId is { } turnId) CheckTurnId(turnId);
        string responseId = ResponseWriter.NewId("resp");
        turn = turn with { RequestId = responseId };
        ctx.Response.Headers["X-Request-Id"] = responseId;
        var pending = new ResponseObject(responseId, DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            "in_progress", null, instructions, turn.Sampling.MaxTokens, host.ModelName, [],
            body.Bool("parallel_tool_calls", true), previousId,
            conversationId is null ? null : new ConversationRef(conversationId), store, turn.Sampling.Temperature,
            turn.Sampling.TopP, body.Field("tool_choice") ?? AutoChoice, body.Field("tools") ?? NoTools,
            body.Field("text") ?? PlainText, body.String("truncation") ?? "disabled", null,
            body.Field("metadata") ?? NoMetadata);

        bool stream = body.Bool("stream");
        var writer = new ResponseWriter(ctx.Response, stream, ctx.RequestAborted);
        var grain = grains.GetGrain<IConversationGrain>(
            ConversationKey.Of(tenant, conversation ?? $"http-{Guid.NewGuid():N}"));
        var ct = ctx.RequestAborted;
        try
        {
            // a refusal comes with the first delta, before any byte of the answer: its own status code, even streamed
            var deltas = await ClusterFailover.OpenAsync(grain, turn, silo, local.SiloAddress, ct);
            try
            {
                var (final, reply) = await writer.RunAsync(pending, deltas);
                if (store && conversation is not null)
                    await grains.GetGrain<IResponseGrain>(ConversationKey.Of(tenant, final.Id)).SetAsync(
                        new StoredResponse(JsonSerializer.Serialize(final, ResponsesJson.Default.ResponseObject),
                            conversation, [.. asked, reply]));
                await writer.CompleteAsync(final);
            }
            catch (Exception e) when (stream && ctx.Response.HasStarted
                && (e is not OperationCanceledException || !ct.IsCancellationRequested))
            {
                // the status line is long gone: the error becomes the stream's last event
                await writer.ErrorEventAsync(e is WeftException refusal ? ApiException.From(refusal)
                    : ClusterFailover.IsSiloLoss(e) ? ClusterFailover.Unavailable(silo) : Unexpected(e));
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

    public async Task GetResponseAsync(HttpContext ctx)
    {
        var (id, grain) = ResponseGrain(ctx);
        var stored = await grain.GetAsync() ?? throw ApiException.NotFound($"there is no stored response '{id}'");
        ctx.Response.ContentType = "application/json; charset=utf-8";
        await ctx.Response.WriteAsync(stored.Json, ctx.RequestAborted);
    }

    public async Task DeleteResponseAsync(HttpContext ctx)
    {
        var (id, grain) = ResponseGrain(ctx);
        if (!await grain.DeleteAsync()) throw ApiException.NotFound($"there is no stored response '{id}'");
        await ctx.Response.WriteAsJsonAsync(new ResponseDeleted(id, Deleted: true),
            ResponsesJson.Default.ResponseDeleted, cancellationToken: ctx.RequestAborted);
    }

    (string Id, IResponseGrain Grain) ResponseGrain(HttpContext ctx)
    {
        string id = ctx.Request.RouteValues["id"] as string ?? "";
        if (id.Length is 0 or > 256 || id.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c == '/'))
            throw ApiException.NotFound($"there is no stored response '{id}'");
        return (id, grains.GetGrain<IResponseGrain>(ConversationKey.Of(WeftApiEndpoints.Tenant(ctx), id)));
    }

    /// <summary>"conversation": its id, or an object with it.</summary>
    static string? Conversation(RequestBody body) => body.Field("conversation") switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } s => RequestBody.AsString(s, "conversation"),
        { ValueKind: JsonValueKind.Object } o when o.TryGetProperty("id", out var id) =>
            RequestBody.AsString(id, "conversation.id"),
        _ => throw ApiException.WrongType("conversation", "a conversation id or an object with one"),
    };
}
