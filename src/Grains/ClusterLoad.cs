using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>
/// Each silo's view of every silo's free KV capacity, refreshed in the background so placement decisions read a cache
/// instead of calling every silo.
/// </summary>
public sealed partial class ClusterLoad(IClusterMembershipService membership, IClusterManifestProvider manifests,
    IGrainFactory grains, ILogger<ClusterLoad> logger) : BackgroundService
{
    readonly ConcurrentDictionary<SiloAddress, IReadOnlyList<DeviceLoad>> _loads = new();
    /// <summary>Placements made here since the silo's last refresh, so a burst does not all land on one silo.</summary>
    readonly ConcurrentDictionary<SiloAddress, int> _placedSinceRefresh = new();

    public static readonly TimeSpan Period = TimeSpan.FromSeconds(2);
    /// <summary>KV tokens a new conversation is assumed to take until the next refresh shows what it really
    /// took.</summary>
    const int PlacementEstimate = 512;

    /// <summary>
    /// Free KV tokens of a silo's least loaded device less what was placed there since, 0 for a silo without a ready
    /// device. A silo not yet heard from (it just joined, or its refresh timed out under load) counts as free as the
    /// freest known silo, so new capacity is used at once while a burst still spreads: counting it as unbounded
    /// sent every placement of a burst to it.
    /// </summary>
    public long FreeTokens(SiloAddress silo)
    {
        long free = _loads.TryGetValue(silo, out var loads) ? Free(loads)
            : _loads.Values.Select(Free).DefaultIfEmpty(0).Max();
        return free - (long)_placedSinceRefresh.GetValueOrDefault(silo) * PlacementEstimate;
    }

    static long Free(IReadOnlyList<DeviceLoad> loads) => loads.Count > 0 ? loads.Max(l => l.FreeKvTokens) : 0;

    public void Placed(SiloAddress silo) => _placedSinceRefresh.AddOrUpdate(silo, 1, (_, n) => n + 1);

    /// <summary>Every period, and at once when a silo joins or leaves or its grain manifest arrives, so a new silo
    /// (perhaps still loading its model) does not count as empty for a whole period.</summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(PeriodicallyAsync(stoppingToken), OnChangeAsync(membership.MembershipUpdates, stoppingToken),
            OnChangeAsync(manifests.Updates, stoppingToken));

    async Task PeriodicallyAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(Period);
        do await RefreshAllAsync(ct);
        while (await timer.WaitForNextTickAsync(ct));
    }

    async Task OnChangeAsync<T>(IAsyncEnumerable<T> updates, CancellationToken ct)
    {
        await foreach (var _ in updates.WithCancellation(ct)) await RefreshAllAsync(ct);
    }

    Task RefreshAllAsync(CancellationToken ct)
    {
        var active = membership.CurrentSnapshot.Members.Values.Where(m => m.Status == SiloStatus.Active)
            .Select(m => m.SiloAddress).ToList();
        foreach (var gone in _loads.Keys.Except(active)) _loads.TryRemove(gone, out _);
        // A silo that has just joined is active before its grain manifest reaches this one, and until then placement
        // refuses its load grain: a call then cost two error-level lines of Orleans' (the placement's last retry and
        // the message it could not address) for every join. Its load waits for the manifest.
        var known = manifests.Current.Silos;
        return Task.WhenAll(active.Where(known.ContainsKey).Select(silo => RefreshAsync(silo, ct)));
    }

    async Task RefreshAsync(SiloAddress silo, CancellationToken ct)
    {
        try
        {
            _loads[silo] = await grains.GetGrain<ISiloLoadGrain>(SiloLoadGrain.Key(silo)).GetLoadAsync()
                .WaitAsync(Period, ct);
            _placedSinceRefresh.TryRemove(silo, out _);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            LogRefreshFailed(logger, silo, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "load of silo {Silo} not refreshed: {Reason}")]
    static partial void LogRefreshFailed(ILogger logger, SiloAddress silo, string reason);
}
