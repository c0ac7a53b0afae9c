using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;

namespace Weft.Silo.Tests;

/// <summary>An API key, one sequence per tick and one waiting slot.</summary>
public sealed class GuardedSilo : SiloFixture
{
    public const string Key = "sesame";
    protected override string[] Options =>
        ["--api-key", Key, "--max-num-seqs", "1", "--max-num-batched-tokens", "64", "--max-waiting", "1"];

    public HttpClient Authorized()
    {
        var http = Client();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return http;
    }
}

public sealed class GuardTests(GuardedSilo silo) : IClassFixture<GuardedSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_api_needs_the_key_but_health_and_metrics_do_not()
    {
        foreach (var (method, path) in new[] { ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
            ("POST", "/v1/completions"), ("POST", "/tokenize"), ("POST", "/detokenize") })
            foreach (var key in new[] { null, "wrong" })
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path)
                { Content = method == "POST" ? Http.Json("""{"prompt":"x"}""") : null };
                if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                using var response = await silo.Http.SendAsync(request, Ct);
                Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
                Assert.Equal("invalid_api_key",
                    (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
            }
        Assert.Equal(HttpStatusCode.OK, (await silo.Http.GetAsync("/health", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await silo.Http.GetAsync("/metrics", Ct)).StatusCode);

        var refused = await Assert.ThrowsAsync<ClientResultException>(() =>
            silo.OpenAI("wrong").GetOpenAIModelClient().GetModelsAsync(Ct));
        Assert.Equal(401, refused.Status);
        var models = (await silo.OpenAI(GuardedSilo.Key).GetOpenAIModelClient().GetModelsAsync(Ct)).Value;
        Assert.Equal(SiloFixture.ModelName, models.Single().Id);
        using var http = silo.Authorized();
        var (status, _) = await http.PostAsync("/tokenize", """{"prompt":"x"}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task A_full_queue_is_refused_with_429_and_retry_after()
    {
        using var http = silo.Authorized();
        const string longRequest =
            """{"prompt":"A long story","temperature":0,"max_tokens":1000,"ignore_eos":true,"stream":true}""";
        using var streams = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var sends = new List<Task<HttpResponseMessage>>();
        try
        {
            // one running (the per-tick limit), then one waiting (the queue bound), one at a time
            foreach (var (running, waiting) in new[] { (1, 0), (1, 1) })
            {
                sends.Add(http.SendAsync(
                    new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(longRequest) },
                    HttpCompletionOption.ResponseHeadersRead, streams.Token));
                await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is var l
                    && l.Running == running && l.Waiting == waiting,
                    $"{running} running, {waiting} waiting", Ct);
            }

            using var refused = await http.PostAsync("/v1/completions", Http.Json(longRequest), Ct);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!["error"]!;
            Assert.Equal("queue_full", (string?)error["code"]);
        }
        finally
        {
            // the running stream has its headers (its response is disposed); the waiting one has not (its request is
            // cancelled)
            streams.Cancel();
            foreach (var send in sends)
                try
                {
                    (await send).Dispose();
                }
                catch (OperationCanceledException)
                {
                }
        }
        // closing the streams frees everything
        await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is { Running: 0, Waiting: 0 },
            "running and waiting back to 0", Ct);
    }
}
