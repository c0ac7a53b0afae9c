using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Weft.Grains;

namespace Weft.Silo.Storage;

/// <summary>
/// The store-side expiry PostgreSQL lacks (Redis has its keys' TTL). Conversations and stored responses remove their
/// own state after their TTL, but only while an activation holds them or when they are activated again: a
/// conversation whose silo died, a response no one reads again, and the rows a reset or expiry emptied (kept, with
/// their version, so that a stale activation cannot write over them) would stay forever. Every <see cref="Period"/>
/// each silo deletes, in one statement, this service's conversation and response rows not written for twice their
/// kind's TTL (never for a TTL of 0) and the emptied rows older than <see cref="TombstoneGrace"/>.
/// Silos sweeping at once are safe: a row deleted by one is skipped by the others, and a row written while a sweep
/// runs is re-checked by PostgreSQL against its new modified_on and kept. An activation whose row was swept finds it
/// gone on its next write, as after a store that lost it, and writes it again.
/// </summary>
sealed partial class PostgresSweeper(
    SiloOptions silo,
    IOptions<ModelHostOptions> model,
    ILogger<PostgresSweeper> logger) : BackgroundService
{
    /// <summary>Orleans' ADO.NET storage keys a row by the storage's service id and the state name the grain gave
    /// (its [PersistentState] name, passed to the provider as the grain type); the grain's id is in the other key
    /// columns, which the sweep does not need.</summary>
    const string Sweep = """
        WITH swept AS (
            DELETE FROM weft_grain_state
            WHERE service_id = @service AND (
                (payload IS NULL AND modified_on < now() - @grace)
                OR (grain_type = @conversation AND modified_on < now() - @conversation_age)
                OR (grain_type = @response AND modified_on < now() - @response_age))
            RETURNING grain_type, payload IS NULL AS emptied)
        SELECT count(*) FILTER (WHERE grain_type = @conversation AND NOT emptied),
            count(*) FILTER (WHERE grain_type = @response AND NOT emptied),
            count(*) FILTER (WHERE emptied)
        FROM swept
        """;

    /// <summary>How long an emptied row outlives its reset: longer than a stale activation can go on writing (its
    /// silo is declared dead within seconds and stops once it sees it).</summary>
    internal static readonly TimeSpan TombstoneGrace = TimeSpan.FromMinutes(10);

    readonly TimeSpan? _conversationAge = TwiceOrNever(model.Value.ConversationTtlSeconds);
    readonly TimeSpan? _responseAge = TwiceOrNever(model.Value.ResponseTtlSeconds);

    /// <summary>A quarter of the shortest TTL, between 10 s and the tombstones' grace: a sweep is one scan of the
    /// table, and what it removes is already at least a TTL past its own expiry.</summary>
    internal TimeSpan Period
    {
        get
        {
            var shortest = new[] { model.Value.ConversationTtlSeconds, model.Value.ResponseTtlSeconds }
                .Where(s => s > 0).DefaultIfEmpty(int.MaxValue).Min();
            return TimeSpan.FromSeconds(Math.Clamp(shortest / 4.0, 10, TombstoneGrace.TotalSeconds));
        }
    }

    static TimeSpan? TwiceOrNever(int ttlSeconds) => ttlSeconds > 0 ? TimeSpan.FromSeconds(2.0 * ttlSeconds) : null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // silos started together sweep at different times
        await Task.Delay(Period * Random.Shared.NextDouble(), stoppingToken);
        using var timer = new PeriodicTimer(Period);
        do
        {
            try
            {
                await SweepAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                // the store is down: /health says so, and the next sweep catches up
                LogSweepFailed(logger, e.Message);
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Deletes what has expired; returns the conversations, responses and emptied rows deleted.</summary>
    internal async Task<(long Conversations, long Responses, long Emptied)> SweepAsync(CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(silo.Postgres);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(Sweep, connection);
        command.Parameters.AddWithValue("service", silo.ServiceId);
        command.Parameters.AddWithValue("conversation", ConversationGrain.StateName);
        command.Parameters.AddWithValue("response", ResponseGrain.StateName);
        command.Parameters.AddWithValue("grace", TombstoneGrace);
        // a null age compares as unknown: that kind is never swept
        command.Parameters.Add(new NpgsqlParameter("conversation_age", NpgsqlDbType.Interval)
        { Value = (object?)_conversationAge ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("response_age", NpgsqlDbType.Interval)
        { Value = (object?)_responseAge ?? DBNull.Value });
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var swept = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        if (swept is (0, 0, 0)) LogNothingSwept(logger);
        else LogSwept(logger, swept.Item1, swept.Item2, swept.Item3);
        return swept;
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "expired rows deleted from the store: {Conversations} conversations, {Responses} responses, " +
            "{Emptied} emptied by a reset or expiry")]
    static partial void LogSwept(ILogger logger, long conversations, long responses, long emptied);

    [LoggerMessage(Level = LogLevel.Debug, Message = "store sweep: nothing had expired")]
    static partial void LogNothingSwept(ILogger logger);

    [LoggerMessage(Level = LogLevel.Debug, Message = "store sweep failed: {Reason}")]
    static partial void LogSweepFailed(ILogger logger, string reason);
}
