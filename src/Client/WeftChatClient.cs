using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Weft.Abstractions;
using AI = Microsoft.Extensions.AI;

namespace Weft.Client;

/// <summary>
/// Weft behind Microsoft.Extensions.AI's <see cref="IChatClient"/>. With <see cref="ChatOptions.ConversationId"/> the
/// service keeps the history, as in that abstraction's stateful mode: only the new messages are sent and the grain
/// appends them. Without it the messages are the whole conversation; the response then names the conversation it
/// created, so a caller can continue statefully.
/// </summary>
public sealed class WeftChatClient(WeftClient client, string modelId = "weft") : IChatClient
{
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var (conversation, request) = Prepare(messages, options);
        var reply = await WeftConversation.CollectAsync(conversation.SendAsync(request, cancellationToken));
        return new ChatResponse(new AI.ChatMessage(ChatRole.Assistant, reply.Text))
        {
            ConversationId = conversation.Id,
            ModelId = modelId,
            FinishReason = FinishReason(reply.FinishReason),
            Usage = Usage(reply.Usage),
            CreatedAt = DateTimeOffset.UtcNow,
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
            };
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
        var turns = messages.Select(ToTurn).ToList();
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
        var conversation = stateful ? client.Conversation(options!.ConversationId!) : client.NewConversation();
        return (conversation,
            new TurnRequest { Messages = turns, ReplaceHistory = !stateful, Sampling = Sampling(options) });
    }

    static Abstractions.ChatMessage ToTurn(AI.ChatMessage m)
    {
        string role = m.Role == ChatRole.System ? "system"
            : m.Role == ChatRole.User ? "user"
            : m.Role == ChatRole.Assistant ? "assistant"
            : throw new NotSupportedException($"Weft chat takes system, user and assistant messages, not '{m.Role}'");
        if (m.Contents.Any(c => c is not TextContent))
            throw new NotSupportedException($"Weft chat takes text only; a {role} message holds " +
                $"{m.Contents.First(c => c is not TextContent).GetType().Name}");
        return new Abstractions.ChatMessage(role, m.Text);
    }

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

    static ChatFinishReason FinishReason(string reason) =>
        reason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop;

    static UsageDetails Usage(Usage u) => new()
    {
        InputTokenCount = u.PromptTokens,
        OutputTokenCount = u.CompletionTokens,
        TotalTokenCount = u.TotalTokens,
        CachedInputTokenCount = u.CachedTokens,
    };
}
