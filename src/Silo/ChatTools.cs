using System.Text.Json;
using System.Text.Json.Nodes;
using Weft.Abstractions;
using Weft.GpuRuntime.Sampling.Json;

namespace Weft.Silo;

/// <summary>A function a request offers: its name, its parameters' schema, its "strict" flag and where it sits in the
/// request (for errors).</summary>
sealed record OfferedFunction(string Name, JsonElement Parameters, bool Strict, string At);

/// <summary>
/// The request fields that shape a chat reply beyond sampling: tools and tool_choice, response_format and logit_bias.
/// Forced tool calls (tool_choice required or a named function) and JSON replies become a JSON schema the sampler
/// enforces token by token; a schema the grammar cannot guarantee is refused here, naming its keyword. A tool the
/// model may call or not is only described to it, so its schema may use any keyword, unless it is strict: then a
/// call the reply starts is held to it (a lazy grammar).
/// </summary>
static class ChatTools
{
    /// <summary>What the request asks of the reply: the tools for the template (null for none, or for tool_choice
    /// none), the schema the reply must follow (null for none) and, in auto mode with strict functions, what a call
    /// the reply starts is held to.</summary>
    public static (string? ToolsJson, string? Schema, LazyToolCalls? Lazy) Read(RequestBody b)
    {
        var tools = Tools(b);
        string? format = ResponseSchema(b);
        var choice = b.Field("tool_choice");
        if (tools.Count == 0)
        {
            if (choice is { ValueKind: JsonValueKind.Object } || choice is { ValueKind: JsonValueKind.String } c
                && c.GetString() is not ("none" or "auto"))
                throw ApiException.BadRequest("'tool_choice' names a tool choice but 'tools' is empty", "tool_choice");
            return (null, format, null);
        }
        string? forced = null;
        switch (choice)
        {
            case null:
                break;
            case { ValueKind: JsonValueKind.String } s:
                string mode = RequestBody.AsString(s, "tool_choice");
                if (mode == "none") return (null, format, null);
                if (mode == "required") forced = "";
                else if (mode != "auto")
                    throw ApiException.BadRequest($"'tool_choice' is '{mode}'; it is none, auto, required or " +
                        "{\"type\":\"function\",\"function\":{\"name\":...}}", "tool_choice");
                break;
            case { ValueKind: JsonValueKind.Object } o:
                forced = o.TryGetProperty("function", out var f) && f.ValueKind == JsonValueKind.Object
                    && f.TryGetProperty("name", out var n) ? RequestBody.AsString(n, "tool_choice.function.name")
                    : throw ApiException.BadRequest("'tool_choice.function.name' is required",
                        "tool_choice.function.name", "missing_required_parameter");
                if (!tools.Any(t => t.Name == forced))
                    throw ApiException.BadRequest($"'tool_choice' names '{forced}', which is not among 'tools'",
                        "tool_choice");
                break;
            default:
                throw ApiException.WrongType("tool_choice", "a string or an object");
        }
        return Shape(tools, b.Field("tools")!.Value.GetRawText(), forced, format, "response_format",
            b.Bool("parallel_tool_calls", true));
    }

    /// <summary>
    /// What offered tools ask of the reply once tool_choice is read, for the chat and the Responses endpoints: the
    /// forced call's schema, or in auto mode the strict functions' lazy grammar beside the structured output format
    /// (<paramref name="formatParam"/>, refused with either).
    /// </summary>
    /// <param name="forced">null for auto, "" for required, else the named function.</param>
    public static (string ToolsJson, string? Schema, LazyToolCalls? Lazy) Shape(IReadOnlyList<OfferedFunction> tools,
        string toolsJson, string? forced, string? format, string formatParam, bool parallel)
    {
        Enforceable(tools, forced);
        if (forced is null) return (toolsJson, format, Lazy(tools, parallel, format, formatParam));
        if (format is not null)
            throw ApiException.BadRequest($"a forced tool call (tool_choice) and a {formatParam} cannot both shape " +
                "the reply", formatParam);
        return (toolsJson, ToolCallSchema.For(toolsJson, forced.Length == 0 ? null : forced, parallel), null);
    }

    /// <summary>
    /// In auto mode, the strict functions' guarantee: a call the reply starts is held to their schemas from its
    /// marker on (a lazy grammar), and to any object for the other functions' arguments; null when no function is
    /// strict. A response_format beside it would ask for a second grammar: refused, naming
    /// <paramref name="formatParam"/>.
    /// </summary>
    static LazyToolCalls? Lazy(IReadOnlyList<OfferedFunction> tools, bool parallel, string? format,
        string formatParam)
    {
        if (!tools.Any(t => t.Strict)) return null;
        if (format is not null)
            throw ApiException.BadRequest("a strict function with tool_choice 'auto' and a structured output format " +
                "cannot both shape the reply", formatParam);
        var bound = new JsonArray();
        foreach (var t in tools)
            bound.Add(new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = t.Name,
                    ["parameters"] = t.Strict ? JsonNode.Parse(t.Parameters.GetRawText()) : AnyObject(),
                },
            });
        return new LazyToolCalls(bound.ToJsonString(), parallel);
    }

    static JsonObject AnyObject() => new() { ["type"] = "object" };

    /// <summary>
    /// Checks that what will be enforced can be: the schemas of the functions a forced call may pick (all of them for
    /// "required", the named one otherwise), and in auto mode those of the strict functions, whose calls a lazy
    /// grammar holds once the reply starts one.
    /// </summary>
    /// <param name="forced">null for auto, "" for required, else the named function.</param>
    static void Enforceable(IEnumerable<OfferedFunction> tools, string? forced)
    {
        foreach (var t in tools)
            if (forced is null ? t.Strict : forced.Length == 0 || forced == t.Name)
                Check(t.Parameters, $"{t.At}.parameters");
    }

    /// <summary>A function's "parameters": any JSON schema object (null or absent: none), and its "strict"
    /// flag.</summary>
    public static OfferedFunction Function(string name, JsonElement function, string at)
    {
        var parameters = NoParameters;
        if (function.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null)
            parameters = p.ValueKind == JsonValueKind.Object ? p
                : throw ApiException.WrongType($"{at}.parameters", "a JSON schema object");
        bool strict = function.TryGetProperty("strict", out var s) && s.ValueKind != JsonValueKind.Null
            && RequestBody.AsBool(s, $"{at}.strict");
        return new OfferedFunction(name, parameters, strict, at);
    }

    static readonly JsonElement NoParameters = JsonDocument.Parse(ToolCallSchema.NoParameters().ToJsonString())
        .RootElement;

    /// <summary>The request's <c>tools</c>, each checked to be an object of type function, with its path for errors;
    /// the chat and Responses endpoints differ only in where the function's fields sit.</summary>
    public static List<(string At, JsonElement Tool)> FunctionTools(RequestBody b)
    {
        if (b.Field("tools") is not { } tools) return [];
        if (tools.ValueKind != JsonValueKind.Array) throw ApiException.WrongType("tools", "an array of tools");
        var list = new List<(string, JsonElement)>();
        int i = 0;
        foreach (var t in tools.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            if (t.ValueKind != JsonValueKind.Object) throw ApiException.WrongType(at, "an object");
            string type = t.TryGetProperty("type", out var ty) ? RequestBody.AsString(ty, $"{at}.type") : "";
            if (type != "function")
                throw ApiException.Unsupported($"{at}.type",
                    $"tools of type '{type}' are not supported; only function");
            list.Add((at, t));
        }
        return list;
    }

    static List<OfferedFunction> Tools(RequestBody b)
    {
        var list = new List<OfferedFunction>();
        foreach (var (at, t) in FunctionTools(b))
        {
            if (!t.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'{at}.function' is required", $"{at}.function",
                    "missing_required_parameter");
            string name = f.TryGetProperty("name", out var n) ? RequestBody.AsString(n, $"{at}.function.name")
                : throw ApiException.BadRequest($"'{at}.function.name' is required", $"{at}.function.name",
                    "missing_required_parameter");
            list.Add(Function(name, f, $"{at}.function"));
        }
        return list;
    }

    /// <summary>response_format: text (null), json_object ("{}": any object) or json_schema's schema.</summary>
    static string? ResponseSchema(RequestBody b)
    {
        if (b.Field("response_format") is not { } format) return null;
        if (format.ValueKind != JsonValueKind.Object) throw ApiException.WrongType("response_format", "an object");
        string type = format.TryGetProperty("type", out var t) ? RequestBody.AsString(t, "response_format.type") : "";
        switch (type)
        {
            case "text":
                return null;
            case "json_object":
                return "{}";
            case "json_schema":
                if (!format.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object
                    || !js.TryGetProperty("schema", out var schema))
                    throw ApiException.BadRequest("'response_format.json_schema.schema' is required",
                        "response_format.json_schema.schema", "missing_required_parameter");
                Check(schema, "response_format.json_schema.schema");
                return schema.GetRawText();
            default:
                throw ApiException.Unsupported("response_format.type",
                    $"response_format '{type}' is not supported; text, json_object or json_schema");
        }
    }

    public static void Check(JsonElement schema, string param)
    {
        try
        {
            JsonGrammar.FromSchema(schema);
        }
        catch (SchemaException e)
        {
            throw ApiException.Unsupported(param, e.Message);
        }
    }

    /// <summary>logit_bias: token ids (as JSON object keys) to biases in [-100, 100].</summary>
    public static IReadOnlyDictionary<int, float>? LogitBias(RequestBody b, int vocabSize)
    {
        if (b.Field("logit_bias") is not { } bias) return null;
        if (bias.ValueKind != JsonValueKind.Object)
            throw ApiException.WrongType("logit_bias", "an object of token ids to biases");
        var map = new Dictionary<int, float>();
        foreach (var p in bias.EnumerateObject())
        {
            if (!int.TryParse(p.Name, out int id) || (uint)id >= (uint)vocabSize)
                throw ApiException.BadRequest($"'logit_bias' key '{p.Name}' is not a token id of this vocabulary " +
                    $"(0..{vocabSize - 1})", "logit_bias");
            if (p.Value.ValueKind != JsonValueKind.Number || p.Value.GetDouble() is < -100 or > 100)
                throw ApiException.BadRequest("'logit_bias' values are numbers from -100 to 100", "logit_bias");
            map[id] = (float)p.Value.GetDouble();
        }
        return map.Count == 0 ? null : map;
    }

    /// <summary>An assistant message's tool_calls (arguments as JSON text, as OpenAI sends them).</summary>
    public static IReadOnlyList<ToolCall>? Calls(JsonElement m, string path)
    {
        if (!m.TryGetProperty("tool_calls", out var calls) || calls.ValueKind == JsonValueKind.Null) return null;
        if (calls.ValueKind != JsonValueKind.Array) throw ApiException.WrongType($"{path}.tool_calls", "an array");
        var list = new List<ToolCall>();
        int i = 0;
        foreach (var c in calls.EnumerateArray())
        {
            string at = $"{path}.tool_calls[{i++}]";
            if (c.ValueKind != JsonValueKind.Object || !c.TryGetProperty("function", out var f)
                || f.ValueKind != JsonValueKind.Object || !f.TryGetProperty("name", out var name))
                throw ApiException.BadRequest($"'{at}' needs a function with a name", at);
            string arguments = f.TryGetProperty("arguments", out var a) ? RequestBody.AsString(a, $"{at}.arguments")
                : "{}";
            string id = c.TryGetProperty("id", out var idElement) ? RequestBody.AsString(idElement, $"{at}.id") : "";
            list.Add(new ToolCall(id, RequestBody.AsString(name, $"{at}.function.name"), arguments));
        }
        return list.Count == 0 ? null : list;
    }
}
