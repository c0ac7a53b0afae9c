using Microsoft.Extensions.AI;
using Weft.Testing;

namespace Weft.Client.Tests;

/// <summary>Tools and response formats through <see cref="WeftChatClient"/>: honoured, or refused, never
/// dropped.</summary>
public sealed class ChatClientToolTests(WeftCluster cluster) : IClassFixture<WeftCluster>
{
    IChatClient Chat => new WeftChatClient(new WeftClient(cluster.Cluster.Client), "test-model");
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_function_invocation_loop_runs_over_weft_own_chat_client()
    {
        int calls = 0;
        var weather = AIFunctionFactory.Create((bool celsius) =>
        {
            calls++;
            return celsius ? "20 C" : "68 F";
        }, "get_weather", "The weather in Rome");
        using var client = new ChatClientBuilder(Chat).UseFunctionInvocation().Build();
        var response = await client.GetResponseAsync("Weather in Rome?", new ChatOptions
        {
            Tools = [weather],
            ToolMode = ChatToolMode.RequireAny,
            AllowMultipleToolCalls = false,
            Temperature = 0,
            MaxOutputTokens = 200,
        }, Ct);
        Assert.Equal(1, calls);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.CallId);
        var result = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Single();
        Assert.Equal(call.CallId, result.CallId);
    }

    [Fact]
    public async Task A_json_schema_response_format_is_followed_and_other_tools_are_refused()
    {
        var options = new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.ForJsonSchema(System.Text.Json.JsonDocument.Parse(
                """{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}""").RootElement),
            Temperature = 0,
            MaxOutputTokens = 40,
        };
        var response = await Chat.GetResponseAsync("Is it?", options, Ct);
        Assert.Contains(response.Text, (string[])["{\"ok\":true}", "{\"ok\":false}"]);

        var hosted = new ChatOptions { Tools = [new HostedWebSearchTool()] };
        await Assert.ThrowsAsync<NotSupportedException>(() => Chat.GetResponseAsync("Search", hosted, Ct));
    }
}
