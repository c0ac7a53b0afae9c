using System.Text.Json.Nodes;

namespace Weft.Abstractions;

/// <summary>
/// The JSON schema of forced tool calls (tool_choice "required" or a named function), which the sampler enforces:
/// the generic call object {"tool_calls":[{"name":...,"arguments":{...}}]}, each call's name picking its function,
/// whose parameters its arguments follow. Every tool-call parser reads it, whatever the model's own format.
/// </summary>
public static class ToolCallSchema
{
    /// <param name="toolsJson">OpenAI's "tools" array.</param>
    /// <param name="function">The one function to call, or null for any of them.</param>
    /// <param name="parallel">Whether several calls may be made (a named function is called once).</param>
    public static string For(string toolsJson, string? function, bool parallel)
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
                    ["arguments"] = f["parameters"]?.DeepClone() ?? NoParameters(),
                },
                ["required"] = new JsonArray("name", "arguments"),
                ["additionalProperties"] = false,
            });
        }
        if (calls.Count == 0)
            throw new ArgumentException($"no tool is named '{function}'", nameof(function));
        var list = new JsonObject
        {
            ["type"] = "array", ["minItems"] = 1, ["items"] = new JsonObject { ["anyOf"] = calls },
        };
        if (!parallel || function is not null) list["maxItems"] = 1;
        return new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject { ["tool_calls"] = list },
            ["required"] = new JsonArray("tool_calls"),
            ["additionalProperties"] = false,
        }.ToJsonString();
    }

    /// <summary>A function without parameters takes an empty object (a free-form one could run on
    /// forever).</summary>
    public static JsonNode NoParameters() =>
        new JsonObject { ["type"] = "object", ["properties"] = new JsonObject(), ["additionalProperties"] = false };
}
