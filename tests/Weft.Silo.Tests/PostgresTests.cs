using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Weft.Abstractions;
using Weft.Testing;

namespace Weft.Silo.Tests;

/// <summary>
/// The silo on PostgreSQL (<c>--postgres</c>), against the server named by WEFT_TEST_POSTGRES (an Npgsql connection
/// string; scripts/start-postgres.sh starts one and prints it). Each test works in a database of its own, created
/// empty, so the silo's schema installation runs on a fresh database every time.
/// </summary>
public sealed class PostgresTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static readonly string? Server = TestHosts.Postgres;

    readonly PostgresScratch _pg = new("weft-postgres-");
    TcpRelay? _relay;


    [Fact]
    public async Task A_conversation_continues_with_its_history_after_the_silo_restarts()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        string store = await CreateDatabase();
        var first = await StartSilo(store);
        var conversation = Grains(first).GetGrain<IConversationGrain>("restart");
        var turn1 = await conversation.RunAsync(Chat("Tell me about the sea."), Ct);
        await _pg.StopSiloAsync(first);

        var second = await StartSilo(store);
        conversation = Grains(second).GetGrain<IConversationGrain>("restart");
        var history = await conversation.GetHistoryAsync();
        Assert.Equal(["user", "assistant"], history.Messages.Select(m => m.Role));
        Assert.Equal(turn1.Text, history.Messages[1].Content);
        var turn2 = await conversation.RunAsync(Chat("And the mountains?"), Ct);
        Assert.Equal([.. turn1.PromptTokenIds, .. turn1.TokenIds],
            turn2.PromptTokenIds.Take(turn1.PromptTokenIds.Count + turn1.TokenIds.Count));
        Assert.Equal(["user", "assistant", "user", "assistant"],
            (await conversation.GetHistoryAsync()).Messages.Select(m => m.Role));
    }

    [Fact]
    public async Task While_the_database_is_down_health_is_not_ready_and_requests_get_503_with_retry_after()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        string store = await CreateDatabase();
        // The silo reaches the database through a relay of the test's: closing it refuses every connection, as a
        // stopped server does, without stopping the server the other tests share.
        var target = new NpgsqlConnectionStringBuilder(store);
        _relay = new TcpRelay(target.Host!, target.Port);
        _relay.Start();
        var silo = await StartSilo(new NpgsqlConnectionStringBuilder(store)
        { Host = "127.0.0.1", Port = _relay.Port, Pooling = true }.ConnectionString);
        using var http = new HttpClient { BaseAddress = new Uri(silo.Urls.Single()) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Send(http, "before")).Status);

        _relay.Stop();
        await Http.WaitUntil(async () => (await http.GetAsync("/health", Ct)).StatusCode
            == HttpStatusCode.ServiceUnavailable, "health not ready", Ct);
        var health = JsonNode.Parse(await Body(http))!;
        Assert.Equal("storage_unavailable", (string?)health["status"]);
        // a new conversation (its state cannot be read) and one already active (its turn cannot be stored)
        foreach (string id in new[] { "during", "before" })
        {
            var (status, retryAfter, body) = await Send(http, id);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.NotNull(retryAfter);
            Assert.Equal("storage_unavailable", (string?)body["error"]!["code"]);
            Assert.Equal("service_unavailable", (string?)body["error"]!["type"]);
        }

        _relay.Start();
        await Http.WaitUntil(async () => (await http.GetAsync("/health", Ct)).StatusCode == HttpStatusCode.OK,
            "health ready again", Ct);
        Assert.Equal(HttpStatusCode.OK, (await Send(http, "after")).Status);
        Assert.Equal(HttpStatusCode.OK, (await Send(http, "before")).Status);
    }

    static async Task<string> Body(HttpClient http)
    {
        using var response = await http.GetAsync("/health", Ct);
        return await response.Content.ReadAsStringAsync(Ct);
    }

    static async Task<(HttpStatusCode Status, TimeSpan? RetryAfter, JsonNode Body)> Send(HttpClient http, string id)
    {
        using var response = await http.PostAsync("/v1/completions", Http.Json($$"""
            {"prompt":"Once upon a time","max_tokens":4,"temperature":0,"conversation_id":"{{id}}"}
            """), Ct);
        return (response.StatusCode, response.Headers.RetryAfter?.Delta,
            JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!);
    }

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 8, IgnoreEos = true };

    static TurnRequest Chat(string user) => new() { Messages = [new ChatMessage("user", user)], Sampling = Greedy };

    static IGrainFactory Grains(WebApplication silo) => silo.Services.GetRequiredService<IGrainFactory>();

    Task<string> CreateDatabase() => _pg.CreateDatabaseAsync(Ct);

    Task<WebApplication> StartSilo(string store) => _pg.StartSiloAsync(store, Ct);


    public async ValueTask DisposeAsync()
    {
        await _pg.DisposeAsync();
        _relay?.Dispose();
    }
}

/// <summary>A TCP forwarder on a loopback port of its own: stopping it closes every relayed connection and refuses new
/// ones, which is what a client sees of a server that went down; starting it again listens on the same port.</summary>
sealed class TcpRelay(string host, int port) : IDisposable
{
    readonly List<TcpClient> _open = [];
    TcpListener? _listener;
    CancellationTokenSource? _running;

    public int Port { get; private set; }

    public void Start()
    {
        _listener = new TcpListener(IPAddress.Loopback, Port);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _running = new CancellationTokenSource();
        _ = AcceptAsync(_listener, _running.Token);
    }

    async Task AcceptAsync(TcpListener listener, CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var inbound = await listener.AcceptTcpClientAsync(ct);
                var outbound = new TcpClient();
                await outbound.ConnectAsync(host, port, ct);
                lock (_open) _open.AddRange([inbound, outbound]);
                _ = PumpAsync(inbound, outbound, ct);
                _ = PumpAsync(outbound, inbound, ct);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // stopped
        }
    }

    static async Task PumpAsync(TcpClient from, TcpClient to, CancellationToken ct)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream(), ct);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException
            or InvalidOperationException)
        {
            // one side closed
        }
        from.Close();
        to.Close();
    }

    public void Stop()
    {
        _running?.Cancel();
        _listener?.Stop();
        lock (_open)
        {
            foreach (var client in _open) client.Close();
            _open.Clear();
        }
    }

    public void Dispose()
    {
        Stop();
        _running?.Dispose();
    }
}
