using System.ClientModel;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using OpenAI.Responses;
using Weft.Abstractions;

namespace Weft.Silo.Tests;

/// <summary>
/// POST /v1/responses through the official OpenAI SDK's ResponsesClient: whole and streamed responses, stored ones
/// retrieved and deleted, a function-call round trip, previous_response_id and conversation continuing on the KV cache
/// of the conversation grain, structured output, and refusals of what the server does not do.
/// </summary>
// the SDK marks the Responses API as experimental
#pragma warning disable OPENAI001
public sealed class ResponsesTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static readonly FunctionTool Weather = ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString("""
        {"type":"object","properties":{"city":{"type":"string","maxLength":12},
         "unit":{"enum":["celsius","fahrenheit"]}},"required":["city","unit"],"additionalProperties":false}
        """), strictModeEnabled: true, "The weather in a city");

    ResponsesClient Client => silo.OpenAI().GetResponsesClient();

    static CreateResponseOptions Options(params ResponseItem[] input) => new(SiloFixture.ModelName, input)
    {
        Temperature = 0, MaxOutputTokenCount = 8,
    };

    [Fact]
    public async Task A_stored_response_is_returned_retrieved_and_deleted()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Tell me a story"));
        options.Instructions = "You are terse.";
        ResponseResult response = await Client.CreateResponseAsync(options, Ct);
        Assert.StartsWith("resp_", response.Id);
        // random weights do not stop within 8 tokens
        Assert.Equal(ResponseStatus.Incomplete, response.Status);
        Assert.Equal(ResponseIncompleteStatusReason.MaxOutputTokens, response.IncompleteStatusDetails.Reason);
        var message = Assert.IsType<MessageResponseItem>(Assert.Single(response.OutputItems), exactMatch: false);
        Assert.StartsWith("msg_", message.Id);
        Assert.Equal(MessageRole.Assistant, message.Role);
        Assert.NotEmpty(response.GetOutputText());
        Assert.Equal(8, response.Usage.OutputTokenCount);
        Assert.True(response.Usage.InputTokenCount > 5);
        Assert.Equal(response.Usage.InputTokenCount + 8, response.Usage.TotalTokenCount);
        Assert.Equal(SiloFixture.ModelName, response.Model);

        ResponseResult stored = await Client.GetResponseAsync(response.Id, Ct);
        Assert.Equal(response.GetOutputText(), stored.GetOutputText());
        Assert.Equal(message.Id, stored.OutputItems[0].Id);
        ResponseDeletionResult deleted = await Client.DeleteResponseAsync(response.Id, Ct);
        Assert.True(deleted.Deleted);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => Client.GetResponseAsync(response.Id, Ct));
        Assert.Equal(404, gone.Status);
        var again = await Assert.ThrowsAsync<ClientResultException>(() => Client.DeleteResponseAsync(response.Id, Ct));
        Assert.Equal(404, again.Status);
    }

    [Fact]
    public async Task A_streamed_response_sends_openai_events_in_order_that_add_up_to_the_whole_one()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Hello there"));
        ResponseResult whole = await Client.CreateResponseAsync(options, Ct);

        var updates = new List<StreamingResponseUpdate>();
        options.StreamingEnabled = true;
        await foreach (var update in await Client.CreateResponseStreamingAsync(options, Ct)) updates.Add(update);
        Assert.Equal(Enumerable.Range(0, updates.Count), updates.Select(u => u.SequenceNumber));
        Assert.Equal(ResponseStatus.InProgress,
            Assert.IsType<StreamingResponseCreatedUpdate>(updates[0]).Response.Status);
        Assert.IsType<StreamingResponseInProgressUpdate>(updates[1]);
        Assert.IsType<StreamingResponseOutputItemAddedUpdate>(updates[2]);
        Assert.IsType<StreamingResponseContentPartAddedUpdate>(updates[3]);
        var deltas = updates.OfType<StreamingResponseOutputTextDeltaUpdate>().ToList();
        Assert.True(deltas.Count > 1);
        string streamed = string.Concat(deltas.Select(d => d.Delta));
        Assert.Equal(whole.GetOutputText(), streamed);
        Assert.Equal(streamed, Assert.Single(updates.OfType<StreamingResponseOutputTextDoneUpdate>()).Text);
        Assert.Single(updates.OfType<StreamingResponseContentPartDoneUpdate>());
        var done = Assert.Single(updates.OfType<StreamingResponseOutputItemDoneUpdate>());
        Assert.Equal(deltas[0].ItemId, done.Item.Id);
        var last = Assert.IsType<StreamingResponseIncompleteUpdate>(updates[^1]);
        Assert.Equal(streamed, last.Response.GetOutputText());
        Assert.Equal(whole.Usage.OutputTokenCount, last.Response.Usage.OutputTokenCount);
        // the stream's response was stored before its last event
        Assert.Equal(streamed, (await Client.GetResponseAsync(last.Response.Id, Ct)).Value.GetOutputText());
    }

    [Fact]
    public async Task A_function_call_round_trip_continues_on_the_cached_tokens_of_the_call()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("What is the weather in Oslo?"));
        options.Tools.Add(Weather);
        options.ToolChoice = ResponseToolChoice.CreateFunctionChoice("get_weather");
        options.MaxOutputTokenCount = 300;
        ResponseResult first = await Client.CreateResponseAsync(options, Ct);
        Assert.Equal(ResponseStatus.Completed, first.Status);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(first.OutputItems));
        Assert.StartsWith("fc_", call.Id);
        Assert.StartsWith("call_", call.CallId);
        Assert.Equal("get_weather", call.FunctionName);
        using (var arguments = JsonDocument.Parse(call.FunctionArguments))
            Assert.Contains(arguments.RootElement.GetProperty("unit").GetString(),
                (string[])["celsius", "fahrenheit"]);

        var next = Options(ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"temperature":3}"""));
        next.PreviousResponseId = first.Id;
        next.Tools.Add(Weather);
        ResponseResult second = await Client.CreateResponseAsync(next, Ct);
        Assert.Equal(first.Id, second.PreviousResponseId);
        // the first prompt and the call are in the conversation's KV cache: only the output and what follows is new
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount,
            $"{second.Usage.InputTokenDetails.CachedTokenCount} cached of {first.Usage.InputTokenCount}");
        Assert.True(second.Usage.InputTokenCount > first.Usage.InputTokenCount + first.Usage.OutputTokenCount - 1);

        // the same turn sent whole, without the server's state: the call is rendered by the template (the
        // continuation holds the tokens the model generated for it instead)
        var stateless = Options(ResponseItem.CreateUserMessageItem("What is the weather in Oslo?"),
            ResponseItem.CreateFunctionCallItem(call.CallId, call.FunctionName, call.FunctionArguments),
            ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"temperature":3}"""));
        stateless.Tools.Add(Weather);
        stateless.StoredOutputEnabled = false;
        ResponseResult whole = await Client.CreateResponseAsync(stateless, Ct);
        Assert.Equal(ResponseStatus.Incomplete, whole.Status);
        Assert.True(whole.Usage.InputTokenCount > first.Usage.InputTokenCount + 10,
            $"{whole.Usage.InputTokenCount} tokens with the call, {first.Usage.InputTokenCount} without");
    }

    [Fact]
    public async Task A_streamed_function_call_comes_as_its_item_and_argument_events()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Weather in Rome?"));
        options.Tools.Add(Weather);
        options.ToolChoice = ResponseToolChoice.CreateRequiredChoice();
        options.MaxOutputTokenCount = 300;
        options.StreamingEnabled = true;
        var updates = new List<StreamingResponseUpdate>();
        await foreach (var update in await Client.CreateResponseStreamingAsync(options, Ct)) updates.Add(update);
        var arguments = Assert.Single(updates.OfType<StreamingResponseFunctionCallArgumentsDoneUpdate>());
        Assert.Equal("get_weather", arguments.FunctionName);
        var completed = Assert.IsType<StreamingResponseCompletedUpdate>(updates[^1]);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(completed.Response.OutputItems));
        Assert.Equal(call.Id, arguments.ItemId);
        Assert.Equal(call.FunctionArguments.ToString(), arguments.FunctionArguments.ToString());
        Assert.DoesNotContain(updates, u => u is StreamingResponseOutputTextDeltaUpdate);
        // the arguments stream as the model writes them
        var pieces = updates.OfType<StreamingResponseFunctionCallArgumentsDeltaUpdate>().ToList();
        Assert.True(pieces.Count > 1, $"{pieces.Count} argument deltas");
        Assert.All(pieces, p => Assert.Equal(call.Id, p.ItemId));
        Assert.Equal(call.FunctionArguments.ToString(), string.Concat(pieces.Select(p => p.Delta.ToString())));
    }

    [Fact]
    public async Task Previous_response_id_reuses_the_cached_tokens_and_a_fork_reuses_their_common_prefix()
    {
        ResponseResult first = await Client.CreateResponseAsync(
            Options(ResponseItem.CreateUserMessageItem("Once upon a time")), Ct);
        var followUp = Options(ResponseItem.CreateUserMessageItem("And then?"));
        followUp.PreviousResponseId = first.Id;
        ResponseResult second = await Client.CreateResponseAsync(followUp, Ct);
        int held = first.Usage.InputTokenCount + first.Usage.OutputTokenCount;
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= held - 1,
            $"{second.Usage.InputTokenDetails.CachedTokenCount} cached of {held}");

        var fork = Options(ResponseItem.CreateUserMessageItem("What else?"));
        fork.PreviousResponseId = first.Id;
        ResponseResult forked = await Client.CreateResponseAsync(fork, Ct);
        Assert.True(forked.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount,
            $"{forked.Usage.InputTokenDetails.CachedTokenCount} cached of {first.Usage.InputTokenCount}");
        // the fork sees the first exchange, not the second
        Assert.True(forked.Usage.InputTokenCount < second.Usage.InputTokenCount + 5);
    }

    [Fact]
    public async Task A_conversation_keeps_the_turns_of_its_responses()
    {
        string id = $"responses-{Guid.NewGuid():N}";
        var options = Options(ResponseItem.CreateUserMessageItem("Hi"));
        options.ConversationOptions = new ResponseConversationOptions(id);
        options.Instructions = "Be brief.";
        ResponseResult first = await Client.CreateResponseAsync(options, Ct);
        Assert.Equal(id, first.ConversationOptions.ConversationId);
        var next = Options(ResponseItem.CreateUserMessageItem("More"));
        next.ConversationOptions = new ResponseConversationOptions(id);
        ResponseResult second = await Client.CreateResponseAsync(next, Ct);
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount > first.Usage.InputTokenCount - 1);

        var history = await silo.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, id)).GetHistoryAsync();
        Assert.Equal(["system", "user", "assistant", "user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal("Be brief.", history.Messages[0].Content);
        Assert.Equal(second.GetOutputText(), history.Messages[^1].Content);
    }

    [Fact]
    public async Task A_json_schema_text_format_gives_replies_that_parse_and_validate()
    {
        for (int i = 0; i < 3; i++)
        {
            var options = Options(ResponseItem.CreateUserMessageItem($"A person, please ({i})"));
            options.Temperature = 1;
            options.MaxOutputTokenCount = 300;
            options.TextOptions = new ResponseTextOptions
            {
                TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("person", BinaryData.FromString("""
                    {"type":"object","properties":{"name":{"type":"string","maxLength":10},
                     "age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}
                    """), jsonSchemaIsStrict: true),
            };
            ResponseResult response = await Client.CreateResponseAsync(options, Ct);
            Assert.Equal(ResponseStatus.Completed, response.Status);
            using var reply = JsonDocument.Parse(response.GetOutputText());
            Assert.True(reply.RootElement.GetProperty("name").GetString()!.Length <= 10);
            Assert.Equal(JsonValueKind.Number, reply.RootElement.GetProperty("age").ValueKind);
        }
    }

    [Fact]
    public async Task A_response_that_is_not_stored_cannot_be_retrieved_or_continued()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Hi"));
        options.StoredOutputEnabled = false;
        ResponseResult response = await Client.CreateResponseAsync(options, Ct);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => Client.GetResponseAsync(response.Id, Ct));
        Assert.Equal(404, missing.Status);
        var next = Options(ResponseItem.CreateUserMessageItem("Again"));
        next.PreviousResponseId = response.Id;
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Client.CreateResponseAsync(next, Ct));
        Assert.Equal(400, refused.Status);
        Assert.Contains("previous_response_id", refused.Message);
    }

    [Fact]
    public async Task Fields_the_server_does_not_support_are_refused_by_the_sdk_naming_them()
    {
        var options = Options(ResponseItem.CreateUserMessageItem("Hi"));
        options.ReasoningOptions =
            new ResponseReasoningOptions { ReasoningEffortLevel = ResponseReasoningEffortLevel.Low };
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Client.CreateResponseAsync(options, Ct));
        Assert.Equal(400, refused.Status);
        Assert.Contains("'reasoning'", refused.Message);
    }

    const string StrictPick = """
        {"type":"function","name":"pick","strict":true,"parameters":{"type":"object","properties":{"n":{"type":
        "integer"}},"required":["n"],"additionalProperties":false}}
        """;

    const string PatternCode = """
        {"type":"function","name":"code","parameters":{"type":"object","properties":{"id":{"type":"string",
        "pattern":"^[A-Z]{3}$","format":"uuid"}},"additionalProperties":{"type":"string"}}}
        """;

    static readonly string StrictCode = PatternCode.Replace("\"parameters\"", "\"strict\":true,\"parameters\"");

    [Fact]
    public async Task A_function_whose_schema_the_grammar_cannot_enforce_is_offered_in_auto_mode()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/responses", $$"""
            {"input":"hi","tools":[{{PatternCode}}],"max_output_tokens":2,"store":false}
            """, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("code", (string?)body["tools"]![0]!["name"]);
        var (forced, refusal) = await silo.Http.PostAsync("/v1/responses", $$$"""
            {"input":"hi","tools":[{{{PatternCode}}}],"tool_choice":{"type":"function","name":"code"}}
            """, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, forced);
        Assert.Equal("tools[0].parameters", (string?)refusal["error"]!["param"]);
        Assert.Contains("additionalProperties", (string?)refusal["error"]!["message"]);
    }

    public static readonly TheoryData<string, string> Refusals = new()
    {
        { """{"input":"hi","background":true}""", "background" },
        { """{"input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}""",
            "input[0].content[0].type" },
        { """{"input":[{"type":"item_reference","id":"x"}]}""", "input[0].type" },
        { """{"input":"hi","tools":[{"type":"web_search"}]}""", "tools[0].type" },
        { """{"input":"hi","tool_choice":"required"}""", "tool_choice" },
        // a strict function is held to its schema once a call starts, also in auto mode
        { $$"""{"input":"hi","tools":[{{StrictCode}}]}""", "tools[0].parameters" },
        { $$$$"""{"input":"hi","tools":[{{{{StrictPick}}}}],"text":{"format":{"type":"json_object"}}}""",
            "text.format" },
        { $$"""{"input":"hi","tools":[{{PatternCode}}],"tool_choice":"required"}""", "tools[0].parameters" },
        { """{"input":"hi","tools":[{"type":"function","name":"f","parameters":[]}]}""", "tools[0].parameters" },
        { """{"input":"hi","text":{"format":{"type":"grammar"}}}""", "text.format.type" },
        { """{"input":"hi","text":{"verbosity":"low"}}""", "text.verbosity" },
        { """{"input":"hi","previous_response_id":"resp_x","conversation":"c"}""", "previous_response_id" },
        { """{"input":"hi","previous_response_id":"resp_nothing"}""", "previous_response_id" },
        { """{"input":[]}""", "input" },
        { """{"instructions":"x"}""", "input" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_request_the_server_cannot_honour_is_a_400_naming_its_field(string json, string param)
    {
        var (status, body) = await silo.Http.PostAsync("/v1/responses", json, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(param, (string?)body["error"]!["param"]);
    }

    [Fact]
    public async Task The_raw_stream_names_each_event_before_its_data()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/responses")
        {
            Content = Http.Json("""{"input":"hi","max_output_tokens":2,"temperature":0,"stream":true,"store":false}"""),
        };
        using var response = await silo.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync(Ct);
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        foreach (string e in events)
        {
            var lines = e.Split('\n');
            Assert.StartsWith("event: ", lines[0]);
            using var data = JsonDocument.Parse(lines[1]["data: ".Length..]);
            Assert.Equal(lines[0]["event: ".Length..], data.RootElement.GetProperty("type").GetString());
        }
        Assert.StartsWith("event: response.incomplete", events[^1]);
        Assert.DoesNotContain("[DONE]", text);
    }
}
