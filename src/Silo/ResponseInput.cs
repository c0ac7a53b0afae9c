using System.Text.Json;
using System.Text.Json.Nodes;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// The request fields of POST /v1/responses that become chat: "input" (a string, or messages, function calls and
/// their outputs) as chat messages, and the flat function tools, "tool_choice" and "text.format" as the chat
/// endpoint's tools and the schema the sampler enforces. What is not supported is refused naming its field.
/// </summary>
static class ResponseInput
{
    /// <summary>A function_call item joins the assistant message before it (the calls of one reply are one message
    /// in every chat template); a function_call_output is a tool message.</summary>
    public static List<ChatMessage> Messages(JsonElement input)
    {
        if (input.ValueKind == JsonValueKind.String)
            return [new ChatMessage("user", RequestBody.AsString(input, "input"))];
        if (input.ValueKind != JsonValueKind.Array)
            throw ApiException.WrongType("input", "a string or an array of items");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var item in input.EnumerateArray())
        {
            string at = $"input[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw ApiException.WrongType(at, "an object");
            string type = item.TryGetProperty("type", out var t) ? RequestBody.AsString(t, $"{at}.type") : "message";
            switch (type)
            {
                case "message":
                    messages.Add(Message(item, at));
                    break;
                case "function_call":
                    var call = new ToolCall(Text(item, "call_id", at), Text(item, "name", at),
                        Text(item, "arguments", at));
                    if (messages is [.., { Role: "assistant" } last])
                        messages[^1] = last with { ToolCalls = new List<ToolCall>([.. last.ToolCalls ?? [], call]) };
                    else messages.Add(new ChatMessage("assistant", "", new List<ToolCall> { call }));
                    break;
                case "function_call_output":
                    string output = item.TryGetProperty("output", out var o) && o.ValueKind == JsonValueKind.Array
                        ? Parts(o, $"{at}.output") : Text(item, "output", at);
                    messages.Add(new ChatMessage("tool", output, ToolCallId: Text(item, "call_id", at)));
                    break;
                default:
                    throw ApiException.Unsupported($"{at}.type", $"input items of type '{type}' are not supported; " +
                        "message, function_call and function_call_output are");
            }
        }
        if (messages.Count == 0) throw ApiException.BadRequest("'input' must not be empty", "input");
        return messages;
    }

    static ChatMessage Message(JsonElement m, string at)
    {
        string role = Text(m, "role", at) switch
        {
            "system" or "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            var other => throw ApiException.BadRequest(
                $"'{at}.role' is '{other}'; the roles are user, assistant, system and developer", $"{at}.role"),
        };
        if (!m.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest($"'{at}.content' is required", $"{at}.content",
                "missing_required_parameter");
        return new ChatMessage(role, c.ValueKind switch
        {
            JsonValueKind.String => RequestBody.AsString(c, $"{at}.content"),
            JsonValueKind.Array => Parts(c, $"{at}.content"),
            _ => throw ApiException.WrongType($"{at}.content", "a string or an array of text parts"),
        });
    }

    /// <summary>Text parts joined by newlines, as the chat endpoint joins them; images and files are refused.</summary>
    static string Parts(JsonElement parts, string path) => string.Join('\n', parts.EnumerateArray().Select((p, i) =>
    {
        string at = $"{path}[{i}]";
        if (p.ValueKind != JsonValueKind.Object) throw ApiException.WrongType(at, "an object with 'type' and 'text'");
        string type = p.TryGetProperty("type", out var t) ? RequestBody.AsString(t, $"{at}.type") : "";
        if (type is not ("input_text" or "output_text"))
            throw ApiException.Unsupported($"{at}.type", $"content parts of type '{type}' are not supported; only " +
                "input_text and output_text");
        return Text(p, "text", at);
    }));

    static string Text(JsonElement item, string name, string at) =>
        item.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null
            ? RequestBody.AsString(v, $"{at}.{name}")
            : throw ApiException.BadRequest($"'{at}.{name}' is required", $"{at}.{name}",
                "missing_required_parameter");

    /// <summary>The tools in the chat endpoint's shape for the template (null for none, or for tool_choice none) and
    /// the schema the reply must follow (a forced call's or text.format's; null for none).</summary>
    public static (string? ToolsJson, string? Schema, LazyToolCalls? Lazy) Tools(RequestBody b)
    {
        var (tools, functions) = ChatShaped(b);
        string? format = Format(b);
        string? forced = null;
        switch (b.Field("tool_choice"))
        {
            case null:
                break;
            case { ValueKind: JsonValueKind.String } s:
                switch (RequestBody.AsString(s, "tool_choice"))
                {
                    case "none":
                        return (null, format, null);
                    case "auto":
                        break;
                    case "required":
                        forced = "";
                        break;
                    case var mode:
                        throw ApiException.BadRequest($"'tool_choice' is '{mode}'; it is none, auto, required or " +
                            "{\"type\":\"function\",\"name\":...}", "tool_choice");
                }
                break;
            case { ValueKind: JsonValueKind.Object } o:
                string type = o.TryGetProperty("type", out var t) ? RequestBody.AsString(t, "tool_choice.type") : "";
                if (type != "function")
                    throw ApiException.Unsupported("tool_choice.type",
                        $"tool_choice of type '{type}' is not supported; only function");
                forced = Text(o, "name", "tool_choice");
                if (!tools.Any(tool => (string)tool!["function"]!["name"]! == forced))
                    throw ApiException.BadRequest($"'tool_choice' names '{forced}', which is not among 'tools'",
                        "tool_choice");
                break;
            default:
                throw ApiException.WrongType("tool_choice", "a string or an object");
        }
        if (tools.Count == 0)
            return forced is null ? (null, format, null)
                : throw ApiException.BadRequest("'tool_choice' asks for a call but 'tools' is empty", "tool_choice");
        return ChatTools.Shape(functions, tools.ToJsonString(), forced, format, "text.format",
            b.Bool("parallel_tool_calls", true));
    }

    /// <summary>The Responses API's flat function tools ({type, name, description, parameters, strict}) as the chat
    /// endpoint's ({type, function: {name, description, parameters}}), which the chat templates render, and as the
    /// functions whose schemas and strict flags are checked.</summary>
    static (JsonArray Tools, List<OfferedFunction> Functions) ChatShaped(RequestBody b)
    {
        var list = new JsonArray();
        var functions = new List<OfferedFunction>();
        foreach (var (at, tool) in ChatTools.FunctionTools(b))
        {
            var function = new JsonObject { ["name"] = Text(tool, "name", at) };
            if (tool.TryGetProperty("description", out var d) && d.ValueKind != JsonValueKind.Null)
                function["description"] = RequestBody.AsString(d, $"{at}.description");
            functions.Add(ChatTools.Function((string)function["name"]!, tool, at));
            if (tool.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null)
                function["parameters"] = JsonNode.Parse(p.GetRawText());
            list.Add(new JsonObject { ["type"] = "function", ["function"] = function });
        }
        return (list, functions);
    }

    /// <summary>text.format: text (null), json_object ("{}": any object) or json_schema's schema.</summary>
    static string? Format(RequestBody b)
    {
        if (b.Field("text") is not { } text) return null;
        if (text.ValueKind != JsonValueKind.Object) throw ApiException.WrongType("text", "an object");
        foreach (var p in text.EnumerateObject())
            if (p.Name != "format" && p.Value.ValueKind != JsonValueKind.Null)
                throw ApiException.Unsupported($"text.{p.Name}", $"'text.{p.Name}' is not supported by this server");
        if (!text.TryGetProperty("format", out var format) || format.ValueKind == JsonValueKind.Null) return null;
        if (format.ValueKind != JsonValueKind.Object) throw ApiException.WrongType("text.format", "an object");
        string type = Text(format, "type", "text.format");
        switch (type)
        {
            case "text":
                return null;
            case "json_object":
                return "{}";
            case "json_schema":
                if (!format.TryGetProperty("schema", out var schema) || schema.ValueKind == JsonValueKind.Null)
                    throw ApiException.BadRequest("'text.format.schema' is required", "text.format.schema",
                        "missing_required_parameter");
                ChatTools.Check(schema, "text.format.schema");
                return schema.GetRawText();
            default:
                throw ApiException.Unsupported("text.format.type",
                    $"text.format '{type}' is not supported; text, json_object or json_schema");
        }
    }
}
