using Microsoft.Extensions.AI;
using Weft.Testing;

namespace Weft.Client.Tests;

/// <summary>Code written against Microsoft.Extensions.AI talks to a Weft cluster through <see
/// cref="WeftChatClient"/>.</summary>
public sealed class ChatClientTests(WeftCluster cluster) : IClassFixture<WeftCluster>
{
    IChatClient Chat => new WeftChatClient(new WeftClient(cluster.Cluster.Client), "test-model");
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static ChatOptions Greedy(int max) => new() { Temperature = 0, MaxOutputTokens = max };

    [Fact]
    public async Task Streaming_and_non_streaming_give_the_same_reply()
    {
        List<ChatMessage> messages = [new(ChatRole.System, "You are terse."), new(ChatRole.User, "Name a colour.")];
        var response = await Chat.GetResponseAsync(messages, Greedy(16), Ct);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in Chat.GetStreamingResponseAsync(messages, Greedy(16), Ct)) updates.Add(u);
        var streamed = updates.ToChatResponse();

        Assert.Equal(response.Text, streamed.Text);
        Assert.NotNull(response.Usage);
        Assert.True(response.Usage.OutputTokenCount is > 0 and <= 16);
        Assert.Equal(response.Usage.OutputTokenCount, streamed.Usage?.OutputTokenCount);
        Assert.Equal("test-model", response.ModelId);
        // the reply ends at the end-of-turn token or at the token limit, and says which
        Assert.Equal(response.Usage.OutputTokenCount == 16 ? ChatFinishReason.Length : ChatFinishReason.Stop,
            response.FinishReason);
        Assert.Equal(response.FinishReason, streamed.FinishReason);
        // the id names the conversation the service now holds
        var history = await new WeftClient(cluster.Cluster.Client).Conversation(response.ConversationId!)
            .GetHistoryAsync();
        Assert.Equal(["system", "user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal(response.Text, history.Messages[^1].Content);
    }

    [Fact]
    public async Task A_conversation_id_continues_the_conversation_on_the_service()
    {
        var first = await Chat.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello!")], Greedy(8), Ct);
        // stateful mode: only the new message goes out; the grain holds the history
        var options = Greedy(8);
        options.ConversationId = first.ConversationId;
        var second = await Chat.GetResponseAsync([new ChatMessage(ChatRole.User, "And then?")], options, Ct);
        Assert.Equal(first.ConversationId, second.ConversationId);
        Assert.True(second.Usage!.CachedInputTokenCount > 0, "the second turn reuses the first turn's KV cache");

        var history = await new WeftClient(cluster.Cluster.Client).Conversation(first.ConversationId!)
            .GetHistoryAsync();
        Assert.Equal(["user", "assistant", "user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal(second.Text, history.Messages[^1].Content);

        // instructions would rewrite the history the service holds: refused, not silently dropped
        options.Instructions = "Be brief.";
        await Assert.ThrowsAsync<NotSupportedException>(() =>
            Chat.GetResponseAsync([new ChatMessage(ChatRole.User, "More?")], options, Ct));
    }

    [Fact]
    public async Task Metadata_and_unsupported_content_are_clear()
    {
        var metadata = Chat.GetService<ChatClientMetadata>();
        Assert.Equal("weft", metadata!.ProviderName);
        var tool = new ChatMessage(ChatRole.Tool, "{}");
        await Assert.ThrowsAsync<NotSupportedException>(() => Chat.GetResponseAsync([tool], Greedy(4), Ct));
    }
}

public sealed class ConversationSdkTests(WeftCluster cluster) : IClassFixture<WeftCluster>
{
    [Fact]
    public async Task Send_streams_the_reply_and_reset_forgets_it()
    {
        var ct = TestContext.Current.CancellationToken;
        var conversation = new WeftClient(cluster.Cluster.Client).NewConversation();
        var sampling = new Abstractions.SamplingOptions { Temperature = 0, MaxTokens = 6, IgnoreEos = true };
        int deltas = 0;
        var text = new System.Text.StringBuilder();
        await foreach (var d in conversation.SendAsync("Hi there", sampling, ct))
        {
            deltas++;
            text.Append(d.Text);
        }
        Assert.True(deltas >= 2, "the reply streams in several deltas");
        var reply = await conversation.AskAsync("Again", sampling, ct);
        Assert.Equal(6, reply.Usage.CompletionTokens);
        Assert.Equal(4, (await conversation.GetHistoryAsync()).Messages.Count);
        Assert.Equal(text.ToString(), (await conversation.GetHistoryAsync()).Messages[1].Content);

        await conversation.ResetAsync();
        Assert.Empty((await conversation.GetHistoryAsync()).Messages);
    }

    [Fact]
    public async Task Delete_removes_the_history_and_the_same_id_of_another_tenant_is_another_conversation()
    {
        var ct = TestContext.Current.CancellationToken;
        var sampling = new Abstractions.SamplingOptions { Temperature = 0, MaxTokens = 4, IgnoreEos = true };
        var mine = new WeftClient(cluster.Cluster.Client, "acme").Conversation("shared-id");
        var theirs = new WeftClient(cluster.Cluster.Client, "globex").Conversation("shared-id");
        await mine.AskAsync("My secret is 1234.", sampling, ct);
        await theirs.AskAsync("Hello.", sampling, ct);
        Assert.Equal("My secret is 1234.", (await mine.GetHistoryAsync()).Messages[0].Content);
        Assert.Equal("Hello.", (await theirs.GetHistoryAsync()).Messages[0].Content);

        Assert.True(await mine.DeleteAsync());
        Assert.Empty((await mine.GetHistoryAsync()).Messages);
        Assert.False(await mine.DeleteAsync());
        Assert.Equal(2, (await theirs.GetHistoryAsync()).Messages.Count);
    }
}
