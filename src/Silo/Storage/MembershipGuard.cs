using System.Diagnostics;
using Npgsql;
using Orleans.Clustering.Redis;
using StackExchange.Redis;

namespace Weft.Silo.Storage;

/// <summary>
/// Re-forms the cluster when the store lost its membership table (PostgreSQL restarted empty, restored from an older
/// backup, tables dropped; Redis restarted without persistence, flushed, or its key expired). Orleans never writes a
/// live silo's row again once it is in the table, so such a silo would go on with the members it knew while a silo
/// started afterwards found an empty table and formed a second cluster (split brain). Every active silo checks, every
/// <see cref="Period"/>, that its own row is in the table; when it is not, it reinstalls the schema if it is gone
/// (PostgreSQL) and inserts its row again, at a table version past the one it last saw (Orleans ignores a membership
/// view older than the one it holds). The survivors' rows come back within one period,
/// and a silo started after that joins them.
/// </summary>
sealed partial class MembershipGuard(
    IMembershipTable table,
    ILocalSiloDetails local,
    IClusterMembershipService membership,
    SiloOptions options,
    ILogger<MembershipGuard> logger) : BackgroundService
{
    /// <summary>Redis: a connection of the guard's own, opened when a loss is first seen.</summary>
    ConnectionMultiplexer? _redis;

    /// <summary>A read of the membership table per silo every 2 s: a few rows, and a silo starting within that time
    /// after the loss may still form a cluster of its own until the next check brings the others back.</summary>
    static readonly TimeSpan Period = TimeSpan.FromSeconds(2);

    readonly DateTime _started = Process.GetCurrentProcess().StartTime.ToUniversalTime();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await CheckAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                // the store is down: /health says so, and the next check tries again
                LogCheckFailed(logger, e.Message);
            }
        }
    }

    async Task CheckAsync(CancellationToken ct)
    {
        var snapshot = membership.CurrentSnapshot;
        if (!snapshot.Members.TryGetValue(local.SiloAddress, out var me) || me.Status != SiloStatus.Active) return;
        if ((await TryReadAsync(ct))?.Members.Any(m => m.Item1.SiloAddress.Equals(local.SiloAddress)) == true) return;

        await table.InitializeMembershipTableAsync(tryInitTableVersion: true, ct);
        await RaiseVersionAsync(snapshot.Version.Value, ct);
        var data = await table.ReadAllAsync(ct);
        if (data.Members.Any(m => m.Item1.SiloAddress.Equals(local.SiloAddress))) return;
        var entry = new MembershipEntry
        {
            SiloAddress = local.SiloAddress,
            HostName = local.DnsHostName,
            SiloName = local.Name,
            Status = SiloStatus.Active,
            ProxyPort = local.GatewayAddress?.Endpoint.Port ?? 0,
            SuspectTimes = [],
            StartTime = _started,
            IAmAliveTime = DateTime.UtcNow,
        };
        bool inserted = await table.InsertRowAsync(entry, data.Version.Next(), ct);
        LogReinserted(logger, local.SiloAddress.ToString(), inserted);
    }

    /// <summary>The membership table, or null when its version row is gone (Orleans' ADO.NET reader then fails on the
    /// first row it expects) or the schema is (it is installed again).</summary>
    async Task<MembershipTableData?> TryReadAsync(CancellationToken ct)
    {
        try
        {
            return await table.ReadAllAsync(ct);
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or RedisClusteringException)
        {
            // Redis: the hash and its Version field went together
            return null;
        }
        catch (Exception e) when (IsMissingSchema(e))
        {
            await PostgresStore.InstallSchemaAsync(options.Postgres!, ct);
            return null;
        }
    }

    /// <summary>The empty table's version starts at 0 again; it is raised to the version this silo last saw.</summary>
    async Task RaiseVersionAsync(long seen, CancellationToken ct)
    {
        if (options.Redis is { } redis)
        {
            // Orleans' Redis table: one hash per cluster (its default key), "Version" (a decimal integer) and one field
            // per silo
            _redis ??= await ConnectionMultiplexer.ConnectAsync(ConfigurationOptions.Parse(redis));
            await _redis.GetDatabase().ScriptEvaluateAsync("""
                if tonumber(redis.call('HGET', KEYS[1], 'Version') or '0') < tonumber(ARGV[1]) then
                    redis.call('HSET', KEYS[1], 'Version', ARGV[1])
                end
                """, [RedisClusteringOptions.DefaultCreateRedisKey(new Orleans.Configuration.ClusterOptions
                {
                    ServiceId = options.ServiceId,
                    ClusterId = options.ClusterId,
                })],
                [Math.Min(seen, int.MaxValue)]).WaitAsync(ct);
            return;
        }
        await using var connection = new NpgsqlConnection(options.Postgres);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("UPDATE weft_membership_version SET version = GREATEST(version, " +
            "@seen), stamp = now() WHERE deployment_id = @cluster", connection);
        command.Parameters.AddWithValue("seen", (int)Math.Min(seen, int.MaxValue));
        command.Parameters.AddWithValue("cluster", options.ClusterId);
        await command.ExecuteNonQueryAsync(ct);
    }

    public override void Dispose()
    {
        _redis?.Dispose();
        base.Dispose();
    }

    /// <summary>PostgreSQL's "undefined table" or "undefined function": the database came back without the
    /// schema.</summary>
    static bool IsMissingSchema(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
            if (inner is PostgresException { SqlState: "42P01" or "42883" }) return true;
        return false;
    }

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "this silo's row was missing from the membership table (the store lost it); " +
            "inserted again: {Inserted} ({Silo})")]
    static partial void LogReinserted(ILogger logger, string silo, bool inserted);

    [LoggerMessage(Level = LogLevel.Debug, Message = "membership check failed: {Reason}")]
    static partial void LogCheckFailed(ILogger logger, string reason);
}
