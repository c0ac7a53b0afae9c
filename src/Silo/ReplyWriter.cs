using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// Writes a turn's reply in the shape of its endpoint: a chat completion or a text completion, whole or as server-sent
/// events ("data: {chunk}" per delta, "data: [DONE]" at the end).
/// </summary>
sealed class ReplyWriter(HttpResponse response, bool chat, string id, long created, string model, bool returnTokenIds,
    CancellationToken ct)
{
    public async Task WholeAsync(IAsyncEnumerator<TurnDelta> deltas)
    {
        var text = new StringBuilder();
        var tokens = new List<int>();
        IReadOnlyList<int>? promptIds = null;
        TurnDelta last;
        do
        {
            last = deltas.Current;
            text.Append(last.Text);
            tokens.AddRange(last.TokenIds);
            promptIds ??= last.PromptTokenIds;
        }
        while (await deltas.MoveNextAsync());
        if (last is not { FinishReason: { } finish, Usage: { } usage })
            throw new InvalidOperationException("the reply ended without a finish reason");

        var ids = returnTokenIds ? tokens : null;
        if (chat)
        {
            var calls = last.ToolCalls?.Select(c => new ToolCallOut(null, c.Id, new(c.Name, c.Arguments))).ToList();
            string? content = calls is not null && text.Length == 0 ? null : text.ToString();
            await response.WriteAsJsonAsync(new ChatCompletion(id, created, model,
                [new ChatChoice(0, new ChatMessageOut("assistant", content, calls), finish, ids)], Usage(usage),
                promptIds), ApiJson.Default.ChatCompletion, cancellationToken: ct);
        }
        else
            await response.WriteAsJsonAsync(new Completion(id, created, model,
                [new CompletionChoice(0, text.ToString(), finish, ids)], Usage(usage), promptIds),
                ApiJson.Default.Completion, cancellationToken: ct);
    }

    public Task StartStreamAsync(TurnDelta first)
    {
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        // proxies (nginx) would otherwise hold the events back
        response.Headers["X-Accel-Buffering"] = "no";
        // A chat stream opens with the assistant's role, as OpenAI's does; it carries the prompt's ids when asked.
        return chat
            ? EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(0, new ChatDelta("assistant", ""), null, null)], null, first.PromptTokenIds),
                ApiJson.Default.ChatChunk)
            : Task.CompletedTask;
    }

    public async Task ChunkAsync(TurnDelta d)
    {
        if (!chat || d.ToolCalls is not { } calls)
        {
            await TextChunkAsync(d);
            return;
        }
        // OpenAI's shape: the text, then each call in a chunk of its own (index, id, name and its whole arguments),
        // then the finish reason in a chunk with an empty delta
        await TextChunkAsync(d with { FinishReason = null });
        for (int i = 0; i < calls.Count; i++)
            await EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(0, new ChatDelta(null, null,
                    [new ToolCallOut(i, calls[i].Id, new(calls[i].Name, calls[i].Arguments))]), null, null)],
                null, null), ApiJson.Default.ChatChunk);
        await TextChunkAsync(new TurnDelta { FinishReason = d.FinishReason });
    }

    Task TextChunkAsync(TurnDelta d)
    {
        // text held back (a possible stop string, half a UTF-8 character) gives an empty delta: nothing to send yet
        bool tokens = returnTokenIds && d.TokenIds.Count > 0;
        var promptIds = chat ? null : d.PromptTokenIds;
        if (d.Text.Length == 0 && d.FinishReason is null && !tokens && promptIds is null) return Task.CompletedTask;
        var ids = returnTokenIds ? d.TokenIds : null;
        return chat
            ? EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(0, new ChatDelta(null, d.Text.Length > 0 ? d.Text : null), d.FinishReason, ids)],
                null, null), ApiJson.Default.ChatChunk)
            : EventAsync(new Completion(id, created, model, [new CompletionChoice(0, d.Text, d.FinishReason, ids)],
                null, promptIds), ApiJson.Default.Completion);
    }

    /// <summary>stream_options.include_usage: a last chunk with the usage and no choices.</summary>
    public Task UsageChunkAsync(Usage usage) => chat
        ? EventAsync(new ChatChunk(id, created, model, [], Usage(usage), null), ApiJson.Default.ChatChunk)
        : EventAsync(new Completion(id, created, model, [], Usage(usage), null), ApiJson.Default.Completion);

    public Task ErrorEventAsync(ApiException error) => EventAsync(error.Body, ApiJson.Default.ErrorBody);

    public async Task DoneAsync()
    {
        response.BodyWriter.Write("data: [DONE]\n\n"u8);
        await response.BodyWriter.FlushAsync(ct);
    }

    static UsageInfo Usage(Usage u) => new(u.PromptTokens, u.CompletionTokens, new PromptTokensDetails(u.CachedTokens),
        u.DroppedTokens > 0 ? u.DroppedTokens : null);

    async Task EventAsync<T>(T value, JsonTypeInfo<T> type)
    {
        var writer = response.BodyWriter;
        writer.Write("data: "u8);
        using (var json = new Utf8JsonWriter(writer)) JsonSerializer.Serialize(json, value, type);
        writer.Write("\n\n"u8);
        await writer.FlushAsync(ct);
    }
}
