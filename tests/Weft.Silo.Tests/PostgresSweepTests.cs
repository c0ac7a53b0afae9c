using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Orleans.Storage;
using Weft.Abstractions;
using Weft.Grains;
using Weft.Silo.Storage;

namespace Weft.Silo.Tests;

/// <summary>
/// The sweep of expired rows on PostgreSQL (<see cref="PostgresSweeper"/>), on the server named by WEFT_TEST_POSTGRES.
/// States are written through the silo's own storage provider, so the rows are keyed as Orleans keys them, then aged
/// by moving their modified_on back, as time would.
/// </summary>
public sealed class PostgresSweepTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    readonly PostgresScratch _pg = new("weft-sweep-");

    [Fact]
    public async Task A_sweep_deletes_rows_idle_for_twice_their_ttl_and_old_emptied_rows_and_keeps_the_rest()
    {
        Assert.SkipWhen(TestHosts.Postgres is null, TestHosts.NoPostgres);
        string store = await _pg.CreateDatabaseAsync(Ct);
        var silo = await _pg.StartSiloAsync(store, Ct, "--conversation-ttl", "3600", "--response-ttl", "0");
        var writer = new Writer(silo);
        await writer.WriteAsync<IConversationGrain, ConversationState>("stale", ConversationGrain.StateName);
        await writer.WriteAsync<IConversationGrain, ConversationState>("idle", ConversationGrain.StateName);
        await writer.WriteAsync<IConversationGrain, ConversationState>("reset", ConversationGrain.StateName,
            clear: true);
        await writer.WriteAsync<IConversationGrain, ConversationState>("just-reset", ConversationGrain.StateName,
            clear: true);
        await writer.WriteAsync<IResponseGrain, ResponseState>("resp_kept", ResponseGrain.StateName);
        await using var db = new NpgsqlConnection(store);
        await db.OpenAsync(Ct);
        await Age(db, "stale", "2 hours 1 minute");
        // past its TTL (its activation would have removed it) but not twice it: the store leaves it to the grain
        await Age(db, "idle", "90 minutes");
        await Age(db, "reset", "11 minutes");
        await Age(db, "resp_kept", "400 days");
        // another service's conversation in the same table, as old: not this silo's to sweep
        await Execute(db, """
            INSERT INTO weft_grain_state (service_id, grain_type, grain_type_hash, grain_id_hash, grain_id_n0,
                grain_id_n1, grain_id_extension, payload, modified_on, version)
            SELECT 'another-service', grain_type, grain_type_hash, grain_id_hash, grain_id_n0, grain_id_n1,
                grain_id_extension, payload, modified_on, version
            FROM weft_grain_state WHERE grain_id_extension = 'default/stale'
            """);

        var sweeper = silo.Services.GetServices<IHostedService>().OfType<PostgresSweeper>().Single();
        await sweeper.SweepAsync(Ct);

        var left = new List<string>();
        await using (var command = new NpgsqlCommand(
            "SELECT service_id || ':' || grain_id_extension FROM weft_grain_state ORDER BY 1", db))
        await using (var reader = await command.ExecuteReaderAsync(Ct))
            while (await reader.ReadAsync(Ct)) left.Add(reader.GetString(0));
        Assert.Equal(["another-service:default/stale", "weft:default/idle", "weft:default/just-reset",
            "weft:default/resp_kept"], left);
        // the kept response still reads back through the provider
        Assert.True(await writer.ExistsAsync<IResponseGrain, ResponseState>("resp_kept", ResponseGrain.StateName));
    }

    static Task Age(NpgsqlConnection db, string id, string by) => Execute(db,
        $"UPDATE weft_grain_state SET modified_on = now() - interval '{by}' " +
        $"WHERE grain_id_extension = '{ConversationKey.Of(WeftDefaults.Tenant, id)}'");

    static async Task Execute(NpgsqlConnection db, string sql)
    {
        await using var command = new NpgsqlCommand(sql, db);
        Assert.True(await command.ExecuteNonQueryAsync(Ct) > 0, sql);
    }

    /// <summary>Writes and clears states through the silo's grain storage provider, keyed by the default tenant's
    /// ids.</summary>
    sealed class Writer(WebApplication silo)
    {
        readonly IGrainStorage _storage = silo.Services.GetRequiredKeyedService<IGrainStorage>(WeftStorage.Name);
        readonly IGrainFactory _grains = silo.Services.GetRequiredService<IGrainFactory>();

        GrainId Id<TGrain>(string id) where TGrain : IGrainWithStringKey =>
            _grains.GetGrain<TGrain>(ConversationKey.Of(WeftDefaults.Tenant, id)).GetGrainId();

        public async Task WriteAsync<TGrain, TState>(string id, string stateName, bool clear = false)
            where TGrain : IGrainWithStringKey where TState : new()
        {
            var state = new GrainState<TState>(new TState());
            await _storage.WriteStateAsync(stateName, Id<TGrain>(id), state);
            if (clear) await _storage.ClearStateAsync(stateName, Id<TGrain>(id), state);
        }

        public async Task<bool> ExistsAsync<TGrain, TState>(string id, string stateName)
            where TGrain : IGrainWithStringKey where TState : new()
        {
            var state = new GrainState<TState>();
            await _storage.ReadStateAsync(stateName, Id<TGrain>(id), state);
            return state.RecordExists;
        }
    }

    public ValueTask DisposeAsync() => _pg.DisposeAsync();
}
