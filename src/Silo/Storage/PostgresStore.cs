using System.Reflection;
using Npgsql;

namespace Weft.Silo.Storage;

/// <summary>
/// PostgreSQL as the cluster's store: Orleans' ADO.NET membership table and grain storage on the schema in
/// postgres-schema.sql (embedded), which the silo installs before Orleans starts, and the sweep of expired rows
/// (<see cref="PostgresSweeper"/>).
/// </summary>
static class PostgresStore
{
    /// <summary>The ADO.NET provider name Orleans loads Npgsql's factory by.</summary>
    public const string Invariant = "Npgsql";

    public static ISiloBuilder UsePostgres(this ISiloBuilder silo, string connectionString, string storageName)
    {
        silo.UseAdoNetClustering(o =>
        {
            o.Invariant = Invariant;
            o.ConnectionString = connectionString;
        });
        silo.AddAdoNetGrainStorage(storageName, o =>
        {
            o.Invariant = Invariant;
            o.ConnectionString = connectionString;
        });
        silo.Services.AddHostedService<PostgresSweeper>();
        return silo;
    }

    /// <summary>Creates or updates the schema: idempotent, and serialized across silos that start together (two
    /// concurrent CREATE TABLE IF NOT EXISTS can both miss the table and one then fails on the catalog).</summary>
    public static async Task InstallSchemaAsync(string connectionString, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var transaction = await connection.BeginTransactionAsync(ct);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(7365217)", connection,
            transaction))
            await lockCommand.ExecuteNonQueryAsync(ct);
        await using (var schema = new NpgsqlCommand(Schema, connection, transaction))
            await schema.ExecuteNonQueryAsync(ct);
        await transaction.CommitAsync(ct);
    }

    static string Schema => field ??= ReadSchema();

    static string ReadSchema()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Weft.Silo.postgres-schema.sql")
            ?? throw new InvalidOperationException("postgres-schema.sql is not embedded in Weft.Silo");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

/// <summary>Installs the schema when the host starts, before the Orleans silo (registered after it) joins the
/// membership table.</summary>
sealed class PostgresSchemaInstaller(SiloOptions options) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) =>
        PostgresStore.InstallSchemaAsync(options.Postgres!, cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
