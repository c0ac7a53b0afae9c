using System.Globalization;
using System.Text.Json;
using Weft.Models.Chat;
using Weft.Models.Chat.ToolCalls;

namespace Weft.Models.Tests.Chat.ToolCalls;

/// <summary>Conversations with tools rendered through <see cref="ChatTemplate"/> as the chat endpoint renders them,
/// against what transformers renders (the goldens of <see cref="JinjaGoldenTests"/>).</summary>
public class ToolTemplateTests
{
    static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Chat", "Templates");

    public static TheoryData<string> ToolFamilies()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Root, "*.jinja").Order(StringComparer.Ordinal))
            if (ToolCallParser.Detect(File.ReadAllText(f)) != ToolCallFormat.Generic)
                data.Add(Path.GetFileNameWithoutExtension(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(ToolFamilies))]
    public void Tool_conversations_render_as_transformers_renders_them(string family)
    {
        var spec = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "conversations.json"))).RootElement;
        var tokens = spec.GetProperty("families").GetProperty(family);
        var now = DateTime.Parse(spec.GetProperty("now").GetString()!, CultureInfo.InvariantCulture);
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "golden", family + ".json"))).RootElement;
        var template = ChatTemplate.Resolve(File.ReadAllText(Path.Combine(Root, family + ".jinja")), null,
            tokens.GetProperty("bos_token").GetString()!, tokens.GetProperty("eos_token").GetString()!,
            tokenizerAddsBos: false);
        foreach (string name in (string[])["tool-definitions", "tool-call-and-result", "tool-result-last"])
        {
            var conversation = spec.GetProperty("conversations").GetProperty(name);
            var turns = conversation.GetProperty("messages").EnumerateArray().Select(Turn).ToList();
            var expected = golden.GetProperty($"{name}|with-generation-prompt");
            string tools = conversation.GetProperty("tools").GetRawText();
            if (expected.TryGetProperty("text", out var text))
                Assert.Equal(text.GetString(), template.Render(turns, tools, addGenerationPrompt: true, now));
            else Assert.Throws<ArgumentException>(() => template.Render(turns, tools, addGenerationPrompt: true, now));
        }
    }

    static ChatTurn Turn(JsonElement m) => new(m.GetProperty("role").GetString()!,
        m.GetProperty("content").GetString()!,
        m.TryGetProperty("tool_calls", out var calls)
            ? calls.EnumerateArray().Select(c => new ToolCallText(c.GetProperty("function").GetProperty("name")
                .GetString()!, c.GetProperty("function").GetProperty("arguments").GetRawText(),
                c.GetProperty("id").GetString()!)).ToList()
            : null,
        m.TryGetProperty("tool_call_id", out var id) ? id.GetString() : null);
}
