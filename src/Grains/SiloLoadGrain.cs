using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>Reports the load of this silo's devices (one BatchGrain each).</summary>
[DevicePlacement]
public sealed class SiloLoadGrain(ModelHost host) : Grain, ISiloLoadGrain
{
    public async Task<IReadOnlyList<DeviceLoad>> GetLoadAsync()
    {
        if (host.Status != ModelStatus.Ready) return [];
        string silo = this.GetPrimaryKeyString()[..this.GetPrimaryKeyString().LastIndexOf('/')];
        var loads = await Task.WhenAll(Enumerable.Range(0, host.Engines.Count)
            .Select(d => GrainFactory.GetGrain<IBatchGrain>($"{silo}/{d}").GetStatsAsync()));
        return loads.Select(s => s.Load).ToArray();
    }

    public static string Key(Orleans.Runtime.SiloAddress silo) => $"{silo.ToParsableString()}/load";
}
