using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;

namespace Weft.Silo.Tests;

/// <summary>What the tests that start silos of their own share: free ports, the throwaway databases they make on the
/// test PostgreSQL, and silos on those.</summary>
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

    /// <summary>Drops <paramref name="database"/> on <paramref name="server"/>, closing its pooled connections
    /// first.</summary>
    public static async Task DropDatabaseAsync(string server, string database)
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(server);
        await connection.OpenAsync(CancellationToken.None);
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {database} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync(CancellationToken.None);
    }

    /// <summary>Creates <paramref name="database"/> on <paramref name="server"/> and returns its connection
    /// string.</summary>
    public static async Task<string> CreateDatabaseAsync(string server, string database, CancellationToken ct)
    {
        await using (var connection = new NpgsqlConnection(server))
        {
            await connection.OpenAsync(ct);
            await using var create = new NpgsqlCommand($"CREATE DATABASE {database}", connection);
            await create.ExecuteNonQueryAsync(ct);
        }
        return new NpgsqlConnectionStringBuilder(server) { Database = database }.ConnectionString;
    }

    /// <summary>A silo on the PostgreSQL <paramref name="store"/>, started with its model loaded: the silo tests'
    /// model, written to <paramref name="model"/> the first time, and <paramref name="options"/> after the common
    /// ones. It joins <paramref name="silos"/> before it starts, so the test disposes of it even if it fails to
    /// start.</summary>
    public static async Task<WebApplication> StartPostgresSiloAsync(string model, string store,
        ICollection<WebApplication> silos, CancellationToken ct, params string[] options)
    {
        if (!File.Exists(model))
            DemoModel.Write(model, SiloFixture.Shape,
                DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));
        var app = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "256", "--postgres", store,
            "--urls", "http://127.0.0.1:0", "--silo-port", FreePort().ToString(), "--gateway-port", "0", .. options]);
        silos.Add(app);
        await app.StartAsync(ct);
        await app.Services.GetRequiredService<Weft.Grains.ModelHost>().Ready;
        return app;
    }
}
