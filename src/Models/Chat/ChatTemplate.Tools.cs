using System.Text;
using System.Text.Json;
using Weft.Models.Chat.Jinja;
using Weft.Models.Chat.ToolCalls;

namespace Weft.Models.Chat;

/// <summary>A chat message with tool calls: an assistant message may carry the calls it made, a "tool" message
/// answers the call <see cref="ToolCallId"/>.</summary>
public sealed record ChatTurn(string Role, string Content, IReadOnlyList<ToolCallText>? ToolCalls = null,
    string? ToolCallId = null);

public sealed partial class ChatTemplate
{
    /// <summary>How this template's model writes tool calls: the family of a template that takes the tools variable,
    /// else the generic JSON format described to the model in a system message.</summary>
    public ToolCallFormat ToolFormat => ToolCallParser.Detect(jinja?.Source);

    /// <summary>
    /// Renders a conversation with tools (OpenAI's "tools" array as JSON, or null) and tool messages. A template that
    /// takes tools gets them, and the messages, as transformers passes them (tool_calls with arguments as objects,
    /// tool messages with tool_call_id); any other template gets the generic format: the tools described in the system
    /// message, calls as JSON in the assistant's text, results as user messages.
    /// </summary>
    /// <param name="now">What strftime_now formats; null for the local time, as transformers.</param>
    public string Render(IReadOnlyList<ChatTurn> messages, string? toolsJson, bool addGenerationPrompt,
        DateTime? now = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (jinja is null || ToolFormat == ToolCallFormat.Generic)
            return Render(Generic(messages, toolsJson), addGenerationPrompt);
        if (messages.Count == 0) throw new ArgumentException("The conversation has no messages.", nameof(messages));
        for (int i = 0; i < messages.Count; i++)
            if (messages[i].Role is not ("system" or "user" or "assistant" or "tool"))
                throw new ArgumentException($"Message {i} has role \"{messages[i].Role}\"; only \"system\", " +
                    "\"user\", \"assistant\" and \"tool\" are supported.", nameof(messages));
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(Message).ToList(),
            ["tools"] = toolsJson is null ? null : FromJson(toolsJson),
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bos,
            ["eos_token"] = eos,
        };
        string text = Run(jinja, variables, now ?? DateTime.Now, nameof(messages));
        return stripLeadingBos && text.StartsWith(bos, StringComparison.Ordinal) ? text[bos.Length..] : text;
    }

    static object? Message(ChatTurn m)
    {
        var d = new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content };
        if (m.ToolCalls is { Count: > 0 } calls)
            // vLLM and transformers hand templates the arguments as a mapping: the templates write them with tojson
            d["tool_calls"] = calls.Select(c => (object?)new Dictionary<string, object?>
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new Dictionary<string, object?>
                {
                    ["name"] = c.Name,
                    ["arguments"] = FromJson(c.Arguments) ?? c.Arguments,
                },
            }).ToList();
        if (m.ToolCallId is not null) d["tool_call_id"] = m.ToolCallId;
        return d;
    }

    static object? FromJson(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return JinjaTemplate.FromJson(doc.RootElement);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The conversation in plain messages, as llama.cpp's generic tool format writes it for templates
    /// without tool support.</summary>
    static List<(string Role, string Content)> Generic(IReadOnlyList<ChatTurn> messages, string? toolsJson)
    {
        var plain = new List<(string Role, string Content)>();
        foreach (var m in messages)
        {
            if (m.Role == "tool")
            {
                string result = $"{{\"tool_response\":{{\"tool_call_id\":{JsonSerializer.Serialize(m.ToolCallId)}," +
                    $"\"content\":{JsonSerializer.Serialize(m.Content)}}}}}";
                // the results of one round of calls answer as one user turn, so turns still alternate
                if (plain.Count > 0 && plain[^1].Role == "user" && plain[^1].Content.StartsWith("{\"tool_response\""))
                    plain[^1] = ("user", plain[^1].Content + "\n" + result);
                else plain.Add(("user", result));
                continue;
            }
            if (m.ToolCalls is { Count: > 0 } calls)
            {
                string json = "{\"tool_calls\":[" + string.Join(',', calls.Select(c =>
                    $"{{\"name\":{JsonSerializer.Serialize(c.Name)},\"arguments\":{c.Arguments}}}")) + "]}";
                plain.Add((m.Role, m.Content.Length > 0 ? m.Content + "\n" + json : json));
                continue;
            }
            plain.Add((m.Role, m.Content));
        }
        if (toolsJson is null) return plain;
        string preamble = ToolPreamble(toolsJson);
        if (plain.Count > 0 && plain[0].Role == "system") plain[0] = ("system", plain[0].Content + "\n\n" + preamble);
        else plain.Insert(0, ("system", preamble));
        return plain;
    }

    static string ToolPreamble(string toolsJson)
    {
        var sb = new StringBuilder("You can call these tools:\n");
        using var doc = JsonDocument.Parse(toolsJson);
        foreach (var tool in doc.RootElement.EnumerateArray())
            sb.Append(tool.TryGetProperty("function", out var f) ? f.GetRawText() : tool.GetRawText()).Append('\n');
        sb.Append("To call tools, answer with only this JSON and nothing else: ")
            .Append("{\"tool_calls\":[{\"name\":\"<tool name>\",\"arguments\":{<its arguments>}}]}");
        return sb.ToString();
    }
}
