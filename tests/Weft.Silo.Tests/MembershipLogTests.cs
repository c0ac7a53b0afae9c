using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;

namespace Weft.Silo.Tests;

/// <summary>Expected membership changes as an operator's log shows them: a line at information level for each, and
/// no error-level line (Orleans' stack traces) on the silo that stays.</summary>
public sealed class MembershipLogTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    readonly string _dir = Directory.CreateTempSubdirectory("weft-membership-").FullName;
    readonly List<WebApplication> _silos = [];
    PostgresScratch? _postgres;

    [Theory]
    [InlineData("localhost")]
    [InlineData("postgres")]
    public async Task A_peer_that_joins_and_shuts_down_gracefully_logs_information_and_no_error_on_the_other(
        string clustering)
    {
        if (clustering == "postgres") Assert.SkipWhen(TestHosts.Postgres is null, TestHosts.NoPostgres);
        var logs = new LogCapture();
        var (a, b) = await StartTwoSilos(clustering, logs);
        var address = b.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        await Http.WaitUntil(() => Task.FromResult(Active(a) == 2 && Active(b) == 2), "both silos active", Ct);
        // a request on each silo, so that the peer's going has activations and connections to clean up
        foreach (var silo in new[] { a, b })
        {
            using var http = new HttpClient { BaseAddress = new Uri(silo.Urls.Single()) };
            using var reply = await http.PostAsync("/v1/completions",
                Http.Json("""{"prompt":"membership","max_tokens":4,"temperature":0}"""), Ct);
            reply.EnsureSuccessStatusCode();
        }

        if (_postgres is not null) await _postgres.StopSiloAsync(b);
        else
        {
            _silos.Remove(b);
            await b.StopAsync(Ct);
            await b.DisposeAsync();
        }

        await Http.WaitUntil(() => Task.FromResult(logs.Lines.Any(l => IsMembership(l, address,
            "left the cluster: shut down"))), "the line of the peer's leaving", Ct);
        Assert.Contains(logs.Lines, l => IsMembership(l, address, "joined the cluster"));
        // what follows a peer's leaving (closed connections, the table's update, the next probes) has its time
        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        var errors = logs.Lines.Where(l => l.Level >= LogLevel.Error).Select(l => $"{l.Category}: {l.Message}")
            .ToList();
        Assert.True(errors.Count == 0, string.Join("\n", errors));
    }

    static bool IsMembership((string Category, LogLevel Level, string Message) line, SiloAddress silo, string what) =>
        line is { Category: "Weft.Grains.MembershipLog", Level: LogLevel.Information }
        && line.Message.StartsWith($"silo {silo} ", StringComparison.Ordinal)
        && line.Message.EndsWith(what, StringComparison.Ordinal);

    static int Active(WebApplication silo) => silo.Services.GetRequiredService<IClusterMembershipService>()
        .CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active);

    /// <summary>Two silos of one cluster; <paramref name="logs"/> holds the first one's log from before the second
    /// started.</summary>
    async Task<(WebApplication, WebApplication)> StartTwoSilos(string clustering, LogCapture logs)
    {
        if (clustering == "postgres")
        {
            _postgres = new PostgresScratch("weft-membership-pg-");
            string store = await _postgres.CreateDatabaseAsync(Ct);
            var first = await _postgres.StartSiloAsync(store, Ct);
            first.Services.GetRequiredService<ILoggerFactory>().AddProvider(logs);
            return (first, await _postgres.StartSiloAsync(store, Ct));
        }
        string model = Path.Combine(_dir, "model.gguf");
        DemoModel.Write(model, SiloFixture.Shape,
            DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));
        int primary = TestHosts.FreePort();
        var a = await StartLocalSilo(model, primary, []);
        a.Services.GetRequiredService<ILoggerFactory>().AddProvider(logs);
        return (a, await StartLocalSilo(model, TestHosts.FreePort(), ["--primary-silo-port", primary.ToString()]));
    }

    async Task<WebApplication> StartLocalSilo(string model, int siloPort, string[] options)
    {
        var app = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "256", "--urls", "http://127.0.0.1:0",
            "--silo-port", siloPort.ToString(), "--gateway-port", "0", .. options]);
        _silos.Add(app);
        await app.StartAsync(Ct);
        await app.Services.GetRequiredService<Weft.Grains.ModelHost>().Ready;
        return app;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var silo in _silos)
        {
            await silo.StopAsync(CancellationToken.None);
            await silo.DisposeAsync();
        }
        if (_postgres is not null) await _postgres.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }
}
