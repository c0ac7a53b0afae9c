using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Weft.Abstractions;
using Weft.Grains;

namespace Weft.Silo.Tests;

/// <summary>Small body and token limits, and conversations that expire after 2 s without a turn.</summary>
public sealed class HardenedSilo : SiloFixture
{
    protected override string[] Options => ["--max-request-bytes", "65536", "--max-tokenize-bytes", "4096",
        "--max-tokenize-tokens", "64", "--conversation-ttl", "2"];
}

public sealed class HardeningTests(HardenedSilo silo) : IClassFixture<HardenedSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static string UserMessage(string content) =>
        new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = 2,
        }.ToJsonString();

    static async Task<(HttpStatusCode Status, JsonNode Body)> SendAsync(HttpClient http, string path,
        HttpContent content)
    {
        using var response = await http.PostAsync(path, content, Ct);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!);
    }

    [Fact]
    public async Task Bodies_over_their_routes_limit_are_refused_with_413()
    {
        var chat = await SendAsync(silo.Http, "/v1/chat/completions", Http.Json(UserMessage(new string('a', 70_000))));
        Turns.AssertError(HttpStatusCode.RequestEntityTooLarge, "request_too_large", chat);
        Assert.Equal("invalid_request_error", (string?)chat.Body["error"]!["type"]);
        // what fits the generation routes is too much for /tokenize
        var tokenize = await SendAsync(silo.Http, "/tokenize",
            Http.Json($$"""{"prompt":"{{new string('a', 5000)}}"}"""));
        Turns.AssertError(HttpStatusCode.RequestEntityTooLarge, "request_too_large", tokenize);
        // and within its bytes, /tokenize returns at most its tokens
        var tokens = await SendAsync(silo.Http, "/tokenize",
            Http.Json($$"""{"prompt":"{{string.Concat(Enumerable.Repeat("sea ", 400))}}"}"""));
        Turns.AssertError(HttpStatusCode.BadRequest, "too_many_tokens", tokens);
        var fits = await SendAsync(silo.Http, "/tokenize", Http.Json("""{"prompt":"the sea"}"""));
        Assert.Equal(HttpStatusCode.OK, fits.Status);
    }

    [Fact]
    public async Task A_message_longer_than_the_context_is_refused_before_it_is_tokenized()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions",
            UserMessage(string.Concat(Enumerable.Repeat("word ", 12_000))), Ct);
        Turns.AssertError(HttpStatusCode.BadRequest, "context_length_exceeded", (status, body));
        // the refusal of the length check before tokenizing (the scheduler's, after, names no field)
        Assert.Equal("messages", (string?)body["error"]!["param"]);
        Assert.Contains("at least", (string?)body["error"]!["message"]);
    }

    [Fact]
    public async Task Invalid_utf8_or_a_lone_surrogate_in_a_request_is_a_400_not_a_500()
    {
        static ByteArrayContent Raw(params byte[][] parts)
        {
            var content = new ByteArrayContent([.. parts.SelectMany(p => p)]);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            return content;
        }
        static byte[] Text(string s) => Encoding.UTF8.GetBytes(s);
        byte[] notUtf8 = [0xC3, 0x28, 0xFF];
        var requests = new (string Path, HttpContent Body)[]
        {
            ("/v1/chat/completions", Raw(Text("""{"messages":[{"role":"user","content":"bad """), notUtf8,
                Text("\"}],\"max_tokens\":2}"))),
            ("/v1/chat/completions", Http.Json(UserMessage("placeholder").Replace("placeholder", "lone \\ud800 half"))),
            ("/v1/chat/completions", Http.Json("""
                {"messages":[{"role":"user","content":[{"type":"text","text":"x\udc00"}]}],"max_tokens":2}
                """)),
            ("/v1/completions", Http.Json("""{"prompt":"\ud83d","max_tokens":2}""")),
            ("/v1/completions", Http.Json("""{"prompt":"x","max_tokens":2,"stop":["\udfff"]}""")),
            ("/v1/completions", Http.Json("""{"prompt":"x","max_tokens":2,"conversation_id":"\ud800"}""")),
            ("/tokenize", Raw(Text("""{"prompt":"bad """), notUtf8, Text("\"}"))),
        };
        foreach (var (path, body) in requests)
        {
            var (status, error) = await SendAsync(silo.Http, path, body);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("invalid_request_error", (string?)error["error"]!["type"]);
        }
    }

    [Fact]
    public async Task A_blank_or_over_long_conversation_id_is_a_400()
    {
        foreach (var id in new[] { "", " ", "\\t", "two words", "line\\nbreak", new string('x', 257) })
        {
            var result = await silo.Http.PostAsync("/v1/completions",
                $$"""{"prompt":"x","max_tokens":2,"conversation_id":"{{id}}"}""", Ct);
            Turns.AssertError(HttpStatusCode.BadRequest, "invalid_value", result);
            Assert.Equal("conversation_id", (string?)result.Body["error"]!["param"]);
        }
        using var delete = await silo.Http.DeleteAsync("/v1/conversations/two%20words", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, delete.StatusCode);
    }

    [Fact]
    public async Task A_conversation_without_a_turn_for_its_ttl_is_removed_with_its_stored_state()
    {
        var (status, _) = await silo.Http.PostAsync("/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Remember me."}],"max_tokens":2,"conversation_id":"fleeting"}""",
            Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        var conversation = silo.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, "fleeting"));
        var storage = silo.App.Services.GetRequiredKeyedService<IGrainStorage>(WeftStorage.Name);

        async Task<bool> Stored()
        {
            var state = new GrainState<ConversationState>();
            await storage.ReadStateAsync("conversation", conversation.GetGrainId(), state);
            return state.RecordExists;
        }

        Assert.True(await Stored());
        // reading the history is no turn: it does not keep the conversation alive
        await Http.WaitUntil(async () => (await conversation.GetHistoryAsync()).Messages.Count == 0 && !await Stored(),
            "the conversation expired", Ct);
    }
}

/// <summary>A silo of its own, whose model file a test overwrites.</summary>
public sealed class ReplaceableModelSilo : SiloFixture;

public sealed class ModelFileTests(ReplaceableModelSilo silo) : IClassFixture<ReplaceableModelSilo>
{
    [Fact]
    public async Task The_model_file_can_be_overwritten_while_it_is_served()
    {
        var ct = TestContext.Current.CancellationToken;
        const string request = """{"prompt":"The sea","temperature":0,"max_tokens":8,"ignore_eos":true}""";
        var before = await silo.Http.PostAsync("/v1/completions", request, ct);
        Assert.Equal(HttpStatusCode.OK, before.Status);

        // In place, as a copy over the file does: a mapping would now read zeros (or, had the file shrunk, kill the
        // process).
        await File.WriteAllBytesAsync(silo.ModelPath, new byte[new FileInfo(silo.ModelPath).Length], ct);
        var after = await silo.Http.PostAsync("/v1/completions", request, ct);
        Assert.Equal(HttpStatusCode.OK, after.Status);
        Assert.Equal((string?)before.Body["choices"]![0]!["text"], (string?)after.Body["choices"]![0]!["text"]);
    }
}
