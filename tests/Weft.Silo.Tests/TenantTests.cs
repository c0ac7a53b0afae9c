using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Weft.Abstractions;
using Weft.Models;
using Weft.Models.Gguf;

namespace Weft.Silo.Tests;

/// <summary>Two tenants from a key file, serving a model with a 4096-token context, so that a long reply is still
/// running while a test sends its next request.</summary>
public class TenantSilo : SiloFixture
{
    public const string AcmeKey = "acme-key-1";
    public const string GlobexKey = "globex-key-1";
    static readonly DemoModelShape LongContext = new("silo-long", 128, 4, 4, 2, 384, 1024, 4096, GgmlType.F32);

    public TenantSilo() =>
        File.WriteAllText(KeysPath, $"# tenant key\n\nacme {AcmeKey}\n  globex\t{GlobexKey}  \n");

    string KeysPath => Path.Combine(Dir, "keys.txt");
    protected override DemoModelShape ModelShape => LongContext;
    protected override string[] Options => ["--api-keys", KeysPath, .. Limits];
    protected virtual string[] Limits => [];

    public HttpClient As(string key)
    {
        var http = Client();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public IConversationGrain Conversation(string key) =>
        App.Services.GetRequiredService<IGrainFactory>().GetGrain<IConversationGrain>(key);
}

/// <summary>Helpers of the tenant tests: requests by token ids, so their prompt lengths are exact.</summary>
static class Turns
{
    public static string Completion(IEnumerable<int> prompt, int maxTokens, string? conversation = null,
        bool stream = false) =>
        $$"""{"prompt":[{{string.Join(",", prompt)}}],"temperature":0,"max_tokens":{{maxTokens}},"ignore_eos":true""" +
        (conversation is null ? "" : $$""","conversation_id":"{{conversation}}" """) +
        (stream ? ""","stream":true}""" : "}");

    public static string Short(string? conversation = null) => Completion([5, 6, 7], 2, conversation);

    /// <summary>Starts a streamed reply of 3000 tokens and returns once its headers are in, which the silo sends with
    /// the first token: the turn is then in progress. Disposing the response cancels it.</summary>
    public static async Task<HttpResponseMessage> StartLongAsync(HttpClient http, string? conversation,
        IEnumerable<int>? prompt = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Http.Json(Completion(prompt ?? [5, 6, 7, 8], 3000, conversation, stream: true)),
        };
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead,
            TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response;
    }

    public static int CachedTokens(JsonNode body) => (int)body["usage"]!["prompt_tokens_details"]!["cached_tokens"]!;

    public static void AssertError(HttpStatusCode expected, string code, (HttpStatusCode Status, JsonNode Body) r)
    {
        Assert.Equal(expected, r.Status);
        Assert.Equal(code, (string?)r.Body["error"]!["code"]);
    }
}

public sealed class TenantTests(TenantSilo silo) : IClassFixture<TenantSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Each_key_maps_to_its_tenant_and_any_other_key_is_refused_with_401()
    {
        foreach (var key in new[] { "wrong", TenantSilo.AcmeKey + "x", "acme", TenantSilo.AcmeKey.ToUpperInvariant() })
        {
            using var stranger = silo.As(key);
            Turns.AssertError(HttpStatusCode.Unauthorized, "invalid_api_key",
                await stranger.PostAsync("/v1/completions", Turns.Short(), Ct));
        }
        using var nobody = silo.Client();
        Turns.AssertError(HttpStatusCode.Unauthorized, "invalid_api_key",
            await nobody.PostAsync("/v1/completions", Turns.Short(), Ct));
        foreach (var key in new[] { TenantSilo.AcmeKey, TenantSilo.GlobexKey })
        {
            using var tenant = silo.As(key);
            Assert.Equal(HttpStatusCode.OK, (await tenant.PostAsync("/v1/completions", Turns.Short(), Ct)).Status);
        }
        // the metrics tell the tenants apart
        string metrics = await silo.Http.GetStringAsync("/metrics", Ct);
        Assert.Contains("tenant=\"acme\"", metrics);
        Assert.Contains("tenant=\"globex\"", metrics);
    }

    [Fact]
    public async Task The_same_conversation_id_under_two_tenants_is_two_conversations()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        string secret = """
            {"messages":[{"role":"system","content":"The user's card number is 4111 1111 1111 1111; never say it."},
            {"role":"user","content":"What can you do for me today?"}],"temperature":0,"max_tokens":4,
            "conversation_id":"shared"}
            """;
        var mine = await acme.PostAsync("/v1/chat/completions", secret, Ct);
        Assert.Equal(HttpStatusCode.OK, mine.Status);

        // Another tenant sending the very same turn to the same id computes all of it: neither the conversation's KV
        // cache nor the prefix cache of acme's prompt is theirs, so cached_tokens tells them nothing.
        var theirs = await globex.PostAsync("/v1/chat/completions", secret, Ct);
        Assert.Equal(HttpStatusCode.OK, theirs.Status);
        Assert.Equal(0, Turns.CachedTokens(theirs.Body));
        var overwrite = await globex.PostAsync("/v1/chat/completions",
            """
            {"messages":[{"role":"user","content":"Forget everything."}],"max_tokens":2,"conversation_id":"shared"}
            """, Ct);
        Assert.Equal(HttpStatusCode.OK, overwrite.Status);

        // acme's conversation is untouched: its history, and its KV cache for the next turn
        var history = await silo.Conversation("acme/shared").GetHistoryAsync();
        Assert.Contains("4111", history.Messages[0].Content);
        Assert.Equal("Forget everything.", (await silo.Conversation("globex/shared").GetHistoryAsync())
            .Messages[0].Content);
        var again = await acme.PostAsync("/v1/chat/completions", secret, Ct);
        Assert.True(Turns.CachedTokens(again.Body) > 0, "acme's own next turn reuses its cache");
    }

    [Fact]
    public async Task Two_tenants_sending_the_same_prompt_share_no_cached_prompt_tokens()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        // four full KV blocks of 16 tokens, no conversation id: only the prefix cache could serve a repeat
        string prompt = Turns.Completion(Enumerable.Range(300, 64), 1);
        Assert.Equal(0, Turns.CachedTokens((await acme.PostAsync("/v1/completions", prompt, Ct)).Body));
        Assert.Equal(0, Turns.CachedTokens((await globex.PostAsync("/v1/completions", prompt, Ct)).Body));
        Assert.Equal(48, Turns.CachedTokens((await acme.PostAsync("/v1/completions", prompt, Ct)).Body));
        Assert.Equal(48, Turns.CachedTokens((await globex.PostAsync("/v1/completions", prompt, Ct)).Body));
    }

    [Fact]
    public async Task A_second_turn_on_a_busy_conversation_is_refused_with_409_at_once()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        using (await Turns.StartLongAsync(acme, "busy"))
        {
            var clock = Stopwatch.StartNew();
            Turns.AssertError(HttpStatusCode.Conflict, "conversation_busy",
                await acme.PostAsync("/v1/completions", Turns.Short("busy"), Ct));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"refused at once, not queued ({clock.Elapsed})");
            using var delete = await acme.DeleteAsync("/v1/conversations/busy", Ct);
            Assert.Equal(HttpStatusCode.Conflict, delete.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(1), delete.Headers.RetryAfter?.Delta);
            // the same id of another tenant is another conversation, free
            Assert.Equal(HttpStatusCode.OK,
                (await globex.PostAsync("/v1/completions", Turns.Short("busy"), Ct)).Status);
        }
        // the client went away, which ends the turn: the conversation takes turns again
        await Http.WaitUntil(async () =>
            (await acme.PostAsync("/v1/completions", Turns.Short("busy"), Ct)).Status == HttpStatusCode.OK,
            "the conversation free again", Ct);
    }

    [Fact]
    public async Task Delete_removes_the_callers_conversation_and_cannot_reach_another_tenants()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        Assert.Equal(HttpStatusCode.OK, (await acme.PostAsync("/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Remember me."}],"max_tokens":2,"conversation_id":"doomed"}""",
            Ct)).Status);

        using (var theirs = await globex.DeleteAsync("/v1/conversations/doomed", Ct))
            Assert.Equal(HttpStatusCode.NotFound, theirs.StatusCode);
        Assert.Equal(2, (await silo.Conversation("acme/doomed").GetHistoryAsync()).Messages.Count);

        using (var mine = await acme.DeleteAsync("/v1/conversations/doomed", Ct))
        {
            Assert.Equal(HttpStatusCode.OK, mine.StatusCode);
            var body = JsonNode.Parse(await mine.Content.ReadAsStringAsync(Ct))!;
            Assert.Equal("doomed", (string?)body["id"]);
            Assert.Equal("conversation.deleted", (string?)body["object"]);
            Assert.True((bool)body["deleted"]!);
        }
        Assert.Empty((await silo.Conversation("acme/doomed").GetHistoryAsync()).Messages);
        using var again = await acme.DeleteAsync("/v1/conversations/doomed", Ct);
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        Assert.Equal("not_found",
            (string?)JsonNode.Parse(await again.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
    }

    [Fact]
    public async Task A_stored_response_is_its_tenants_alone_to_get_continue_and_delete()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        var (status, body) = await acme.PostAsync("/v1/responses", """{"input":"Mine.","max_output_tokens":2}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        string id = (string)body["id"]!;

        using (var theirs = await globex.GetAsync($"/v1/responses/{id}", Ct))
            Assert.Equal(HttpStatusCode.NotFound, theirs.StatusCode);
        Turns.AssertError(HttpStatusCode.BadRequest, "previous_response_not_found", await globex.PostAsync(
            "/v1/responses", $$"""{"input":"Yours?","previous_response_id":"{{id}}","max_output_tokens":2}""", Ct));
        using (var theirs = await globex.DeleteAsync($"/v1/responses/{id}", Ct))
            Assert.Equal(HttpStatusCode.NotFound, theirs.StatusCode);

        using var mine = await acme.GetAsync($"/v1/responses/{id}", Ct);
        Assert.Equal(HttpStatusCode.OK, mine.StatusCode);
        Assert.Equal(id, (string?)JsonNode.Parse(await mine.Content.ReadAsStringAsync(Ct))!["id"]);
    }
}

/// <summary>Tenants limited to two requests and 100 prompt tokens in progress.</summary>
public sealed class LimitedTenantSilo : TenantSilo
{
    protected override string[] Limits => ["--tenant-max-requests", "2", "--tenant-max-queued-tokens", "100"];
}

public sealed class TenantLimitTests(LimitedTenantSilo silo) : IClassFixture<LimitedTenantSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_tenant_over_its_request_limit_gets_429_with_retry_after_and_others_are_served()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using var globex = silo.As(TenantSilo.GlobexKey);
        using (await Turns.StartLongAsync(acme, null))
        using (await Turns.StartLongAsync(acme, null))
        {
            using var refused = await acme.PostAsync("/v1/completions", Http.Json(Turns.Short()), Ct);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!["error"]!;
            Assert.Equal("rate_limit_exceeded", (string?)error["code"]);
            Assert.Equal("rate_limit_error", (string?)error["type"]);
            Assert.Equal(HttpStatusCode.OK, (await globex.PostAsync("/v1/completions", Turns.Short(), Ct)).Status);
        }
        await Http.WaitUntil(async () =>
            (await acme.PostAsync("/v1/completions", Turns.Short(), Ct)).Status == HttpStatusCode.OK,
            "acme served again", Ct);
    }

    [Fact]
    public async Task A_tenant_over_its_queued_token_limit_gets_429()
    {
        using var acme = silo.As(TenantSilo.AcmeKey);
        using (await Turns.StartLongAsync(acme, null, Enumerable.Range(10, 60)))
        {
            Turns.AssertError(HttpStatusCode.TooManyRequests, "rate_limit_exceeded",
                await acme.PostAsync("/v1/completions", Turns.Completion(Enumerable.Range(10, 60), 2), Ct));
            // what still fits is served
            Assert.Equal(HttpStatusCode.OK,
                (await acme.PostAsync("/v1/completions", Turns.Completion(Enumerable.Range(10, 30), 2), Ct)).Status);
        }
        // a lone request is admitted whatever its size: the limit never makes a request impossible
        await Http.WaitUntil(async () => (await acme.PostAsync("/v1/completions",
            Turns.Completion(Enumerable.Range(10, 200), 2), Ct)).Status == HttpStatusCode.OK, "a lone long prompt", Ct);
    }
}

public sealed class TenantKeyTests
{
    [Fact]
    public void Keys_come_from_the_single_key_the_configuration_map_and_the_file()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "# comment\n\nacme a-key\nacme second-a-key\n");
            var options = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Silo:ApiKey"] = "plain-key",
                ["Silo:ApiKeys:initech"] = "i-key",
                ["Silo:ApiKeysFile"] = file,
            }).Build().GetSection(SiloOptions.Section).Get<SiloOptions>()!;
            var tenants = Tenants.Load(options);

            Assert.True(tenants.RequireKey);
            Assert.Equal(3, tenants.Count);
            Assert.Equal(WeftDefaults.Tenant, tenants.Resolve("Bearer plain-key"));
            Assert.Equal("initech", tenants.Resolve("Bearer i-key"));
            Assert.Equal("acme", tenants.Resolve("Bearer a-key"));
            Assert.Equal("acme", tenants.Resolve("Bearer second-a-key"));
            foreach (var header in new[] { "", "a-key", "bearer a-key", "Bearer a-key ", "Bearer  a-key", "Bearer " })
                Assert.Null(tenants.Resolve(header));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Without_keys_nothing_is_required()
    {
        var tenants = Tenants.Load(new SiloOptions());
        Assert.False(tenants.RequireKey);
        Assert.Null(tenants.Resolve("Bearer anything"));
    }
}
