using System.Net;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using OpenAI.Chat;
using AI = Microsoft.Extensions.AI;
using ChatMessage = OpenAI.Chat.ChatMessage;
using ChatResponseFormat = OpenAI.Chat.ChatResponseFormat;

namespace Weft.Silo.Tests;

/// <summary>
/// Tools, structured output and logit bias through the official OpenAI SDK and Microsoft.Extensions.AI. The model's
/// weights are random: forced tool calls and schemas are what makes its replies parse, whatever it would say.
/// </summary>
// the SDK marks Seed as experimental
#pragma warning disable OPENAI001
public sealed class ToolTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static readonly ChatTool Weather = ChatTool.CreateFunctionTool("get_weather", "The weather in a city",
        BinaryData.FromString("""
            {"type":"object","properties":{"city":{"type":"string","maxLength":12},
             "unit":{"enum":["celsius","fahrenheit"]}},"required":["city","unit"],"additionalProperties":false}
            """));

    static readonly ChatTool Time = ChatTool.CreateFunctionTool("get_time", "The time now");

    ChatClient Chat => silo.OpenAI().GetChatClient(SiloFixture.ModelName);

    [Fact]
    public async Task Required_tool_calls_are_well_formed_for_many_seeds()
    {
        for (long seed = 1; seed <= 8; seed++)
        {
            var options = new ChatCompletionOptions
            {
                Tools = { Weather, Time },
                ToolChoice = ChatToolChoice.CreateRequiredChoice(),
                AllowParallelToolCalls = false,
                Temperature = 1,
                Seed = seed,
                MaxOutputTokenCount = 300,
            };
            OpenAI.Chat.ChatCompletion reply = await Chat.CompleteChatAsync(
                [new UserChatMessage("What is the weather in Paris?")], options, Ct);
            Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, reply.FinishReason);
            var call = Assert.Single(reply.ToolCalls);
            Assert.StartsWith("call_", call.Id);
            using var arguments = JsonDocument.Parse(call.FunctionArguments);
            if (call.FunctionName == "get_weather")
            {
                Assert.True(arguments.RootElement.GetProperty("city").GetString()!.Length <= 12);
                Assert.Contains(arguments.RootElement.GetProperty("unit").GetString(),
                    (string[])["celsius", "fahrenheit"]);
            }
            else
            {
                Assert.Equal("get_time", call.FunctionName);
                Assert.Equal("{}", call.FunctionArguments.ToString());
            }
        }
    }

    [Fact]
    public async Task A_named_tool_call_streams_as_openai_chunks_equal_to_the_whole_reply()
    {
        var options = new ChatCompletionOptions
        {
            Tools = { Weather, Time },
            ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather"),
            Temperature = 0,
            MaxOutputTokenCount = 300,
        };
        ChatMessage[] messages = [new UserChatMessage("Weather in Oslo?")];
        OpenAI.Chat.ChatCompletion whole = await Chat.CompleteChatAsync(messages, options, Ct);
        var call = Assert.Single(whole.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);

        string? id = null, name = null;
        var arguments = new System.Text.StringBuilder();
        int pieces = 0;
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in Chat.CompleteChatStreamingAsync(messages, options, Ct))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                id ??= part.ToolCallId;
                name ??= part.FunctionName;
                arguments.Append(part.FunctionArgumentsUpdate?.ToString());
                pieces++;
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, finish);
        Assert.StartsWith("call_", id);
        Assert.Equal(call.FunctionName, name);
        Assert.Equal(call.FunctionArguments.ToString(), arguments.ToString());
        Assert.True(pieces > 1, $"the arguments came in {pieces} piece");
    }

    [Fact]
    public async Task Streamed_tool_calls_come_in_openai_deltas_that_add_up_to_the_whole_reply()
    {
        string request = """
            {"model":"test-model","messages":[{"role":"user","content":"Weather in Oslo and Rome?"}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
               "properties":{"city":{"type":"string","maxLength":12}},"required":["city"]}}}],
             "tool_choice":"required","temperature":0,"max_tokens":300}
            """;
        var (status, whole) = await silo.Http.PostAsync("/v1/chat/completions", request, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var expected = whole["choices"]![0]!["message"]!["tool_calls"]!.AsArray()
            .Select(c => $"{c!["function"]!["name"]} {c["function"]!["arguments"]}").ToList();
        Assert.NotEmpty(expected);

        var (calls, chunks, finish) = await StreamedCallsAsync(request);
        Assert.Equal("tool_calls", finish);
        Assert.True(chunks > calls.Count, $"{calls.Count} calls came in {chunks} chunks");
        Assert.All(calls, c => Assert.StartsWith("call_", c.Id));
        Assert.Equal(expected, calls.Select(c => $"{c.Name} {c.Arguments}"));
    }

    /// <summary>The tool calls of a streamed reply to <paramref name="request"/>, accumulated from their deltas as
    /// OpenAI's SDKs do (checking that they have OpenAI's shape), the chunks that carried them and the finish
    /// reason.</summary>
    async Task<(List<(string Id, string Name, System.Text.StringBuilder Arguments)> Calls, int Chunks,
        string? Finish)> StreamedCallsAsync(string request)
    {
        var events = await silo.Http.StreamAsync("/v1/chat/completions",
            request.TrimEnd()[..^1] + ",\"stream\":true}", Ct);
        Assert.Equal("[DONE]", events[^1]);
        var calls = new List<(string Id, string Name, System.Text.StringBuilder Arguments)>();
        int chunks = 0;
        string? finish = null;
        foreach (string e in events[..^1])
        {
            var choice = System.Text.Json.Nodes.JsonNode.Parse(e)!["choices"]![0]!;
            finish ??= (string?)choice["finish_reason"];
            if (choice["delta"]!["tool_calls"] is not { } parts) continue;
            var part = Assert.Single(parts.AsArray())!;
            int index = (int)part["index"]!;
            chunks++;
            // the first piece of a call names it, the next ones only add to its arguments
            if (part["id"] is { } callId)
            {
                Assert.Equal(calls.Count, index);
                Assert.Equal("function", (string?)part["type"]);
                calls.Add(((string)callId!, (string)part["function"]!["name"]!,
                    new((string?)part["function"]!["arguments"])));
            }
            else
            {
                Assert.Null(part["type"]);
                Assert.Null(part["function"]!["name"]);
                calls[index].Arguments.Append((string)part["function"]!["arguments"]!);
            }
        }
        return (calls, chunks, finish);
    }

    [Fact]
    public async Task A_conversation_with_a_tool_call_and_its_result_is_rendered_and_answered()
    {
        var (status, reply) = await silo.Http.PostAsync("/v1/chat/completions", """
            {"messages":[{"role":"user","content":"Weather in Oslo?"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_17","type":"function",
                "function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}}]},
              {"role":"tool","tool_call_id":"call_17","content":"{\"temperature\":3}"}],
             "tools":[{"type":"function","function":{"name":"get_weather","description":"The weather in a city",
               "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
             "temperature":0,"max_tokens":8,"return_token_ids":true}
            """, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.NotNull((string?)reply["choices"]![0]!["finish_reason"]);
        string prompt = await RenderedAsync(reply);
        // the generic format: the tools in the system message, the call as JSON, its result as a tool_response
        Assert.Contains("\"name\":\"get_weather\",\"description\":\"The weather in a city\"", prompt);
        Assert.Contains("{\"tool_calls\":[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"", prompt);
        Assert.Contains("{\"tool_response\":{\"tool_call_id\":\"call_17\",\"content\":", prompt);
        Assert.Contains("temperature", prompt);
    }

    /// <summary>The prompt a reply was generated from, as text (the reply asked for return_token_ids).</summary>
    async Task<string> RenderedAsync(System.Text.Json.Nodes.JsonNode reply)
    {
        var (status, text) = await silo.Http.PostAsync("/detokenize",
            $"{{\"tokens\":{reply["prompt_token_ids"]!.ToJsonString()}}}", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        return (string)text["prompt"]!;
    }

    [Fact]
    public async Task A_tool_with_a_date_time_parameter_from_ai_function_factory_is_offered_in_auto_mode()
    {
        var schedule = AIFunctionFactory.Create((DateTime when, int minutes) => $"booked {when:O}", "book",
            "Books a meeting");
        // the schema the framework writes uses keywords the grammar cannot enforce; only a forced call needs one
        Assert.Contains("date-time", schedule.JsonSchema.GetRawText());
        using var client = Chat.AsIChatClient();
        var response = await client.GetResponseAsync("Book a meeting tomorrow.", new AI.ChatOptions
        {
            Tools = [schedule], ToolMode = ChatToolMode.Auto, Temperature = 0, MaxOutputTokens = 8,
        }, Ct);
        Assert.NotNull(response.FinishReason);
        Assert.True(response.Usage!.InputTokenCount > 0);
    }

    const string PatternTool = """
        [{"type":"function","function":{"name":"code","parameters":{"type":"object",
          "properties":{"id":{"type":"string","pattern":"^[A-Z]{3}$"}},"required":["id"]}}}]
        """;

    [Theory]
    [InlineData("\"auto\"", HttpStatusCode.OK)]
    [InlineData("\"none\"", HttpStatusCode.OK)]
    [InlineData("\"required\"", HttpStatusCode.BadRequest)]
    [InlineData("""{"type":"function","function":{"name":"code"}}""", HttpStatusCode.BadRequest)]
    public async Task A_schema_keyword_the_grammar_cannot_enforce_is_refused_only_for_a_forced_call(string choice,
        HttpStatusCode expected)
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions",
            $$"""
            {"messages":[{"role":"user","content":"hi"}],"tools":{{PatternTool}},"tool_choice":{{choice}},
             "max_tokens":4}
            """, Ct);
        Assert.Equal(expected, status);
        if (expected != HttpStatusCode.BadRequest) return;
        Assert.Equal("tools[0].function.parameters", (string?)body["error"]!["param"]);
        Assert.Contains("'pattern'", (string?)body["error"]!["message"]);
    }

    [Fact]
    public async Task Tool_parameters_that_are_not_a_schema_object_are_a_400()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions", """
            {"messages":[{"role":"user","content":"hi"}],
             "tools":[{"type":"function","function":{"name":"f","parameters":"none"}}]}
            """, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("tools[0].function.parameters", (string?)body["error"]!["param"]);
    }

    const string StrictPick = """
        [{"type":"function","function":{"name":"pick","strict":true,"parameters":{"type":"object",
          "properties":{"n":{"enum":[1,2,3]}},"required":["n"],"additionalProperties":false}}}]
        """;

    [Fact]
    public async Task A_strict_function_is_enforced_when_forced()
    {
        var (status, forced) = await silo.Http.PostAsync("/v1/chat/completions", $$"""
            {"messages":[{"role":"user","content":"hi"}],"tools":{{StrictPick}},"tool_choice":"required",
             "temperature":1,"seed":3,"max_tokens":200}
            """, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var call = forced["choices"]![0]!["message"]!["tool_calls"]![0]!["function"]!;
        Assert.Equal("pick", (string?)call["name"]);
        Assert.Contains((string?)call["arguments"], (string[])["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    }

    /// <summary>The random model pushed by logit_bias to open its reply with "{", which starts a call in the
    /// template's generic format: with tool_choice auto the strict function's lazy grammar holds the call from there
    /// on (the random model spends tokens on the whitespace it allows); without strict the same reply is "{{{..." and
    /// no call.</summary>
    [Fact]
    public async Task An_auto_mode_call_to_a_strict_function_is_held_to_its_schema_once_it_starts()
    {
        var tokenizer = silo.App.Services.GetRequiredService<Weft.Grains.ModelHost>().Tokenizer;
        int brace = Enumerable.Range(0, tokenizer.VocabSize).First(id => tokenizer.DecodeToken(id) is [(byte)'{']);
        string Request(string tools, long seed) => $$$"""
            {"messages":[{"role":"user","content":"hi"}],"tools":{{{tools}}},"tool_choice":"auto","temperature":1,
             "seed":{{{seed}}},"max_tokens":300,"logit_bias":{"{{{brace}}}":100}}
            """;
        for (long seed = 1; seed <= 4; seed++)
        {
            var (status, reply) = await silo.Http.PostAsync("/v1/chat/completions", Request(StrictPick, seed), Ct);
            Assert.Equal(HttpStatusCode.OK, status);
            var choice = reply["choices"]![0]!;
            Assert.Equal("tool_calls", (string?)choice["finish_reason"]);
            Assert.All(choice["message"]!["tool_calls"]!.AsArray(), c =>
            {
                Assert.Equal("pick", (string?)c!["function"]!["name"]);
                // the lazy grammar takes JSON's whitespace between tokens, as a model writes its own calls
                using var arguments = JsonDocument.Parse((string)c["function"]!["arguments"]!);
                var n = Assert.Single(arguments.RootElement.EnumerateObject());
                Assert.Equal("n", n.Name);
                Assert.Contains(n.Value.GetInt32(), (int[])[1, 2, 3]);
            });
        }
        var (_, loose) = await silo.Http.PostAsync("/v1/chat/completions",
            Request(StrictPick.Replace("\"strict\":true", "\"strict\":false"), 1), Ct);
        Assert.Null(loose["choices"]![0]!["message"]!["tool_calls"]);
        Assert.StartsWith("{{{", (string?)loose["choices"]![0]!["message"]!["content"]);
    }

    [Fact]
    public async Task A_strict_function_whose_schema_the_grammar_cannot_enforce_is_a_400_in_auto_mode()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions", """
            {"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"code",
             "strict":true,"parameters":{"type":"object","properties":{"id":{"type":"string","pattern":"^A$"}}}}}]}
            """, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("tools[0].function.parameters", (string?)body["error"]!["param"]);
        Assert.Contains("pattern", (string?)body["error"]!["message"]);
    }

    /// <summary>A GBNF grammar that makes the random model answer two calls in the generic JSON format, which it
    /// would never do by itself: an auto-mode reply that holds calls.</summary>
    static readonly string TwoCalls = "\"grammar\":" + JsonSerializer.Serialize("root ::= \"" + """
        {"tool_calls":[{"name":"get_time","arguments":{}},{"name":"get_weather","arguments":{"city":"Oslo"}}]}
        """.Replace("\"", "\\\"") + "\"");

    const string TwoTools = """
        [{"type":"function","function":{"name":"get_time"}},
         {"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
           "properties":{"city":{"type":"string","format":"city-name"}}}}}]
        """;

    [Theory]
    [InlineData(true, "\"get_time\",\"get_weather\"")]
    [InlineData(false, "\"get_time\"")]
    public async Task An_auto_mode_reply_with_calls_is_parsed_and_parallel_tool_calls_false_keeps_the_first(
        bool parallel, string names)
    {
        string request = $$"""
            {"messages":[{"role":"user","content":"Time and weather?"}],"tools":{{TwoTools}},"tool_choice":"auto",
             "parallel_tool_calls":{{(parallel ? "true" : "false")}},"max_tokens":200,{{TwoCalls}}}
            """;
        var (status, reply) = await silo.Http.PostAsync("/v1/chat/completions", request, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = reply["choices"]![0]!;
        Assert.Equal("tool_calls", (string?)choice["finish_reason"]);
        var calls = choice["message"]!["tool_calls"]!.AsArray();
        Assert.Equal($"[{names}]",
            new System.Text.Json.Nodes.JsonArray([.. calls.Select(c => (System.Text.Json.Nodes.JsonNode?)
                (string?)c!["function"]!["name"])]).ToJsonString());
        Assert.All(calls, c => Assert.StartsWith("call_", (string?)c!["id"]));
        Assert.Equal("{}", (string?)calls[0]!["function"]!["arguments"]);
        if (parallel) Assert.Equal("{\"city\":\"Oslo\"}", (string?)calls[1]!["function"]!["arguments"]);

        // streamed: the same calls under indices 0 and 1, or only the first
        var (streamed, _, finish) = await StreamedCallsAsync(request);
        Assert.Equal("tool_calls", finish);
        Assert.Equal(calls.Select(c => $"{c!["function"]!["name"]} {c["function"]!["arguments"]}"),
            streamed.Select(c => $"{c.Name} {c.Arguments}"));
    }

    [Fact]
    public async Task Tool_choice_none_leaves_the_tools_out_and_the_reply_has_no_calls()
    {
        string Request(string tools) => $$"""
            {"messages":[{"role":"user","content":"Time?"}],{{tools}}"max_tokens":200,"return_token_ids":true,
             {{TwoCalls}}}
            """;
        var (status, reply) = await silo.Http.PostAsync("/v1/chat/completions",
            Request($"\"tools\":{TwoTools},\"tool_choice\":\"none\","), Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = reply["choices"]![0]!;
        Assert.Equal("stop", (string?)choice["finish_reason"]);
        Assert.Null(choice["message"]!["tool_calls"]);
        // what would have been a call is the reply's text
        Assert.StartsWith("{\"tool_calls\":[", (string?)choice["message"]!["content"]);
        var (_, plain) = await silo.Http.PostAsync("/v1/chat/completions", Request(""), Ct);
        Assert.Equal(plain["prompt_token_ids"]!.ToJsonString(), reply["prompt_token_ids"]!.ToJsonString());
        Assert.DoesNotContain("get_weather", await RenderedAsync(reply));
    }

    public static readonly TheoryData<string> Schemas =
    [
        """
        {"type":"object","properties":{"name":{"type":"string","maxLength":10},"age":{"type":"integer"}},
        "required":["name","age"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"ok":{"type":"boolean"},"tags":{"type":"array","items":{"enum":["a",
        "b","c"]},"maxItems":3}},"required":["ok","tags"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"point":{"type":"object","properties":{"x":{"type":"number"},
        "y":{"type":"number"}},"required":["x","y"],"additionalProperties":false},"label":{"type":["string",
        "null"],"maxLength":6}},"required":["point","label"],"additionalProperties":false}
        """,
    ];

    [Theory]
    [MemberData(nameof(Schemas))]
    public async Task Json_schema_replies_of_the_random_model_parse_and_validate(string schema)
    {
        using var schemaDoc = JsonDocument.Parse(schema);
        for (long seed = 1; seed <= 5; seed++)
        {
            var options = new ChatCompletionOptions
            {
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("reply", BinaryData.FromString(schema),
                    jsonSchemaIsStrict: true),
                Temperature = 1,
                Seed = seed,
                MaxOutputTokenCount = 400,
            };
            OpenAI.Chat.ChatCompletion reply = await Chat.CompleteChatAsync(
                [new UserChatMessage("Describe someone.")], options, Ct);
            Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, reply.FinishReason);
            using var doc = JsonDocument.Parse(reply.Content[0].Text);
            Validate(schemaDoc.RootElement, doc.RootElement);
        }
    }

    /// <summary>The keywords the test schemas use.</summary>
    static void Validate(JsonElement schema, JsonElement value)
    {
        if (schema.TryGetProperty("enum", out var values))
        {
            Assert.Contains(values.EnumerateArray(), v => v.GetRawText() == value.GetRawText());
            return;
        }
        var types = schema.GetProperty("type") is { ValueKind: JsonValueKind.Array } list
            ? list.EnumerateArray().Select(t => t.GetString()!).ToList() : [schema.GetProperty("type").GetString()!];
        string kind = value.ValueKind switch
        {
            JsonValueKind.Object => "object",
            JsonValueKind.Array => "array",
            JsonValueKind.String => "string",
            JsonValueKind.Number when types.Contains("integer") && value.TryGetInt64(out _) => "integer",
            JsonValueKind.Number => "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        };
        Assert.Contains(kind, types);
        if (kind == "object")
        {
            var properties = schema.GetProperty("properties");
            foreach (var required in schema.GetProperty("required").EnumerateArray())
                Assert.True(value.TryGetProperty(required.GetString()!, out _), required.GetString());
            foreach (var p in value.EnumerateObject()) Validate(properties.GetProperty(p.Name), p.Value);
        }
        else if (kind == "array")
        {
            if (schema.TryGetProperty("maxItems", out var max)) Assert.True(value.GetArrayLength() <= max.GetInt32());
            foreach (var item in value.EnumerateArray()) Validate(schema.GetProperty("items"), item);
        }
        else if (kind == "string" && schema.TryGetProperty("maxLength", out var maxLength))
            Assert.True(value.GetString()!.Length <= maxLength.GetInt32());
    }

    [Fact]
    public async Task A_schema_keyword_that_cannot_be_guaranteed_is_a_400_naming_it()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions", """
            {"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema",
             "json_schema":{"name":"x","schema":{"type":"string","pattern":"^a+$"}}}}
            """, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("response_format.json_schema.schema", (string?)body["error"]!["param"]);
        Assert.Contains("'pattern'", (string?)body["error"]!["message"]);
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"functions":[]}""",
        "functions")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}""",
        "reasoning_effort")]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"store":true}""", "store")]
    [InlineData("/v1/completions", """{"prompt":"hi","best_of":2}""", "best_of")]
    [InlineData("/v1/completions", """{"prompt":"hi","tools":[]}""", "tools")]
    public async Task A_field_the_server_does_not_apply_is_a_400_naming_it(string path, string json, string field)
    {
        var (status, body) = await silo.Http.PostAsync(path, json, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(field, (string?)body["error"]!["param"]);
    }

    [Fact]
    public async Task A_token_banned_by_logit_bias_never_appears()
    {
        const string request = """
            {"messages":[{"role":"user","content":"Tell me a story."}],"temperature":0,"max_tokens":24,
             "ignore_eos":true,"return_token_ids":true{0}}
            """;
        var (_, first) = await silo.Http.PostAsync("/v1/chat/completions", request.Replace("{0}", ""), Ct);
        var banned = first["choices"]![0]!["token_ids"]!.AsArray().Select(t => (int)t!).Distinct().ToList();
        string bias = string.Join(',', banned.Select(t => $"\"{t}\":-100"));
        var (status, second) = await silo.Http.PostAsync("/v1/chat/completions",
            request.Replace("{0}", $",\"logit_bias\":{{{bias}}}"), Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var tokens = second["choices"]![0]!["token_ids"]!.AsArray().Select(t => (int)t!).ToList();
        Assert.Equal(24, tokens.Count);
        Assert.DoesNotContain(tokens, banned.Contains);
    }

    [Fact]
    public async Task The_function_invocation_loop_of_microsoft_extensions_ai_calls_the_function_and_answers()
    {
        int calls = 0;
        // a boolean argument: a string's length would be up to the random weights
        var weather = AIFunctionFactory.Create((bool celsius) =>
        {
            calls++;
            return celsius ? "20 C" : "68 F";
        }, "get_weather", "The weather in Rome");
        using var client = new ChatClientBuilder(Chat.AsIChatClient()).UseFunctionInvocation().Build();
        var response = await client.GetResponseAsync("Weather in Rome?", new AI.ChatOptions
        {
            Tools = [weather],
            ToolMode = ChatToolMode.RequireAny,
            Temperature = 0,
            AllowMultipleToolCalls = false,
            MaxOutputTokens = 200,
        }, Ct);
        Assert.Equal(1, calls);
        var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
        Assert.Equal("get_weather", call.Name);
        Assert.True(call.Arguments!.ContainsKey("celsius"));
        Assert.Contains(response.Messages, m => m.Role == AI.ChatRole.Tool);
    }
}
