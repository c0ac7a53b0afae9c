using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Weft.Abstractions;
using Weft.Testing;

namespace Weft.Silo.Tests;

/// <summary>Failover at the API edge and in the conversation: turn ids, the failure-detection option, and which
/// failures are the cluster's (503) rather than the server's (500).</summary>
public sealed class FailoverTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 8, IgnoreEos = true };

    [Fact]
    public async Task A_turn_resent_with_its_turn_id_is_applied_once_and_gets_the_stored_reply()
    {
        var conversation = silo.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, "resent"));
        var turn = new TurnRequest
        {
            Messages = [new ChatMessage("user", "Tell me about the sea.")],
            Sampling = Greedy with { Temperature = 1, Seed = null },
            TurnId = "turn-1",
        };
        var first = await conversation.RunAsync(turn, Ct);
        var again = await conversation.RunAsync(turn, Ct);

        // sampled, not greedy: a second run would almost surely differ, the stored reply does not
        Assert.Equal(first.Text, again.Text);
        Assert.Equal(first.Usage, again.Usage);
        Assert.Equal(["user", "assistant"], (await conversation.GetHistoryAsync()).Messages.Select(m => m.Role));
        await conversation.RunAsync(turn with { TurnId = "turn-2" }, Ct);
        Assert.Equal(4, (await conversation.GetHistoryAsync()).Messages.Count);
    }

    [Fact]
    public async Task Over_http_the_same_x_turn_id_returns_the_same_reply_and_a_malformed_one_is_a_400()
    {
        async Task<(HttpStatusCode Status, JsonNode Body)> Send(string turnId)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = Http.Json("""
                    {"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"temperature":1.0}
                    """),
            };
            request.Headers.Add("X-Conversation-Id", "http-resent");
            request.Headers.Add("X-Turn-Id", turnId);
            using var response = await silo.Http.SendAsync(request, Ct);
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!);
        }

        var (status, first) = await Send("a1");
        Assert.Equal(HttpStatusCode.OK, status);
        var (_, again) = await Send("a1");
        Assert.Equal((string?)first["choices"]![0]!["message"]!["content"],
            (string?)again["choices"]![0]!["message"]!["content"]);
        var (bad, error) = await Send(new string('x', 300));
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("X-Turn-Id", (string?)error["error"]!["param"]);
    }

    [Fact]
    public void A_failure_detection_below_one_second_or_kubernetes_without_a_store_is_refused()
    {
        var e = Assert.Throws<SiloOptionsException>(() => WeftSilo.Build(["--failure-detection", "0.5"]));
        Assert.Equal("failure-detection must be between 1 and 120 seconds", e.Message);
        e = Assert.Throws<SiloOptionsException>(() => WeftSilo.Build(["--kubernetes"]));
        Assert.Equal("kubernetes needs postgres or redis for membership and conversations", e.Message);
    }

    [Fact]
    public void A_lost_silo_is_a_failure_of_the_cluster_and_anything_else_is_not()
    {
        Assert.True(ClusterFailover.IsSiloLoss(new SiloUnavailableException("the silo is gone")));
        Assert.True(ClusterFailover.IsSiloLoss(
            new OrleansException("call failed", new SiloUnavailableException("the silo is gone"))));
        Assert.True(ClusterFailover.IsSiloLoss(new TimeoutException("response did not arrive on time")));
        // what a partitioned edge got for a request without a conversation id in the multi-host test, as a 500
        Assert.True(ClusterFailover.IsSiloLoss(new OrleansException("Trying to register conversation/default/http-1 " +
            "on invalid silo: S10.231.68.12:11111:155691323. Known status: Dead")));
        Assert.False(ClusterFailover.IsSiloLoss(new InvalidOperationException("a bug")));
        Assert.False(ClusterFailover.IsSiloLoss(new OrleansException("storage provider failed")));
    }

    [Fact]
    public void A_store_failure_in_a_grain_reaches_the_silo_serving_the_request_as_a_store_failure()
    {
        // what a conversation activating on another silo while PostgreSQL restarts sends back to the edge
        var thrown = new OrleansException("Error from storage provider during ReadStateAsync",
            new NpgsqlException("Failed to connect to 10.0.0.1:5432",
                new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.ConnectionRefused)));
        var serializer = silo.App.Services.GetRequiredService<Orleans.Serialization.Serializer>();
        var received = serializer.Deserialize<Exception>(serializer.SerializeToArray<Exception>(thrown));
        Assert.NotNull(received);
        Assert.True(Storage.StorageHealth.IsUnreachable(received));
    }
}

/// <summary>
/// The store losing or changing what it held under a running silo, on the PostgreSQL named by WEFT_TEST_POSTGRES (a
/// database of each test's own).
/// </summary>
public sealed class StorageLossTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static readonly string? Server = TestHosts.Postgres;
    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 8, IgnoreEos = true };

    readonly PostgresScratch _pg = new("weft-storage-loss-");
    WebApplication? _silo;

    [Fact]
    public async Task A_conversation_whose_stored_copy_went_stale_or_vanished_keeps_its_history()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        string store = await StartSilo();
        var conversation = _silo!.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, "stale"));
        await conversation.RunAsync(Chat("Tell me about the sea."), Ct);

        // a store restored from another copy: the version the activation holds is not the stored one
        await Sql(store, "UPDATE weft_grain_state SET version = version + 7");
        await conversation.RunAsync(Chat("And the mountains?"), Ct);
        Assert.Equal(4, (await conversation.GetHistoryAsync()).Messages.Count);

        // a store restarted empty: the activation's copy is the only one left, and it is written back
        await Sql(store, "DELETE FROM weft_grain_state");
        await conversation.RunAsync(Chat("And the rivers?"), Ct);
        Assert.Equal(6, (await conversation.GetHistoryAsync()).Messages.Count);
        Assert.Equal(1L, await Sql(store, "SELECT count(*) FROM weft_grain_state WHERE payload IS NOT NULL"));
    }

    [Fact]
    public async Task A_silo_whose_membership_rows_vanished_writes_itself_back_past_the_version_it_saw()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        string store = await StartSilo();
        long version = (long)(await Sql(store, "SELECT max(version) FROM weft_membership_version"))!;

        await Sql(store, "DELETE FROM weft_membership; DELETE FROM weft_membership_version");
        await Http.WaitUntil(async () => (long)(await Sql(store,
            "SELECT count(*) FROM weft_membership WHERE status = 3"))! == 1, "the silo's row back", Ct);
        Assert.True((long)(await Sql(store, "SELECT max(version) FROM weft_membership_version"))! >= version);
    }

    static TurnRequest Chat(string user) =>
        new() { Messages = [new ChatMessage("user", user)], Sampling = Greedy, TurnId = Guid.NewGuid().ToString() };

    async Task<string> StartSilo()
    {
        string store = await _pg.CreateDatabaseAsync(Ct);
        _silo = await _pg.StartSiloAsync(store, Ct);
        return store;
    }

    static async Task<object?> Sql(string store, string sql)
    {
        await using var connection = new NpgsqlConnection(store);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(Ct) switch { int i => (long)i, var v => v };
    }


    public ValueTask DisposeAsync() => _pg.DisposeAsync();
}

/// <summary>
/// scripts/cluster-test.sh: two silos in network namespaces on PostgreSQL through kill -9, a partition and a storage
/// restart. It needs root (ip netns) and takes about two minutes, so it runs where WEFT_TEST_CLUSTER=1 asks for it.
/// </summary>
public sealed class MultiHostTests
{
    [Fact]
    public async Task Across_network_namespaces_no_turn_is_lost_none_is_a_500_and_every_history_is_intact()
    {
        Assert.SkipUnless(Environment.GetEnvironmentVariable("WEFT_TEST_CLUSTER") == "1",
            "WEFT_TEST_CLUSTER=1 runs scripts/cluster-test.sh (root, ip netns, PostgreSQL; about 2 minutes)");
        string repo = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repo, "scripts", "cluster-test.sh"))) repo = Path.GetDirectoryName(repo)!;
        using var test = Process.Start(new ProcessStartInfo("bash", [Path.Combine(repo, "scripts", "cluster-test.sh")])
        {
            WorkingDirectory = repo,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = test.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var errors = test.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await test.WaitForExitAsync(TestContext.Current.CancellationToken);
        string text = await output + await errors;
        TestContext.Current.TestOutputHelper?.WriteLine(text);
        Assert.SkipWhen(test.ExitCode == 77, text.Trim());
        Assert.Equal(0, test.ExitCode);
        Assert.Contains("requests lost 0, 500s 0", text);
        Assert.Contains("0 problems", text);
    }
}
