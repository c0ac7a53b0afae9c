using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace Weft.Grains;

/// <summary>Places a conversation on the silo with the most free KV capacity; it stays there for its
/// lifetime.</summary>
public sealed class KvCapacityPlacementStrategy : PlacementStrategy
{
    internal static readonly KvCapacityPlacementStrategy Instance = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class KvCapacityPlacementAttribute() : PlacementAttribute(KvCapacityPlacementStrategy.Instance);

sealed class KvCapacityPlacementDirector(ClusterLoad load) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target,
        IPlacementContext context)
    {
        var silos = context.GetCompatibleSilos(target);
        // ties go to a random silo; one still loading its model reports no free capacity once heard from
        var best = silos
            .Select(s => (Silo: s, Free: load.FreeTokens(s), Tiebreak: Random.Shared.Next()))
            .OrderByDescending(x => x.Free).ThenBy(x => x.Tiebreak)
            .First().Silo;
        load.Placed(best);
        return Task.FromResult(best);
    }
}
