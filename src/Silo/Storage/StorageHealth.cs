using System.Net.Sockets;
using Npgsql;
using Orleans.Serialization;
using StackExchange.Redis;

namespace Weft.Silo.Storage;

/// <summary>
/// Whether the cluster's store answers, for /health, and whether a failed request failed because it did not (a 503
/// the client may retry rather than a 500).
/// </summary>
sealed class StorageHealth(SiloOptions options) : IDisposable
{
    /// <summary>A probe at most this often: a load balancer polling /health must not become the database's
    /// load.</summary>
    static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(1);
    /// <summary>Below the usual 5 s health-check timeout of load balancers and Kubernetes probes.</summary>
    static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    readonly Lock _lock = new();
    (DateTime At, Task<string?> Probe) _last = (DateTime.MinValue, Task.FromResult<string?>(null));
    /// <summary>Redis: a connection of the probe's own, kept (StackExchange.Redis reconnects it by itself), opened at
    /// the first probe.</summary>
    ConnectionMultiplexer? _redis;

    /// <summary>Null while the store answers (or there is none to ask); otherwise why not, in one line. Concurrent
    /// callers share one probe.</summary>
    public Task<string?> ProblemAsync()
    {
        if (options.Postgres is null && options.Redis is null) return Task.FromResult<string?>(null);
        lock (_lock)
        {
            if (DateTime.UtcNow - _last.At >= CacheFor)
                _last = (DateTime.UtcNow, options.Postgres is { } postgres ? ProbeAsync(postgres) : ProbeRedisAsync());
            return _last.Probe;
        }
    }

    async Task<string?> ProbeRedisAsync()
    {
        try
        {
            _redis ??= await ConnectRedisAsync();
            await _redis.GetDatabase().PingAsync().WaitAsync(ProbeTimeout);
            return null;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return e is TimeoutException ? $"storage did not answer within {ProbeTimeout.TotalSeconds} s"
                : $"storage unreachable: {e.Message}";
        }
    }

    Task<ConnectionMultiplexer> ConnectRedisAsync()
    {
        var configuration = ConfigurationOptions.Parse(options.Redis!);
        // opened while Redis is down too (the probe says so), and back within half a second of Redis: the default
        // exponential reconnect waits up to tens of seconds
        configuration.AbortOnConnectFail = false;
        configuration.ReconnectRetryPolicy = new LinearRetry(500);
        configuration.ConnectTimeout = (int)ProbeTimeout.TotalMilliseconds;
        return ConnectionMultiplexer.ConnectAsync(configuration);
    }

    public void Dispose() => _redis?.Dispose();

    static async Task<string?> ProbeAsync(string connectionString)
    {
        using var timeout = new CancellationTokenSource(ProbeTimeout);
        try
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync(timeout.Token);
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(timeout.Token);
            return null;
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            return e is OperationCanceledException ? $"storage did not answer within {ProbeTimeout.TotalSeconds} s"
                : $"storage unreachable: {e.Message}";
        }
    }

    /// <summary>
    /// Whether the exception (or one it wraps) comes from the store being unreachable. A grain's exception crosses
    /// Orleans' serializer, which turns a type it cannot copy into a fallback that keeps only the type's name, so
    /// names are compared rather than types.
    /// </summary>
    public static bool IsUnreachable(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            // a timeout is Orleans' own face of a store that stopped answering mid-call
            if (inner is SocketException or NpgsqlException or TimeoutException) return true;
            string name = (inner is UnavailableExceptionFallbackException fallback ? fallback.ExceptionType
                : inner.GetType().FullName) ?? "";
            if (name.StartsWith("Npgsql.", StringComparison.Ordinal)
                || name.StartsWith("StackExchange.Redis.RedisConnection", StringComparison.Ordinal)
                || name.StartsWith("StackExchange.Redis.RedisTimeout", StringComparison.Ordinal)
                || name == typeof(SocketException).FullName)
                return true;
            if (inner is AggregateException { InnerExceptions.Count: > 1 } many)
                return many.InnerExceptions.Any(IsUnreachable);
        }
        return false;
    }
}
