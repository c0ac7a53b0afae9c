using Weft.Models.Chat;
using Weft.Models.Chat.ToolCalls;
using Weft.Models.Tests.Tokenization;
using Weft.Models.Tokenization;

namespace Weft.Models.Tests.Chat.ToolCalls;

/// <summary>Tool calls found in replies as each family writes them (outputs of the models, as their decoders show
/// them: control-token markers such as &lt;|python_tag|&gt; and [TOOL_CALLS] are not shown).</summary>
public class ToolCallParserTests
{
    public static readonly TheoryData<ToolCallFormat, string, string, string[]> Replies = new()
    {
        // Qwen2.5-7B-Instruct
        { ToolCallFormat.Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " +
            "{\"city\": \"Zürich\", \"unit\": \"celsius\"}}\n</tool_call>", "",
            ["get_weather {\"city\": \"Zürich\", \"unit\": \"celsius\"}"] },
        // Hermes-3, two calls after some text
        { ToolCallFormat.Hermes,
            "Let me look.\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"a\"}}\n</tool_call>\n" +
            "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"b\"}}\n</tool_call>", "Let me look.\n",
            ["search {\"query\": \"a\"}", "search {\"query\": \"b\"}"] },
        // a call a strict function's lazy grammar held: compact, and ended once the call is complete
        { ToolCallFormat.Hermes, "Let me look.<tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1}}", "Let me look.",
            ["f {\"a\":1}"] },
        // Llama-3.1-8B-Instruct, JSON tool calling
        { ToolCallFormat.Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
            ["get_weather {\"city\": \"Paris\"}"] },
        // Llama 3.2, two calls separated by ";"
        { ToolCallFormat.Llama3,
            "{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}", "",
            ["a {\"x\": 1}", "b {}"] },
        // a template whose tokenizer renders the tag
        { ToolCallFormat.Llama3, "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}", "",
            ["a {\"x\": 1}"] },
        // Mistral-7B-Instruct-v0.3 (the [TOOL_CALLS] control token is not shown)
        { ToolCallFormat.Mistral,
            "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}]", "",
            ["get_weather {\"city\": \"Paris\"}"] },
        { ToolCallFormat.Mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"k\": true}}]", "",
            ["f {\"k\": true}"] },
        // Mistral-Small-3.2 (v11 tokenizer)
        { ToolCallFormat.Mistral, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}", "",
            ["get_weather {\"city\": \"Paris\"}"] },
        // the generic format, and what forced calls produce in every format
        { ToolCallFormat.Generic, "{\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"a\":1}}]}", "", ["f {\"a\":1}"] },
        { ToolCallFormat.Hermes, "{\"tool_calls\":[{\"name\":\"f\",\"arguments\":{\"a\":1}}]}", "", ["f {\"a\":1}"] },
        { ToolCallFormat.Generic, "{\"tool_call\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}", "",
            ["f {\"a\":1}"] },
        // text that only looks like a call stays text
        { ToolCallFormat.Generic, "{\"answer\": 42}", "{\"answer\": 42}", [] },
        { ToolCallFormat.Hermes, "Use <tool_call> tags.", "Use <tool_call> tags.", [] },
        { ToolCallFormat.Llama3, "Hello there.", "Hello there.", [] },
    };

    [Theory]
    [MemberData(nameof(Replies))]
    public void A_reply_splits_into_its_text_and_its_calls(ToolCallFormat format, string reply, string content,
        string[] calls)
    {
        var (text, found) = ToolCallParser.Parse(format, reply);
        Assert.Equal(content, text);
        Assert.Equal(calls, found.Select(c => $"{c.Name} {c.Arguments}"));
    }

    [Theory]
    [MemberData(nameof(Replies))]
    public void Streamed_pieces_show_text_only_while_it_cannot_be_a_call(ToolCallFormat format, string reply,
        string content, string[] calls)
    {
        var splitter = new ToolCallSplitter(format);
        var shown = new System.Text.StringBuilder();
        // three characters at a time: markers arrive split
        for (int i = 0; i < reply.Length; i += 3)
            shown.Append(splitter.Push(reply[i..Math.Min(i + 3, reply.Length)]).Text);
        var (rest, found, _) = splitter.Finish();
        Assert.Equal(content, shown + rest);
        Assert.Equal(calls.Length, found.Count);
    }

    /// <summary>A reply pushed through a splitter piece by piece: the text shown, every call piece in order, and
    /// the calls the end finds.</summary>
    static (string Text, List<ToolCallTextDelta> Pieces, IReadOnlyList<ToolCallText> Calls) Stream(
        ToolCallSplitter splitter, IEnumerable<string> pieces)
    {
        var shown = new System.Text.StringBuilder();
        var deltas = new List<ToolCallTextDelta>();
        foreach (string piece in pieces)
        {
            var (text, calls) = splitter.Push(piece);
            shown.Append(text);
            deltas.AddRange(calls);
        }
        var (rest, found, completing) = splitter.Finish();
        deltas.AddRange(completing);
        return (shown + rest, deltas, found);
    }

    /// <summary>The calls the pieces make, as a client accumulates them (OpenAI's SDKs key them by index).</summary>
    static List<string> Accumulated(List<ToolCallTextDelta> pieces)
    {
        var calls = new List<(string Id, string Name, System.Text.StringBuilder Arguments)>();
        foreach (var p in pieces)
            if (p.Id is not null)
            {
                Assert.Equal(calls.Count, p.Index);
                calls.Add((p.Id, p.Name!, new(p.Arguments)));
            }
            else
            {
                Assert.Null(p.Name);
                calls[p.Index].Arguments.Append(p.Arguments);
            }
        return [.. calls.Select(c => $"{c.Id} {c.Name} {c.Arguments}")];
    }

    [Theory]
    [MemberData(nameof(Replies))]
    public void Streamed_call_pieces_add_up_to_the_parsed_calls_character_by_character(ToolCallFormat format,
        string reply, string content, string[] calls)
    {
        int ids = 0;
        var (text, pieces, found) = Stream(new ToolCallSplitter(format, newId: () => $"call_{ids++}"),
            reply.Select(c => c.ToString()));
        Assert.Equal(content, text);
        Assert.Equal(calls, found.Select(c => $"{c.Name} {c.Arguments}"));
        Assert.Equal(found.Select(c => $"{c.Id} {c.Name} {c.Arguments}"), Accumulated(pieces));
        Assert.Equal(found.Select((_, i) => $"call_{i}"), found.Select(c => c.Id));
    }

    [Fact]
    public void A_long_call_streams_its_arguments_token_by_token_as_the_model_writes_them()
    {
        // Qwen2.5 writing a long call, decoded token by token as the conversation grain sees it
        var tokenizer = TestVocab.Load(DemoVocabulary.ByteLevelBpe(2048));
        const string arguments = "{\"query\": \"the tallest mountains of Europe, Asia and Africa\", " +
            "\"limit\": 10, \"filters\": {\"lang\": [\"en\", \"de\"], \"safe\": true}}";
        string reply = $"Searching.\n<tool_call>\n{{\"name\": \"web_search\", \"arguments\": {arguments}}}\n" +
            "</tool_call>";
        var decoder = new ReplyDecoder(tokenizer, []);
        var splitter = new ToolCallSplitter(ToolCallFormat.Hermes);
        var pushes = new List<List<ToolCallTextDelta>>();
        foreach (int token in tokenizer.Encode(reply, addSpecial: false))
            pushes.Add([.. splitter.Push(decoder.Push(token)).Calls]);
        var (_, calls, completing) = splitter.Finish();
        Assert.Empty(completing);

        var call = Assert.Single(calls);
        Assert.Equal(arguments, call.Arguments);
        var pieces = pushes.SelectMany(p => p).ToList();
        var header = pieces[0];
        Assert.Equal((0, call.Id, "web_search"), (header.Index, header.Id, header.Name));
        Assert.StartsWith("call_", call.Id);
        // the arguments come in many pieces, each with the push of the token that wrote it, and end with the object
        Assert.True(pieces.Count(p => p.Arguments.Length > 0) > 10, $"{pieces.Count} pieces");
        Assert.All(pieces.Skip(1), p => Assert.Equal((0, null, null), (p.Index, p.Id, p.Name)));
        Assert.Equal(arguments, string.Concat(pieces.Select(p => p.Arguments)));
        Assert.True(pushes.FindLastIndex(p => p.Count > 0) < pushes.Count - 2, "nothing after the object's end");
    }

    [Fact]
    public void Parallel_calls_stream_one_after_the_other_under_indices_0_and_1()
    {
        string reply = "{\"tool_calls\":[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}," +
            "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":{\"tz\":\"CET\"}}}]}";
        var splitter = new ToolCallSplitter(ToolCallFormat.Generic);
        var (_, pieces, calls) = Stream(splitter, reply.Chunk(4).Select(c => new string(c)));
        Assert.Equal([0, 1], pieces.Where(p => p.Id is not null).Select(p => p.Index));
        Assert.Equal(pieces.Select(p => p.Index).Order(), pieces.Select(p => p.Index));
        Assert.Equal(2, calls.Select(c => c.Id).Distinct().Count());
        Assert.Equal(calls.Select(c => $"{c.Id} {c.Name} {c.Arguments}"), Accumulated(pieces));
    }

    [Fact]
    public void Arguments_written_before_the_name_come_whole_when_the_call_ends()
    {
        string reply = "{\"parameters\": {\"x\": 1, \"y\": [1, 2, 3]}, \"name\": \"plot\"}";
        var splitter = new ToolCallSplitter(ToolCallFormat.Llama3);
        var before = reply[..^1].Select(c => splitter.Push(c.ToString()).Calls).SelectMany(p => p).ToList();
        Assert.Empty(before);
        var piece = Assert.Single(splitter.Push("}").Calls);
        Assert.Equal(("plot", "{\"x\": 1, \"y\": [1, 2, 3]}"), (piece.Name, piece.Arguments));
        Assert.Empty(splitter.Finish().CallDeltas);
    }

    [Fact]
    public void A_json_answer_with_a_name_field_streams_no_call()
    {
        var (text, pieces, calls) = Stream(new ToolCallSplitter(ToolCallFormat.Generic),
            "{\"name\": \"Ada\", \"born\": {\"year\": 1815}}".Select(c => c.ToString()));
        Assert.Empty(pieces);
        Assert.Empty(calls);
        Assert.Equal("{\"name\": \"Ada\", \"born\": {\"year\": 1815}}", text);
    }

    /// <summary>A SentencePiece vocabulary in which Mistral's markers are control tokens, as in the GGUF files of
    /// Mistral's v11 tokenizers.</summary>
    static Tokenizer MistralVocabulary()
    {
        var spec = DemoVocabulary.SentencePiece(2048, ChatTemplates.MistralV3);
        var tokens = (string[])spec.Tokens.Clone();
        var types = (int[])spec.TokenTypes.Clone();
        (tokens[^2], types[^2]) = ("[TOOL_CALLS]", (int)TokenType.Control);
        (tokens[^1], types[^1]) = ("[ARGS]", (int)TokenType.Control);
        return TestVocab.Load(spec with { Tokens = tokens, TokenTypes = types });
    }

    [Fact]
    public void Mistral_calls_written_with_control_token_markers_are_found_in_the_streamed_reply()
    {
        var tokenizer = MistralVocabulary();
        var markers = ToolCallParser.HiddenMarkers(ToolCallFormat.Mistral, tokenizer);
        Assert.Equal(["[ARGS]", "[TOOL_CALLS]"], markers.Values.Order(StringComparer.Ordinal));
        int[] reply = tokenizer.Encode("Let me check.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}" +
            "[TOOL_CALLS]get_time[ARGS]{}", addSpecial: false, parseSpecial: true);
        Assert.Equal(4, reply.Count(markers.ContainsKey));

        // the text the reply decoder gives the client hides control tokens: by itself it holds no call
        var decoder = new ReplyDecoder(tokenizer, []);
        var splitter = new ToolCallSplitter(ToolCallFormat.Mistral, markers);
        var shown = new System.Text.StringBuilder();
        var seen = new System.Text.StringBuilder();
        var pieces = new List<ToolCallTextDelta>();
        foreach (int token in reply)
        {
            string text = decoder.Push(token);
            seen.Append(text);
            var (show, called) = splitter.Push(text, [token]);
            shown.Append(show);
            pieces.AddRange(called);
        }
        var (rest, calls, completing) = splitter.Finish();
        Assert.Empty(completing);
        Assert.Equal(calls.Select(c => $"{c.Id} {c.Name} {c.Arguments}"), Accumulated(pieces));
        Assert.DoesNotContain("[ARGS]", seen.ToString());
        Assert.Empty(ToolCallParser.Parse(ToolCallFormat.Mistral, seen.ToString()).Calls);

        // what the client sees is the text before the first call (SentencePiece gives it its space prefix)
        Assert.Equal(" Let me check.", shown + rest);
        Assert.Equal(["get_weather {\"city\": \"Paris\"}", "get_time {}"],
            calls.Select(c => $"{c.Name} {c.Arguments}"));
    }

    [Fact]
    public void Markers_that_are_ordinary_text_are_not_added_again()
    {
        // the demo vocabulary spells [TOOL_CALLS] with normal pieces, which the reply's text shows
        var tokenizer = TestVocab.Load(DemoVocabulary.SentencePiece(2048, ChatTemplates.MistralV3));
        Assert.Empty(ToolCallParser.HiddenMarkers(ToolCallFormat.Mistral, tokenizer));
    }

    [Fact]
    public void Templates_are_detected_by_how_they_write_calls()
    {
        string root = Path.Combine(AppContext.BaseDirectory, "Chat", "Templates");
        ToolCallFormat Of(string family) =>
            ToolCallParser.Detect(File.ReadAllText(Path.Combine(root, family + ".jinja")));
        Assert.Equal(ToolCallFormat.Hermes, Of("qwen2.5"));
        Assert.Equal(ToolCallFormat.Llama3, Of("llama3.1"));
        Assert.Equal(ToolCallFormat.Mistral, Of("mistral-nemo"));
        Assert.Equal(ToolCallFormat.Generic, Of("tinyllama"));
        Assert.Equal(ToolCallFormat.Generic, ToolCallParser.Detect(null));
    }

    [Fact]
    public void A_template_without_tools_gets_them_in_the_system_message_and_calls_as_json()
    {
        var template = ChatTemplate.Resolve(null, "chatml", "<s>", "</s>", tokenizerAddsBos: false);
        string text = template.Render(
        [
            new ChatTurn("user", "Weather?"),
            new ChatTurn("assistant", "", [new ToolCallText("get_weather", "{\"city\":\"Oslo\"}", "call_1")]),
            new ChatTurn("tool", "3 C", ToolCallId: "call_1"),
        ], """[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]""", true);
        Assert.Equal(
            "<|im_start|>system\nYou can call these tools:\n" +
            "{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}\n" +
            "To call tools, answer with only this JSON and nothing else: " +
            "{\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<its arguments>}}]}<|im_end|>\n" +
            "<|im_start|>user\nWeather?<|im_end|>\n" +
            "<|im_start|>assistant\n{\"tool_calls\":[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}]}" +
            "<|im_end|>\n<|im_start|>user\n{\"tool_response\":{\"tool_call_id\":\"call_1\",\"content\":\"3 C\"}}" +
            "<|im_end|>\n<|im_start|>assistant\n", text);
    }
}
