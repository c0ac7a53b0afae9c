using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Weft.Abstractions;
using Weft.Models.Tokenization;

namespace Weft.Silo;

/// <summary>
/// Writes a turn's reply in the shape of its endpoint: a chat completion or a text completion, whole or as server-sent
/// events ("data: {chunk}" per delta, "data: [DONE]" at the end).
/// </summary>
sealed class ReplyWriter(HttpResponse response, bool chat, string id, long created, string model, bool returnTokenIds,
    int choices, Tokenizer tokenizer, CancellationToken ct)
{
    // per choice: where its next token's text starts in its text (completions' text_offset), across chunks
    readonly int[] _textOffsets = new int[choices];

    public async Task WholeAsync(IAsyncEnumerator<TurnDelta> deltas, bool logprobs)
    {
        var texts = Enumerable.Range(0, choices).Select(_ => new StringBuilder()).ToArray();
        var tokens = Enumerable.Range(0, choices).Select(_ => new List<int>()).ToArray();
        var lps = Enumerable.Range(0, choices).Select(_ => new List<TokenLogprob>()).ToArray();
        var finals = new TurnDelta?[choices];
        IReadOnlyList<int>? promptIds = null;
        Usage? usage = null;
        do
        {
            var d = deltas.Current;
            texts[d.Choice].Append(d.Text);
            tokens[d.Choice].AddRange(d.TokenIds);
            if (d.Logprobs is { } l) lps[d.Choice].AddRange(l);
            promptIds ??= d.PromptTokenIds;
            if (d.FinishReason is null) continue;
            finals[d.Choice] = d;
            usage = Sum(usage, d);
        }
        while (await deltas.MoveNextAsync());
        if (usage is null || finals.Any(f => f is null))
            throw new InvalidOperationException("the reply ended without a finish reason");

        if (chat)
        {
            var choiceList = Enumerable.Range(0, choices).Select(c =>
            {
                var calls = finals[c]!.ToolCalls?.Select(t => new ToolCallOut(t.Id, new(t.Name, t.Arguments)))
                    .ToList();
                string? content = calls is not null && texts[c].Length == 0 ? null : texts[c].ToString();
                return new ChatChoice(c, new ChatMessageOut("assistant", content, calls), finals[c]!.FinishReason!,
                    returnTokenIds ? tokens[c] : null, logprobs ? ChatLogprobsOf(lps[c]) : null);
            }).ToList();
            await response.WriteAsJsonAsync(new ChatCompletion(id, created, model, choiceList, Usage(usage),
                promptIds), ApiJson.Default.ChatCompletion, cancellationToken: ct);
        }
        else
            await response.WriteAsJsonAsync(new Completion(id, created, model,
                [.. Enumerable.Range(0, choices).Select(c => new CompletionChoice(c, texts[c].ToString(),
                    finals[c]!.FinishReason, returnTokenIds ? tokens[c] : null,
                    logprobs ? CompletionLogprobsOf(lps[c], c) : null))],
                Usage(usage), promptIds), ApiJson.Default.Completion, cancellationToken: ct);
    }

    /// <summary>The usage of a reply of several choices so far, with the last delta of one: the prompt once (its
    /// cached tokens are the first choice's, what the prompt found before this request; the others find what the
    /// first computed), the completions' tokens summed.</summary>
    public static Usage? Sum(Usage? total, TurnDelta d) => d.Usage is not { } next ? total
        : total is null ? next
        : total with
        {
            CompletionTokens = total.CompletionTokens + next.CompletionTokens,
            CachedTokens = d.Choice == 0 ? next.CachedTokens : total.CachedTokens,
        };

    public async Task StartStreamAsync(TurnDelta first)
    {
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        // proxies (nginx) would otherwise hold the events back
        response.Headers["X-Accel-Buffering"] = "no";
        // A chat stream opens with the assistant's role, as OpenAI's does, once per choice; it carries the prompt's
        // ids when asked.
        if (!chat) return;
        for (int c = 0; c < choices; c++)
            await EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(c, new ChatDelta("assistant", ""), null, null)], null,
                c == 0 ? first.PromptTokenIds : null), ApiJson.Default.ChatChunk);
    }

    public async Task ChunkAsync(TurnDelta d)
    {
        if (!chat || d.ToolCallDeltas is not { } pieces)
        {
            await TextChunkAsync(d);
            return;
        }
        // OpenAI's shape: the text, then each piece of a call in a chunk of its own (the first with the call's id and
        // name), then the finish reason in a chunk with an empty delta
        await TextChunkAsync(d with { FinishReason = null });
        foreach (var p in pieces)
            await EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(d.Choice, new ChatDelta(null, null,
                    [new ToolCallChunk(p.Index, p.Id, p.Id is null ? null : "function",
                        new FunctionCallChunk(p.Name, p.Arguments))]), null, null)],
                null, null), ApiJson.Default.ChatChunk);
        if (d.FinishReason is not null)
            await TextChunkAsync(new TurnDelta { FinishReason = d.FinishReason, Choice = d.Choice });
    }

    Task TextChunkAsync(TurnDelta d)
    {
        // text held back (a possible stop string, half a UTF-8 character) gives an empty delta: nothing to send yet,
        // unless it carries token ids or log-probabilities asked for
        bool tokens = returnTokenIds && d.TokenIds.Count > 0;
        var promptIds = chat ? null : d.PromptTokenIds;
        var lps = d.Logprobs is { Count: > 0 } l ? l : null;
        if (d.Text.Length == 0 && d.FinishReason is null && !tokens && promptIds is null && lps is null)
            return Task.CompletedTask;
        var ids = returnTokenIds ? d.TokenIds : null;
        return chat
            ? EventAsync(new ChatChunk(id, created, model,
                [new ChatChunkChoice(d.Choice, new ChatDelta(null, d.Text.Length > 0 ? d.Text : null), d.FinishReason,
                    ids, lps is null ? null : ChatLogprobsOf(lps))],
                null, null), ApiJson.Default.ChatChunk)
            : EventAsync(new Completion(id, created, model,
                [new CompletionChoice(d.Choice, d.Text, d.FinishReason, ids,
                    lps is null ? null : CompletionLogprobsOf(lps, d.Choice))],
                null, promptIds), ApiJson.Default.Completion);
    }

    ChatLogprobs ChatLogprobsOf(IReadOnlyList<TokenLogprob> lps) =>
        new([.. lps.Select(t => new ChatTokenLogprob(Text(t.Token), Finite(t.Logprob), Bytes(t.Token),
            [.. t.TopIds.Select((top, j) => new ChatTopLogprob(Text(top), Finite(t.TopLogprobs[j]), Bytes(top)))]))]);

    /// <summary>OpenAI's legacy shape; a top map holds the sampled token too, as OpenAI documents (up to
    /// logprobs + 1 entries). Tokens of the same text keep the likelier one's value.</summary>
    CompletionLogprobs CompletionLogprobsOf(IReadOnlyList<TokenLogprob> lps, int choice)
    {
        var tokens = new List<string>(lps.Count);
        var values = new List<float>(lps.Count);
        var tops = new List<Dictionary<string, float>>(lps.Count);
        var offsets = new List<int>(lps.Count);
        foreach (var t in lps)
        {
            string text = Text(t.Token);
            tokens.Add(text);
            values.Add(Finite(t.Logprob));
            offsets.Add(_textOffsets[choice]);
            _textOffsets[choice] += text.Length;
            var top = new Dictionary<string, float>();
            for (int j = 0; j < t.TopIds.Count; j++) top.TryAdd(Text(t.TopIds[j]), Finite(t.TopLogprobs[j]));
            top.TryAdd(text, Finite(t.Logprob));
            tops.Add(top);
        }
        return new CompletionLogprobs(tokens, values, tops, offsets);
    }

    /// <summary>A token's text, special tokens by name, bytes that are not whole UTF-8 characters as U+FFFD (vLLM's
    /// rendering; the exact bytes are in <see cref="Bytes"/>).</summary>
    string Text(int token) => Encoding.UTF8.GetString(tokenizer.DecodeToken(token, renderSpecial: true));

    int[] Bytes(int token) => [.. tokenizer.DecodeToken(token, renderSpecial: true).Select(b => (int)b)];

    /// <summary>JSON has no infinity: a token the model rules out gets OpenAI's and vLLM's -9999.</summary>
    static float Finite(float logprob) => float.IsNegativeInfinity(logprob) ? -9999f : logprob;

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
