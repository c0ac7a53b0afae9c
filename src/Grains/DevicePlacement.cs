using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace Weft.Grains;

/// <summary>Places a grain on the silo named in its key ("{silo}/..."): a device's loop runs where the device
/// is.</summary>
public sealed class DevicePlacementStrategy : PlacementStrategy
{
    internal static readonly DevicePlacementStrategy Instance = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class DevicePlacementAttribute() : PlacementAttribute(DevicePlacementStrategy.Instance);

sealed class DevicePlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target,
        IPlacementContext context)
    {
        string key = target.GrainIdentity.Key.ToString()!;
        int slash = key.LastIndexOf('/');
        var silo = slash > 0 ? SiloAddress.FromParsableString(key[..slash])
            : throw new ArgumentException($"'{key}' does not name a silo");
        if (!context.GetCompatibleSilos(target).Contains(silo))
            // a silo loss to the API edge (503 and Retry-After): the device's silo is gone or going
            throw new SiloUnavailableException($"silo {silo} of device grain {target.GrainIdentity} is not active");
        return Task.FromResult(silo);
    }
}
