using System.Text.Json.Nodes;

namespace Weft.Abstractions;

/// <summary>
/// The JSON schema of forced tool calls (tool_choice "required" or a named function), which the sampler enforces:
/// the generic call object {"tool_calls":[{"name":...,"arguments":{...}}]}, each call's name picking its function,
/// whose parameters its arguments follow. Every tool-call parser reads it, whatever the model's own format. Its parts
/// (one call, a list of calls) are what a call that a model starts in its own format is held to (tool_choice auto
/// with strict functions).
/// </summary>
public static class ToolCallSchema
{
    /// <param name="toolsJson">OpenAI's "tools" array.</param>
    /// <param name="function">The one function to call, or null for any of them.</param>
    /// <param name="parallel">Whether several calls may be made (a named function is called once).</param>
    public static string For(string toolsJson, string? function, bool parallel) => new JsonObject
    {
        ["type"] = "object",
        ["properties"] = new JsonObject { ["tool_calls"] = List(toolsJson, function, parallel) },
        ["required"] = new JsonArray("tool_calls"),
        ["additionalProperties"] = false,
    }.ToJsonString();

    /// <summary>One call object of any of the tools.</summary>
    /// <param name="argumentsKey">The member the arguments are written in ("parameters" in Llama 3's format).</param>
    public static string Call(string toolsJson, string argumentsKey = "arguments") =>
        new JsonObject { ["anyOf"] = Calls(toolsJson, null, argumentsKey) }.ToJsonString();

    /// <summary>A list of one call object (several when <paramref name="parallel"/>) of any of the tools.</summary>
    public static string CallList(string toolsJson, bool parallel) => List(toolsJson, null, parallel).ToJsonString();

    static JsonObject List(string toolsJson, string? function, bool parallel)
    {
        var list = new JsonObject
        {
            ["type"] = "array", ["minItems"] = 1,
            ["items"] = new JsonObject { ["anyOf"] = Calls(toolsJson, function, "arguments") },
        };
        if (!parallel || function is not null) list["maxItems"] = 1;
        return list;
    }

    static JsonArray Calls(string toolsJson, string? function, string argumentsKey)
    {
        var calls = new JsonArray();
        foreach (var tool in JsonNode.Parse(toolsJson)!.AsArray())
        {
            var f = tool!["function"]!;
            string name = (string)f["name"]!;
            if (function is not null && name != function) continue;
            calls.Add(new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["name"] = new JsonObject { ["const"] = name },
                    [argumentsKey] = f["parameters"]?.DeepClone() ?? NoParameters(),
                },
                ["required"] = new JsonArray("name", argumentsKey),
                ["additionalProperties"] = false,
            });
        }
        return calls.Count > 0 ? calls
            : throw new ArgumentException($"no tool is named '{function}'", nameof(function));
    }

    /// <summary>A function without parameters takes an empty object (a free-form one could run on
    /// forever).</summary>
    public static JsonNode NoParameters() =>
        new JsonObject { ["type"] = "object", ["properties"] = new JsonObject(), ["additionalProperties"] = false };
}
