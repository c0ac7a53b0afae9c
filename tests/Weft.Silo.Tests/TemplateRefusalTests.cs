using System.Net;
using System.Text.Json.Nodes;

namespace Weft.Silo.Tests;

/// <summary>Serves Gemma 2's own chat template (from its tokenizer_config.json), which refuses system messages and
/// roles that do not alternate with raise_exception.</summary>
public sealed class GemmaTemplateSilo : SiloFixture
{
    protected override string[] Options =>
        ["--chat-template", Path.Combine(AppContext.BaseDirectory, "Templates", "gemma2.jinja")];
}

public sealed class TemplateRefusalTests(GemmaTemplateSilo silo) : IClassFixture<GemmaTemplateSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static string Chat(bool stream, params (string Role, string Content)[] messages) => new JsonObject
    {
        ["messages"] = new JsonArray([.. messages.Select(m =>
            (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]),
        ["max_tokens"] = 2,
        ["stream"] = stream,
    }.ToJsonString();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_conversation_the_template_rejects_is_a_400_naming_the_templates_reason(bool stream)
    {
        var cases = new[]
        {
            (Chat(stream, ("system", "Be brief."), ("user", "Hi")), "System role not supported"),
            (Chat(stream, ("user", "Hi"), ("user", "Hello?")),
                "Conversation roles must alternate user/assistant/user/assistant/..."),
        };
        foreach (var (body, reason) in cases)
        {
            var (status, answer) = await silo.Http.PostAsync("/v1/chat/completions", body, Ct);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            var error = answer["error"]!;
            Assert.Equal("invalid_request_error", (string?)error["type"]);
            Assert.Equal($"The model's chat template rejects this conversation: {reason}", (string?)error["message"]);
            Assert.Equal("messages", (string?)error["param"]);
            Assert.Equal($"The model's chat template rejects this conversation: {reason}", (string?)error["message"]);
        }
        // the same template renders a conversation it accepts
        var (ok, reply) = await silo.Http.PostAsync("/v1/chat/completions",
            Chat(false, ("user", "Hi"), ("assistant", "Hello."), ("user", "Bye")), Ct);
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.Equal(2, (int)reply["usage"]!["completion_tokens"]!);
    }
}
