using System.Net;
using System.Text.Json.Nodes;
using OpenAI.Chat;

namespace Weft.Silo.Tests;

public sealed class ApiTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Health_is_ready_once_the_model_is_loaded()
    {
        var response = await silo.Http.GetAsync("/health", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        Assert.Equal("ready", (string?)body["status"]);
    }

    [Fact]
    public async Task Models_list_the_served_model()
    {
        var models = (await silo.OpenAI().GetOpenAIModelClient().GetModelsAsync(Ct)).Value;
        Assert.Equal([SiloFixture.ModelName], models.Select(m => m.Id));

        var one = JsonNode.Parse(await silo.Http.GetStringAsync($"/v1/models/{SiloFixture.ModelName}", Ct))!;
        Assert.Equal("model", (string?)one["object"]);
        Assert.Equal(SiloFixture.Shape.ContextLength, (int?)one["max_model_len"]);
        Assert.Equal(HttpStatusCode.NotFound, (await silo.Http.GetAsync("/v1/models/gpt-4", Ct)).StatusCode);
    }

    [Fact]
    public async Task Chat_streamed_through_the_sdk_equals_the_whole_reply_at_temperature_zero()
    {
        var chat = silo.OpenAI().GetChatClient(SiloFixture.ModelName);
        ChatMessage[] messages = [new SystemChatMessage("You are terse."),
            new UserChatMessage("Tell me about the sea.")];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };

        OpenAI.Chat.ChatCompletion whole = await chat.CompleteChatAsync(messages, options, Ct);
        Assert.Equal(ChatMessageRole.Assistant, whole.Role);
        Assert.NotEmpty(whole.Content[0].Text);
        Assert.True(whole.Usage.OutputTokenCount is > 0 and <= 24);

        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync(messages, options, Ct))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        // the SDK asks for usage in streams (stream_options.include_usage)
        Assert.NotNull(usage);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
    }

    [Fact]
    public async Task Raw_chat_stream_has_the_openai_shape()
    {
        var events = await silo.Http.StreamAsync("/v1/chat/completions", $$"""
            {"model":"{{SiloFixture.ModelName}}","messages":[{"role":"user","content":"Hi"}],"temperature":0,
             "max_tokens":8,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},
             "return_token_ids":true}
            """, Ct);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Single(chunks.Select(c => (string?)c["id"]).Distinct());
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var promptIds = chunks[0]["prompt_token_ids"]!.AsArray().Select(t => (int)t!).ToList();

        var usageChunk = chunks[^1];
        Assert.Empty(usageChunk["choices"]!.AsArray());
        Assert.Equal(8, (int?)usageChunk["usage"]!["completion_tokens"]);
        Assert.Equal(promptIds.Count, (int?)usageChunk["usage"]!["prompt_tokens"]);
        Assert.Equal("length", (string?)chunks[^2]["choices"]![0]!["finish_reason"]);
        var tokenIds = chunks[1..^1].SelectMany(c => c["choices"]![0]!["token_ids"]!.AsArray().Select(t => (int)t!))
            .ToList();
        Assert.Equal(8, tokenIds.Count);

        // the same request whole: the same tokens and text
        var (status, whole) = await silo.Http.PostAsync("/v1/chat/completions", $$"""
            {"messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":8,"ignore_eos":true,
             "return_token_ids":true}
            """, Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("chat.completion", (string?)whole["object"]);
        Assert.Equal(promptIds, whole["prompt_token_ids"]!.AsArray().Select(t => (int)t!));
        Assert.Equal(tokenIds, whole["choices"]![0]!["token_ids"]!.AsArray().Select(t => (int)t!));
        string streamed = string.Concat(chunks.Select(c => (string?)c["choices"]!.AsArray()
            .FirstOrDefault()?["delta"]?["content"]));
        Assert.Equal((string?)whole["choices"]![0]!["message"]!["content"], streamed);
        Assert.Null(whole["choices"]![0]!["logprobs"]);
        Assert.True(whole["choices"]![0]!.AsObject().ContainsKey("logprobs"));
    }

    [Fact]
    public async Task Completion_prompts_as_text_token_ids_or_single_element_arrays_give_the_same_reply()
    {
        var tokens = (await silo.Http.PostAsync("/tokenize", """{"prompt":"Once upon a time"}""", Ct))
            .Body["tokens"]!.ToJsonString();
        string Request(string prompt, bool stream = false) =>
            $$"""{"prompt":{{prompt}},"temperature":0,"max_tokens":10,"ignore_eos":true""" +
                $$""","return_token_ids":true,"stream":{{(stream ? "true" : "false")}}}""";

        var replies = new List<JsonNode>();
        foreach (var prompt in new[] { "\"Once upon a time\"", "[\"Once upon a time\"]", tokens, $"[{tokens}]" })
        {
            var (status, body) = await silo.Http.PostAsync("/v1/completions", Request(prompt), Ct);
            Assert.Equal(HttpStatusCode.OK, status);
            replies.Add(body);
        }
        Assert.All(replies, r => Assert.Equal("text_completion", (string?)r["object"]));
        Assert.All(replies, r => Assert.Equal(tokens, r["prompt_token_ids"]!.ToJsonString()));
        Assert.Single(replies.Select(r => r["choices"]![0]!["token_ids"]!.ToJsonString()).Distinct());
        Assert.Single(replies.Select(r => (string?)r["choices"]![0]!["text"]).Distinct());
        Assert.Equal(10, (int?)replies[0]["usage"]!["completion_tokens"]);

        var events = await silo.Http.StreamAsync("/v1/completions", Request("\"Once upon a time\"", stream: true), Ct);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Equal((string?)replies[0]["choices"]![0]!["text"],
            string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["text"])));
        Assert.Equal("length", (string?)chunks[^1]["choices"]![0]!["finish_reason"]);
    }

    [Fact]
    public async Task A_stop_string_ends_the_completion_before_it()
    {
        const string request = """{"prompt":"The sea","temperature":0,"max_tokens":30,"ignore_eos":true}""";
        var idle = await silo.BatchGrain().GetStatsAsync();
        string full = (string)(await silo.Http.PostAsync("/v1/completions", request, Ct)).Body["choices"]![0]!["text"]!;
        string stop = full.Substring(full.Length / 2, 3);
        foreach (var stopJson in new[] { $"\"{stop}\"", $"[\"{stop}\", \"never-generated\"]" })
        {
            var (status, body) = await silo.Http.PostAsync("/v1/completions",
                request.Replace("}", $",\"stop\":{stopJson}}}"), Ct);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], (string?)body["choices"]![0]!["text"]);
            Assert.Equal("stop", (string?)body["choices"]![0]!["finish_reason"]);
        }
        // the request's own conversations are gone, and with them their blocks, though the stop came before the end
        await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is { Running: 0 } l
            && l.Parked <= idle.Load.Parked && l.FreeKvTokens >= idle.Load.FreeKvTokens, "the KV blocks free", Ct);
    }

    public static TheoryData<string, string, HttpStatusCode, string, string?> Refusals => new()
    {
        { "/v1/chat/completions", "{\"messages\": [", HttpStatusCode.BadRequest, "invalid_json", null },
        { "/v1/chat/completions", "[1, 2]", HttpStatusCode.BadRequest, "invalid_json", null },
        { "/v1/chat/completions", "{}", HttpStatusCode.BadRequest, "missing_required_parameter", "messages" },
        { "/v1/chat/completions", """{"messages":[]}""", HttpStatusCode.BadRequest, "invalid_value", "messages" },
        { "/v1/chat/completions", """{"messages":"hello"}""", HttpStatusCode.BadRequest, "invalid_type", "messages" },
        { "/v1/chat/completions", """{"messages":[{"role":"wizard","content":"hi"}]}""", HttpStatusCode.BadRequest,
            "invalid_value", "messages[0].role" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"},{"role":"user"}]}""",
            HttpStatusCode.BadRequest, "missing_required_parameter", "messages[1].content" },
        { "/v1/chat/completions",
            """{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""",
            HttpStatusCode.BadRequest, "unsupported_parameter", "messages[0].content[0].type" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""",
            HttpStatusCode.BadRequest, "invalid_type", "temperature" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":-1}""",
            HttpStatusCode.BadRequest, "invalid_value", "temperature" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_p":0}""",
            HttpStatusCode.BadRequest, "invalid_value", "top_p" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_k":-5}""",
            HttpStatusCode.BadRequest, "invalid_value", "top_k" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}""",
            HttpStatusCode.BadRequest, "invalid_value", "max_tokens" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}""",
            HttpStatusCode.BadRequest, "invalid_type", "max_tokens" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5000}""",
            HttpStatusCode.BadRequest, "context_length_exceeded", "max_tokens" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":7}""",
            HttpStatusCode.BadRequest, "invalid_type", "stop" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}""",
            HttpStatusCode.BadRequest, "invalid_type", "stream" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":9}""", HttpStatusCode.BadRequest,
            "invalid_value", "n" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":0}""", HttpStatusCode.BadRequest,
            "invalid_value", "n" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":2,"conversation_id":"c"}""",
            HttpStatusCode.BadRequest, "invalid_value", "n" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}""",
            HttpStatusCode.BadRequest, "invalid_value", "top_logprobs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}""",
            HttpStatusCode.BadRequest, "invalid_value", "top_logprobs" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":3}""",
            HttpStatusCode.BadRequest, "invalid_type", "logprobs" },
        { "/v1/completions", """{"prompt":"hi","logprobs":6}""", HttpStatusCode.BadRequest, "invalid_value",
            "logprobs" },
        { "/v1/completions", """{"prompt":"hi","n":9}""", HttpStatusCode.BadRequest, "invalid_value", "n" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"presence_penalty":3}""",
            HttpStatusCode.BadRequest, "invalid_value", "presence_penalty" },
        { "/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"truncation":"sometimes"}""",
            HttpStatusCode.BadRequest, "invalid_value", "truncation" },
        { "/v1/chat/completions", """{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}""",
            HttpStatusCode.NotFound, "model_not_found", "model" },
        { "/v1/completions", """{"prompt":[1, 5, 99999]}""", HttpStatusCode.BadRequest, "invalid_value", "prompt" },
        { "/v1/completions", """{"prompt":[1, -3]}""", HttpStatusCode.BadRequest, "invalid_value", "prompt" },
        { "/v1/completions", """{"prompt":[]}""", HttpStatusCode.BadRequest, "invalid_value", "prompt" },
        { "/v1/completions", """{"prompt":["one", "two"]}""", HttpStatusCode.BadRequest, "unsupported_parameter",
            "prompt" },
        { "/v1/completions", """{"prompt":{"text":"x"}}""", HttpStatusCode.BadRequest, "invalid_type", "prompt" },
        { "/v1/completions", """{"prompt":"hi","max_tokens":1023}""", HttpStatusCode.BadRequest,
            "context_length_exceeded", "max_tokens" },
        { "/v1/completions", """{"prompt":"hi","seed":"x"}""", HttpStatusCode.BadRequest, "invalid_type", "seed" },
        { "/v1/completions", """{"prompt":"hi","echo":true}""", HttpStatusCode.BadRequest, "unsupported_parameter",
            "echo" },
        { "/v1/completions", """{"model":"other","prompt":"hi"}""", HttpStatusCode.NotFound, "model_not_found",
            "model" },
        { "/detokenize", """{"tokens":[1, 4096]}""", HttpStatusCode.BadRequest, "invalid_value", "tokens" },
        { "/detokenize", """{"tokens":"abc"}""", HttpStatusCode.BadRequest, "invalid_type", "tokens" },
        { "/tokenize", """{"prompt":5}""", HttpStatusCode.BadRequest, "invalid_type", "prompt" },
        { "/v1/embeddings", """{"input":"hi"}""", HttpStatusCode.NotFound, "not_found", null },
    };

    [Theory, MemberData(nameof(Refusals))]
    public async Task Refusals_give_their_status_and_an_openai_error_body(string path, string body,
        HttpStatusCode status, string code, string? param)
    {
        foreach (bool stream in new[] { false, true })
        {
            // a refusal comes before any event, so a stream request gets the same status and body
            string json = stream && body.StartsWith('{') && body.Length > 2 && !body.Contains("\"stream\"")
                ? body[..^1] + ",\"stream\":true}" : body;
            using var response = await silo.Http.PostAsync(path, Http.Json(json), Ct);
            Assert.Equal(status, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!;
            Assert.Equal(code, (string?)error["code"]);
            Assert.Equal(param, (string?)error["param"]);
            Assert.False(string.IsNullOrWhiteSpace((string?)error["message"]));
            Assert.False(string.IsNullOrWhiteSpace((string?)error["type"]));
            Assert.DoesNotContain("   at ", (string)error["message"]!);
        }
    }

    [Fact]
    public async Task Wrong_methods_and_unknown_routes_get_error_bodies()
    {
        var response = await silo.Http.GetAsync("/v1/chat/completions", Ct);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Equal("method_not_allowed",
            (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
        response = await silo.Http.GetAsync("/nothing/here", Ct);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not_found",
            (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
    }

    [Fact]
    public async Task History_past_the_context_is_cut_for_a_conversation_and_refused_for_a_one_off_request()
    {
        var messages = new JsonArray(new JsonObject { ["role"] = "system", ["content"] = "Answer briefly." });
        for (int turn = 0; turn < 8; turn++)
        {
            string words = string.Join(' ', Enumerable.Range(0, 90).Select(i => $"w{(i * 7 + turn) % 97}"));
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = words });
            messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = "Noted." });
        }
        messages.Add(new JsonObject { ["role"] = "user", ["content"] = "And now?" });
        async Task<HttpResponseMessage> Send(string extra) => await silo.Http.PostAsync("/v1/chat/completions",
            Http.Json($$"""{"messages":{{messages.ToJsonString()}},"max_tokens":8{{extra}}}"""), Ct);

        using var oneOff = await Send("");
        Assert.Equal(HttpStatusCode.BadRequest, oneOff.StatusCode);
        string oneOffError = await oneOff.Content.ReadAsStringAsync(Ct);
        Assert.Contains("context_length_exceeded", oneOffError);
        Assert.Contains("truncation is disabled for a request without a conversation id", oneOffError);
        foreach (string extra in new[] { ",\"conversation_id\":\"cut-history\"", ",\"truncation\":\"auto\"" })
        {
            using var cut = await Send(extra);
            Assert.Equal(HttpStatusCode.OK, cut.StatusCode);
            var usage = JsonNode.Parse(await cut.Content.ReadAsStringAsync(Ct))!["usage"]!;
            Assert.True((int)usage["dropped_tokens"]! > 0);
            Assert.True((int)usage["prompt_tokens"]! + 8 <= 1024);
        }
        using var refused = await Send(",\"conversation_id\":\"kept-history\",\"truncation\":\"disabled\"");
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!["error"]!;
        Assert.Equal("context_length_exceeded", (string?)error["code"]);
        Assert.Equal("truncation", (string?)error["param"]);
        Assert.Contains("the request disables truncation", (string)error["message"]!);
        Assert.Contains("\"truncation\": \"auto\"", (string)error["message"]!);
    }

    [Fact]
    public async Task A_conversation_id_keeps_the_kv_cache_between_turns()
    {
        foreach (var (name, header) in new[] { ("conv-body", false), ("conv-header", true) })
        {
            async Task<JsonNode> Turn(string messages)
            {
                string idField = header ? "" : $",\"conversation_id\":\"{name}\"";
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
                {
                    Content = Http.Json(
                        $$"""{"messages":{{messages}},"temperature":0,"max_tokens":12,"ignore_eos":true{{idField}}}"""),
                };
                if (header) request.Headers.Add("X-Conversation-Id", name);
                using var response = await silo.Http.SendAsync(request, Ct);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                return JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
            }

            var first = await Turn("""[{"role":"user","content":"Tell me about the sea."}]""");
            string reply = (string)first["choices"]![0]!["message"]!["content"]!;
            var messages = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = "Tell me about the sea." },
                new JsonObject { ["role"] = "assistant", ["content"] = reply },
                new JsonObject { ["role"] = "user", ["content"] = "And the mountains?" });
            var second = await Turn(messages.ToJsonString());
            // the whole first turn was computed except its last sampled token
            int expected = (int)first["usage"]!["prompt_tokens"]! + (int)first["usage"]!["completion_tokens"]! - 1;
            Assert.Equal(expected, (int?)second["usage"]!["prompt_tokens_details"]!["cached_tokens"]);
        }
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip()
    {
        const string text = "Hello world, the sea is calm.";
        var (status, body) = await silo.Http.PostAsync("/tokenize",
            $$"""{"model":"{{SiloFixture.ModelName}}","prompt":"{{text}}"}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var tokens = body["tokens"]!.AsArray().Select(t => (int)t!).ToList();
        Assert.Equal(tokens.Count, (int?)body["count"]);
        Assert.Equal(1, tokens[0]); // BOS, which the model adds
        var without = (await silo.Http.PostAsync("/tokenize",
            $$"""{"prompt":"{{text}}","add_special_tokens":false}""", Ct)).Body["tokens"]!.AsArray();
        Assert.Equal(tokens.Skip(1), without.Select(t => (int)t!));

        var (status2, back) = await silo.Http.PostAsync("/detokenize",
            $$"""{"tokens":[{{string.Join(",", tokens)}}]}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status2);
        Assert.Equal(text, (string?)back["prompt"]);

        // chat messages tokenize as the chat endpoint does
        const string messages = """[{"role":"user","content":"Hi there"}]""";
        var chatTokens = (await silo.Http.PostAsync("/tokenize", $$"""{"messages":{{messages}}}""", Ct))
            .Body["tokens"]!.ToJsonString();
        var chat = (await silo.Http.PostAsync("/v1/chat/completions",
            $$"""{"messages":{{messages}},"max_tokens":1,"return_token_ids":true}""", Ct)).Body;
        Assert.Equal(chatTokens, chat["prompt_token_ids"]!.ToJsonString());
    }

    [Fact]
    public async Task A_disconnected_clients_generation_stops_and_frees_its_blocks()
    {
        var idle = await silo.BatchGrain().GetStatsAsync();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Http.Json(
                """{"prompt":"A long story","temperature":0,"max_tokens":1000,"ignore_eos":true,"stream":true}"""),
        })
        using (var response = await silo.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
            for (int events = 0; events < 3;)
                if ((await reader.ReadLineAsync(Ct))?.StartsWith("data: ") == true) events++;
            // leaving the block closes the connection mid-stream
        }
        await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is { Running: 0, Waiting: 0 } l
            && l.FreeKvTokens >= idle.Load.FreeKvTokens,
            "running back to 0 and the KV blocks free", Ct);
        var after = await silo.BatchGrain().GetStatsAsync();
        Assert.True(after.TokensGenerated - idle.TokensGenerated < 1000,
            $"{after.TokensGenerated - idle.TokensGenerated} tokens were generated: the generation was not stopped");
    }

    [Fact]
    public async Task Two_hundred_fifty_six_concurrent_streams_all_complete()
    {
        const int n = 256;
        var before = await silo.BatchGrain().GetStatsAsync();
        var streams = await Task.WhenAll(Enumerable.Range(0, n).Select(i =>
            silo.Http.StreamAsync("/v1/chat/completions", $$$"""
            {"messages":[{"role":"user","content":"Request {{{i}}}"}],"temperature":0.7,"seed":{{{i}}},
             "max_tokens":{{{4 + i % 5}}},"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true} }
            """, Ct)));
        for (int i = 0; i < n; i++)
        {
            Assert.Equal("[DONE]", streams[i][^1]);
            var usage = JsonNode.Parse(streams[i][^2])!["usage"];
            Assert.True(usage is not null, $"stream {i} ended with {streams[i][^2]}");
            Assert.Equal(4 + i % 5, (int?)usage["completion_tokens"]);
        }
        var after = await silo.BatchGrain().GetStatsAsync();
        Assert.True((after.MeanBatchSize * after.Ticks - before.MeanBatchSize * before.Ticks)
            / (after.Ticks - before.Ticks) > 8, "concurrent requests should share ticks");
        await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is { Running: 0, Waiting: 0 },
            "the batch drained", Ct);
    }

    [Fact]
    public async Task Metrics_export_the_weft_series_in_prometheus_text()
    {
        await silo.Http.PostAsync("/v1/completions", """{"prompt":"metrics","max_tokens":4}""", Ct);
        var response = await silo.Http.GetAsync("/metrics", Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string text = await response.Content.ReadAsStringAsync(Ct);
        foreach (var (name, type) in new[]
        {
            ("weft_requests_running", "gauge"), ("weft_requests_waiting", "gauge"),
            ("weft_kv_cache_usage_ratio", "gauge"), ("weft_preemptions_total", "counter"),
            ("weft_prompt_tokens_total", "counter"), ("weft_generation_tokens_total", "counter"),
            ("weft_cached_prompt_tokens_total", "counter"), ("weft_requests_total", "counter"),
            ("weft_time_to_first_token_seconds", "histogram"), ("weft_inter_token_latency_seconds", "histogram"),
            ("weft_e2e_request_latency_seconds", "histogram"), ("weft_tick_duration_seconds", "histogram"),
            ("weft_batch_size", "histogram"), ("http_server_request_duration_seconds", "histogram"),
        })
            Assert.Contains($"# TYPE {name} {type}\n", text);
        // per-request series are labelled with the model, the device and the tenant (here the one of a silo without
        // keys)
        Assert.Contains("weft_requests_total{otel_scope_name=\"Weft\",device=\"0\",finish_reason=\"length\"," +
            $"model=\"{SiloFixture.ModelName}\",tenant=\"default\"}}", text);
        // latency histograms in seconds have sub-second buckets
        Assert.Contains("weft_time_to_first_token_seconds_bucket{otel_scope_name=\"Weft\",device=\"0\"," +
            $"model=\"{SiloFixture.ModelName}\",tenant=\"default\",le=\"0.001\"}}", text);
    }
}
