using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>
/// Per-tenant admission on this silo: turns in progress and their prompt tokens. A tenant over either limit is
/// refused (HTTP 429) rather than queued, so one tenant cannot fill the scheduler queue that every tenant shares.
/// </summary>
public sealed class TenantLimits(IOptions<ModelHostOptions> options)
{
    sealed class Usage
    {
        public int Requests;
        public long Tokens;
    }

    readonly ConcurrentDictionary<string, Usage> _usage = new(StringComparer.Ordinal);
    readonly int? _maxRequests = options.Value.TenantMaxRequests;
    readonly int? _maxTokens = options.Value.TenantMaxQueuedTokens;

    /// <summary>Counts a turn of <paramref name="tenant"/> until the returned admission is disposed.</summary>
    /// <exception cref="WeftException"><see cref="WeftErrorCode.TenantLimit"/>: the tenant is at a limit.</exception>
    public IDisposable Admit(string tenant, int promptTokens)
    {
        var usage = _usage.GetOrAdd(tenant, _ => new Usage());
        lock (usage)
        {
            if (usage.Requests >= _maxRequests)
                throw new WeftException(WeftErrorCode.TenantLimit,
                    $"this API key already has {usage.Requests} requests in progress, its limit; retry when one ends");
            // a lone turn is always admitted: the context length bounds it, and a limit must not make it impossible
            if (usage.Requests > 0 && usage.Tokens + promptTokens > _maxTokens)
                throw new WeftException(WeftErrorCode.TenantLimit,
                    $"this API key's requests in progress hold {usage.Tokens} prompt tokens; {promptTokens} more " +
                    $"would pass its limit of {_maxTokens}; retry when one ends");
            usage.Requests++;
            usage.Tokens += promptTokens;
        }
        return new Admission(usage, promptTokens);
    }

    sealed class Admission(Usage usage, int tokens) : IDisposable
    {
        bool _disposed;

        public void Dispose()
        {
            lock (usage)
            {
                if (_disposed) return;
                _disposed = true;
                usage.Requests--;
                usage.Tokens -= tokens;
            }
        }
    }
}
