using System.Buffers;
using System.Text;
using System.Text.Json;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// Writes a turn's reply as a Responses API response: whole, or as OpenAI's typed server-sent events ("event: type"
/// and "data: {json}" with a sequence number), the message's text and each function call's arguments as they come.
/// The last event, or the whole body, is written only after the caller stored the response, so that a client that
/// reads it can retrieve it at once.
/// </summary>
sealed class ResponseWriter(HttpResponse response, bool stream, CancellationToken ct)
{
    int _sequence;
    // output items in the order they open: the message when its text begins, each call when its first piece comes
    int _items;
    int _messageIndex;
    readonly Dictionary<int, (int OutputIndex, string ItemId)> _calls = [];

    /// <summary>The response when the reply has ended, and the assistant message a conversation keeps of it (as the
    /// conversation grain keeps it: the calls without text, or the text).</summary>
    public async Task<(ResponseObject Final, ChatMessage Reply)> RunAsync(ResponseObject pending,
        IAsyncEnumerator<TurnDelta> deltas)
    {
        if (stream)
        {
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            // proxies (nginx) would otherwise hold the events back
            response.Headers["X-Accel-Buffering"] = "no";
            await EventAsync(new ResponseEvent("response.created", _sequence++) { Response = pending });
            await EventAsync(new ResponseEvent("response.in_progress", _sequence++) { Response = pending });
        }
        var text = new StringBuilder();
        string? messageId = null;
        TurnDelta? last = null;
        do
        {
            var d = deltas.Current;
            if (d.Text.Length > 0)
            {
                messageId ??= await OpenMessageAsync();
                text.Append(d.Text);
                if (stream)
                    await EventAsync(new ResponseEvent("response.output_text.delta", _sequence++)
                    {
                        ItemId = messageId, OutputIndex = _messageIndex, ContentIndex = 0, Delta = d.Text,
                    });
            }
            foreach (var piece in d.ToolCallDeltas ?? []) await CallPieceAsync(piece);
            if (d.FinishReason is not null) last = d;
        }
        while (await deltas.MoveNextAsync());
        if (last?.Usage is not { } usage)
            throw new InvalidOperationException("the reply ended without a finish reason");

        string status = last.FinishReason == "length" ? "incomplete" : "completed";
        var calls = last.ToolCalls ?? [];
        var output = new List<(int Index, OutputItem Item)>();
        // a reply of calls alone has no message; one of nothing has an empty one, as OpenAI's
        if (messageId is not null || calls.Count == 0)
        {
            messageId ??= await OpenMessageAsync();
            var part = new OutputText(text.ToString());
            var message = new OutputItem("message", messageId, status, "assistant", [part]);
            if (stream)
            {
                await EventAsync(new ResponseEvent("response.output_text.done", _sequence++)
                {
                    ItemId = messageId, OutputIndex = _messageIndex, ContentIndex = 0, Text = part.Text,
                });
                await EventAsync(new ResponseEvent("response.content_part.done", _sequence++)
                {
                    ItemId = messageId, OutputIndex = _messageIndex, ContentIndex = 0, Part = part,
                });
                await EventAsync(new ResponseEvent("response.output_item.done", _sequence++)
                {
                    OutputIndex = _messageIndex, Item = message,
                });
            }
            output.Add((_messageIndex, message));
        }
        for (int i = 0; i < calls.Count; i++)
        {
            var call = calls[i];
            if (!_calls.ContainsKey(i)) await CallPieceAsync(new ToolCallDelta(i, call.Id, call.Name, call.Arguments));
            var (index, itemId) = _calls[i];
            var item = new OutputItem("function_call", itemId, "completed", CallId: call.Id, Name: call.Name,
                Arguments: call.Arguments);
            if (stream)
            {
                await EventAsync(new ResponseEvent("response.function_call_arguments.done", _sequence++)
                {
                    ItemId = item.Id, OutputIndex = index, Name = call.Name, Arguments = call.Arguments,
                });
                await EventAsync(new ResponseEvent("response.output_item.done", _sequence++)
                {
                    OutputIndex = index, Item = item,
                });
            }
            output.Add((index, item));
        }
        var final = pending with
        {
            Status = status,
            IncompleteDetails = status == "incomplete" ? new IncompleteDetails("max_output_tokens") : null,
            Output = [.. output.OrderBy(o => o.Index).Select(o => o.Item)],
            Usage = new ResponseUsage(usage.PromptTokens, new InputTokensDetails(usage.CachedTokens),
                usage.CompletionTokens, new OutputTokensDetails(0)),
        };
        var reply = calls.Count > 0 ? new ChatMessage("assistant", "", new List<ToolCall>(calls))
            : new ChatMessage("assistant", text.ToString());
        return (final, reply);
    }

    /// <summary>A piece of a call: the first opens its item, each streams more of its arguments.</summary>
    async Task CallPieceAsync(ToolCallDelta piece)
    {
        if (piece.Id is not null)
        {
            _calls[piece.Index] = (_items++, NewId("fc"));
            if (stream)
                await EventAsync(new ResponseEvent("response.output_item.added", _sequence++)
                {
                    OutputIndex = _calls[piece.Index].OutputIndex,
                    Item = new OutputItem("function_call", _calls[piece.Index].ItemId, "in_progress",
                        CallId: piece.Id, Name: piece.Name, Arguments: ""),
                });
        }
        if (stream && piece.Arguments.Length > 0)
            await EventAsync(new ResponseEvent("response.function_call_arguments.delta", _sequence++)
            {
                ItemId = _calls[piece.Index].ItemId, OutputIndex = _calls[piece.Index].OutputIndex,
                Delta = piece.Arguments,
            });
    }

    /// <summary>The message item's id; in a stream, its item and its text part open.</summary>
    async Task<string> OpenMessageAsync()
    {
        string id = NewId("msg");
        _messageIndex = _items++;
        if (!stream) return id;
        await EventAsync(new ResponseEvent("response.output_item.added", _sequence++)
        {
            OutputIndex = _messageIndex, Item = new OutputItem("message", id, "in_progress", "assistant", []),
        });
        await EventAsync(new ResponseEvent("response.content_part.added", _sequence++)
        {
            ItemId = id, OutputIndex = _messageIndex, ContentIndex = 0, Part = new OutputText(""),
        });
        return id;
    }

    /// <summary>The stream's last event (response.completed or response.incomplete), or the whole response.</summary>
    public Task CompleteAsync(ResponseObject final) => stream
        ? EventAsync(new ResponseEvent(final.Status == "completed" ? "response.completed" : "response.incomplete",
            _sequence++)
        { Response = final })
        : response.WriteAsJsonAsync(final, ResponsesJson.Default.ResponseObject, cancellationToken: ct);

    /// <summary>A failure after the stream began: OpenAI's "error" event ends it.</summary>
    public Task ErrorEventAsync(ApiException error) => EventAsync(new ResponseEvent("error", _sequence++)
    {
        Code = error.Code, Message = error.Message, Param = error.Param,
    });

    /// <summary>OpenAI's ids: a prefix and 48 hex digits.</summary>
    public static string NewId(string prefix) =>
        $"{prefix}_{Guid.NewGuid():N}{Guid.NewGuid().ToString("N")[..16]}";

    async Task EventAsync(ResponseEvent e)
    {
        var writer = response.BodyWriter;
        writer.Write("event: "u8);
        writer.Write(Encoding.UTF8.GetBytes(e.Type));
        writer.Write("\ndata: "u8);
        using (var json = new Utf8JsonWriter(writer))
            JsonSerializer.Serialize(json, e, ResponsesJson.Default.ResponseEvent);
        writer.Write("\n\n"u8);
        await writer.FlushAsync(ct);
    }
}
