using Orleans.Configuration;
using Orleans.Runtime.Messaging;
using Orleans.Serialization;
using Weft.Abstractions;
using Weft.Grains;

namespace Weft.Silo;

/// <summary>
/// Failover: how fast a dead silo is declared dead, and how the API edge tells a failure of the cluster (a silo died,
/// a call to it timed out) from a failure of the server, so that the client gets 503 with Retry-After rather than 500.
/// </summary>
static class ClusterFailover
{
    /// <summary>How many probes of a silo in a row may fail before it is suspected: 2 rather than Orleans' 3, so that
    /// a silo is declared dead after two probe periods of a third of the detection time each.</summary>
    const int MissedProbes = 2;

    /// <summary>
    /// Tunes Orleans' membership probes so that a silo that stopped answering is declared dead within
    /// <see cref="SiloOptions.FailureDetectionSeconds"/>: probes every third of it, with a timeout capped at that
    /// third (Orleans' adaptive timeout would otherwise grow to 20 s), two misses to suspect. With two silos a single
    /// vote is enough (Orleans needs at most half of the active silos), so the survivor declares its peer dead alone.
    /// </summary>
    public static ISiloBuilder UseWeftFailover(this ISiloBuilder silo, SiloOptions options)
    {
        var probe = TimeSpan.FromSeconds(options.FailureDetectionSeconds / (MissedProbes + 1));
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = probe;
            o.MinProbeTimeout = probe / 2;
            o.MaxProbeTimeout = probe;
            o.NumMissedProbesLimit = MissedProbes;
        });
        return silo;
    }

    /// <summary>Seconds a client should wait before resending after a failure of the cluster: by then a dead silo has
    /// been declared dead and its conversations activate on a survivor.</summary>
    public static int RetryAfter(SiloOptions options) => (int)Math.Ceiling(options.FailureDetectionSeconds);

    /// <summary>
    /// Whether the exception (or one it wraps) says that a silo could not be reached or died while serving the call:
    /// the call may be resent once membership has caught up. Names are compared as well as types because an exception
    /// that crossed Orleans' serializer may arrive as a fallback that keeps only its type's name.
    /// </summary>
    public static bool IsSiloLoss(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            // an enumeration aborted: the grain streaming the reply was deactivated (its silo was declared dead)
            if (inner is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException
                or ConnectionFailedException or OrleansLifecycleCanceledException or EnumerationAbortedException)
                return true;
            string name = (inner is UnavailableExceptionFallbackException fallback ? fallback.ExceptionType
                : inner.GetType().FullName) ?? "";
            if (LossNames.Contains(name)) return true;
            // an activation placed on a silo that membership has just declared dead (the edge itself, cut off by a
            // partition): Orleans' grain directory says so only in a plain OrleansException's words
            if (inner is OrleansException && inner.Message.Contains(" on invalid silo: ", StringComparison.Ordinal))
                return true;
            if (inner is AggregateException { InnerExceptions.Count: > 1 } many)
                return many.InnerExceptions.Any(IsSiloLoss);
        }
        return false;
    }

    static readonly HashSet<string> LossNames =
    [
        "Orleans.Runtime.SiloUnavailableException", "Orleans.Runtime.OrleansMessageRejectionException",
        "Orleans.Runtime.Messaging.ConnectionFailedException", "Orleans.Runtime.ClientNotAvailableException",
        "Orleans.Runtime.GatewayTooBusyException", "Orleans.Runtime.OrleansLifecycleCanceledException",
        "System.TimeoutException",
    ];

    public static ApiException Unavailable(SiloOptions options) =>
        new(StatusCodes.Status503ServiceUnavailable, "service_unavailable", "silo_unavailable",
            "a silo of the cluster stopped answering while serving this request; resend it (with the same X-Turn-Id " +
            "header, a turn is applied once)")
        { RetryAfter = RetryAfter(options) };

    /// <summary>
    /// Opens a turn's reply and reads its first delta, resending the turn while the cluster is failing over: a call
    /// to a conversation whose silo just died fails until that silo is declared dead, and then activates the
    /// conversation on a survivor. Nothing of the reply has been sent yet, and the turn id makes the resend
    /// idempotent, so the client sees one reply, a little late. Past twice the detection time the failure is the
    /// client's 503.
    /// </summary>
    public static async Task<IAsyncEnumerator<TurnDelta>> OpenAsync(IConversationGrain conversation, TurnRequest turn,
        SiloOptions options, SiloAddress edge, CancellationToken ct)
    {
        // the conversation ends the turn if this silo dies while the turn streams (else it holds the conversation for
        // up to a minute)
        TurnCallers.MarkCaller(edge);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2 * options.FailureDetectionSeconds);
        var pause = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            var deltas = conversation.SendAsync(turn, ct).GetAsyncEnumerator(ct);
            try
            {
                if (!await deltas.MoveNextAsync())
                    throw new InvalidOperationException("the conversation ended the turn without a reply");
                return deltas;
            }
            catch (Exception e) when (IsSiloLoss(e) && !ct.IsCancellationRequested && DateTime.UtcNow < deadline)
            {
                await DisposeQuietlyAsync(deltas);
            }
            catch
            {
                await DisposeQuietlyAsync(deltas);
                throw;
            }
            await Task.Delay(pause, ct);
            // doubling from 100 ms: a few tries inside the detection window, not a storm at the survivor
            pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, TimeSpan.TicksPerSecond));
        }
    }

    /// <summary>Ending the enumeration tells the grain's silo; when that silo is gone, telling it fails too.</summary>
    public static async Task DisposeQuietlyAsync(IAsyncEnumerator<TurnDelta> deltas)
    {
        try
        {
            await deltas.DisposeAsync();
        }
        catch (Exception e) when (IsSiloLoss(e))
        {
            // the grain's silo is gone, and with it whatever the enumeration held there
        }
    }
}
