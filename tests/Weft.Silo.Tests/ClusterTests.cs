using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Weft.Abstractions;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;
using Weft.Testing;

namespace Weft.Silo.Tests;

/// <summary>
/// Cluster mode as an operator runs it: two silos built by <see cref="WeftSilo.Build"/> with <c>--redis</c> (Redis
/// membership and conversation storage) against a redis-server of the test's own.
/// </summary>
public sealed class ClusterTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    readonly string _dir = Directory.CreateTempSubdirectory("weft-cluster-").FullName;
    Process? _redis;
    readonly List<WebApplication> _silos = [];

    [Fact]
    public async Task A_conversation_outlives_its_silo_with_its_history()
    {
        Assert.SkipUnless(FindRedisServer() is not null, "redis-server is not installed (.ci/run installs it)");
        string model = WriteModel();
        string redis = await StartRedis();
        var a = await StartSilo(model, redis);
        var b = await StartSilo(model, redis);
        var grains = b.Services.GetRequiredService<IGrainFactory>();
        var siloA = a.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        var siloB = b.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        await Http.WaitUntil(() => Task.FromResult(b.Services.GetRequiredService<IClusterMembershipService>()
            .CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active) == 2), "both silos active", Ct);

        // New conversations go to either silo (both are empty); talk to them until one lives on silo A.
        IConversationGrain? onA = null;
        TurnResult? first = null;
        for (int i = 0; i < 64 && onA is null; i++)
        {
            var conversation = grains.GetGrain<IConversationGrain>($"outlive-{i}");
            var turn = await conversation.RunAsync(Chat($"Conversation {i}: tell me about the sea."), Ct);
            if ((await conversation.GetHistoryAsync()).Silo == siloA.ToString()) (onA, first) = (conversation, turn);
        }
        Assert.NotNull(onA);

        await a.StopAsync(Ct);

        // The next turn runs on silo B from the history in Redis: the same tokens as before, extended; the cache was
        // on silo A, so everything is computed again, and the reply is what a fresh conversation gets from those
        // tokens.
        var second = await onA.RunAsync(Chat("And the mountains?"), Ct);
        var history = await onA.GetHistoryAsync();
        Assert.Equal(siloB.ToString(), history.Silo);
        Assert.Equal(["user", "assistant", "user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal(first!.Text, history.Messages[1].Content);
        Assert.Equal([.. first.PromptTokenIds, .. first.TokenIds],
            second.PromptTokenIds.Take(first.PromptTokenIds.Count + first.TokenIds.Count));
        Assert.Equal(0, second.Usage.CachedTokens);
        var fresh = await grains.GetGrain<IConversationGrain>("outlive-fresh")
            .RunAsync(new TurnRequest { PromptTokenIds = second.PromptTokenIds, Sampling = Greedy }, Ct);
        Assert.Equal(second.TokenIds, fresh.TokenIds);
    }

    [Fact]
    public async Task A_conversations_redis_key_expires_while_responses_kept_until_deleted_have_none()
    {
        Assert.SkipUnless(FindRedisServer() is not null, "redis-server is not installed (.ci/run installs it)");
        string redis = await StartRedis();
        var silo = await StartSilo(WriteModel(), redis, "--response-ttl", "0", "--conversation-ttl", "600");
        await silo.Services.GetRequiredService<IGrainFactory>().GetGrain<IConversationGrain>("expiring")
            .RunAsync(Chat("Tell me about the sea."), Ct);
        using var http = new HttpClient { BaseAddress = new Uri(silo.Urls.Single()) };
        var (status, response) = await http.PostAsync("/v1/responses",
            """{"input":"Tell me about the sea.","max_output_tokens":4}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);

        await using var client = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis);
        var server = client.GetServer(client.GetEndPoints().Single());
        var db = client.GetDatabase();
        // twice the conversation TTL after the last write: what a silo that died left behind goes too
        var conversation = Assert.Single(server.Keys(pattern: "*expiring*"));
        Assert.InRange(await db.KeyTimeToLiveAsync(conversation) ?? TimeSpan.Zero,
            TimeSpan.FromSeconds(1100), TimeSpan.FromSeconds(1200));
        var stored = Assert.Single(server.Keys(pattern: $"*{(string?)response["id"]}*"));
        Assert.Null(await db.KeyTimeToLiveAsync(stored));
    }

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 8, IgnoreEos = true };

    static TurnRequest Chat(string user) => new() { Messages = [new ChatMessage("user", user)], Sampling = Greedy };

    [Fact]
    public async Task After_redis_restarts_empty_the_survivors_register_again_and_a_new_silo_joins_them()
    {
        Assert.SkipUnless(FindRedisServer() is not null, "redis-server is not installed (.ci/run installs it)");
        string model = WriteModel();
        string redis = await StartRedis();
        var a = await StartSilo(model, redis);
        var b = await StartSilo(model, redis);
        await Http.WaitUntil(() => Task.FromResult(Active(a) == 2 && Active(b) == 2), "both silos active", Ct);
        string key = $"{WeftDefaults.ServiceId}/members/{WeftDefaults.ClusterId}";
        await using var store =
            await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis + ",allowAdmin=true");
        var db = store.GetDatabase();
        long seen = (long)await db.HashGetAsync(key, "Version");

        // as a restart without persistence leaves it
        await store.GetServer(redis).FlushAllDatabasesAsync();
        await Http.WaitUntil(async () => await db.HashLengthAsync(key) == 3, "both silos' rows back", Ct);
        Assert.True((long)await db.HashGetAsync(key, "Version") >= seen);

        // a silo started now joins the survivors rather than forming a cluster of its own
        var c = await StartSilo(model, redis);
        await Http.WaitUntil(() => Task.FromResult(Active(a) == 3 && Active(b) == 3 && Active(c) == 3),
            "one cluster of three", Ct);
    }

    [Fact]
    public async Task While_redis_is_down_health_is_not_ready_and_it_is_ready_again_once_redis_is_back()
    {
        Assert.SkipUnless(FindRedisServer() is not null, "redis-server is not installed (.ci/run installs it)");
        string model = WriteModel();
        string redis = await StartRedis();
        var silo = await StartSilo(model, redis);
        using var http = new HttpClient { BaseAddress = new Uri(silo.Urls.Single()) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health", Ct)).StatusCode);

        _redis!.Kill();
        await _redis.WaitForExitAsync(Ct);
        await Http.WaitUntil(async () => (await http.GetAsync("/health", Ct)).StatusCode
            == HttpStatusCode.ServiceUnavailable, "health not ready", Ct);
        using (var down = await http.GetAsync("/health", Ct))
            Assert.Equal("storage_unavailable",
                (string?)JsonNode.Parse(await down.Content.ReadAsStringAsync(Ct))!["status"]);

        // restarted empty, on its port
        await StartRedis(int.Parse(redis[(redis.LastIndexOf(':') + 1)..]));
        await Http.WaitUntil(async () => (await http.GetAsync("/health", Ct)).StatusCode == HttpStatusCode.OK,
            "health ready again", Ct);
    }

    static int Active(WebApplication silo) => silo.Services.GetRequiredService<IClusterMembershipService>()
        .CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active);

    string WriteModel()
    {
        string model = Path.Combine(_dir, "model.gguf");
        DemoModel.Write(model, SiloFixture.Shape,
            DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));
        return model;
    }

    async Task<WebApplication> StartSilo(string model, string redis, params string[] options)
    {
        var app = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "256", "--redis", redis,
            "--urls", "http://127.0.0.1:0", "--silo-port", TestHosts.FreePort().ToString(), "--gateway-port", "0",
            .. options]);
        _silos.Add(app);
        await app.StartAsync(Ct);
        await app.Services.GetRequiredService<Weft.Grains.ModelHost>().Ready;
        return app;
    }

    async Task<string> StartRedis(int? on = null)
    {
        int port = on ?? TestHosts.FreePort();
        _redis?.Dispose();
        _redis = Process.Start(new ProcessStartInfo(FindRedisServer()!,
            ["--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        // drained, so a chatty server never blocks on a full pipe
        _redis.OutputDataReceived += (_, _) => { };
        _redis.ErrorDataReceived += (_, _) => { };
        _redis.BeginOutputReadLine();
        _redis.BeginErrorReadLine();
        await Http.WaitUntil(async () =>
        {
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, port, Ct);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }, "redis-server listening", Ct);
        return $"127.0.0.1:{port}";
    }

    static string? FindRedisServer() => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
        .Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);


    public async ValueTask DisposeAsync()
    {
        foreach (var silo in _silos)
        {
            await silo.StopAsync(CancellationToken.None);
            await silo.DisposeAsync();
        }
        if (_redis is { HasExited: false }) _redis.Kill();
        _redis?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
