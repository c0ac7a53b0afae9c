using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;

namespace Weft.Silo.Tests;

/// <summary>What the tests that start silos of their own share: free ports and the test PostgreSQL (see
/// <see cref="PostgresScratch"/> for the databases and silos they make there).</summary>
static class TestHosts
{
    /// <summary>The PostgreSQL server of the store tests (an Npgsql connection string), or null to skip them.</summary>
    public static readonly string? Postgres = Environment.GetEnvironmentVariable("WEFT_TEST_POSTGRES");

    public const string NoPostgres =
        "WEFT_TEST_POSTGRES is not set (scripts/start-postgres.sh starts a server and prints it)";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>
/// A test's own database on the test PostgreSQL (<see cref="TestHosts.Postgres"/>), the directory of its model and the
/// silos it starts on that database. Disposing stops the silos, drops the database and deletes the directory.
/// </summary>
sealed class PostgresScratch(string prefix) : IAsyncDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory(prefix).FullName;
    readonly string _database = $"weft_test_{Guid.NewGuid():N}";
    readonly List<WebApplication> _silos = [];

    public int Silos => _silos.Count;

    /// <summary>Creates the database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(CancellationToken ct)
    {
        await using (var connection = new NpgsqlConnection(TestHosts.Postgres))
        {
            await connection.OpenAsync(ct);
            await using var create = new NpgsqlCommand($"CREATE DATABASE {_database}", connection);
            await create.ExecuteNonQueryAsync(ct);
        }
        return new NpgsqlConnectionStringBuilder(TestHosts.Postgres) { Database = _database }.ConnectionString;
    }

    /// <summary>A silo on the PostgreSQL <paramref name="store"/>, started with its model loaded: the silo tests'
    /// model, written the first time, and <paramref name="options"/> after the common ones.</summary>
    public async Task<WebApplication> StartSiloAsync(string store, CancellationToken ct, params string[] options)
    {
        string model = Path.Combine(_dir, "model.gguf");
        if (!File.Exists(model))
            DemoModel.Write(model, SiloFixture.Shape,
                DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));
        var app = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "256", "--postgres", store,
            "--urls", "http://127.0.0.1:0", "--silo-port", TestHosts.FreePort().ToString(), "--gateway-port", "0",
            .. options]);
        _silos.Add(app);
        await app.StartAsync(ct);
        await app.Services.GetRequiredService<Weft.Grains.ModelHost>().Ready;
        return app;
    }

    public async Task StopSiloAsync(WebApplication silo)
    {
        _silos.Remove(silo);
        await silo.StopAsync(CancellationToken.None);
        await silo.DisposeAsync();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var silo in _silos.ToList()) await StopSiloAsync(silo);
        if (TestHosts.Postgres is not null)
        {
            // its pooled connections closed first
            NpgsqlConnection.ClearAllPools();
            await using var connection = new NpgsqlConnection(TestHosts.Postgres);
            await connection.OpenAsync(CancellationToken.None);
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_database} WITH (FORCE)", connection);
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
        Directory.Delete(_dir, recursive: true);
    }
}
