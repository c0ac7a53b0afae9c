using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Weft.Grains;

/// <summary>
/// One information line for each silo that joins or leaves the cluster, as seen by this silo. Joining and leaving are
/// expected in a cluster that scales; Orleans' own messages about them (failed probes of a silo that went away, retried
/// placements) stay at their levels, and this line says what happened without a stack trace.
/// </summary>
sealed partial class MembershipLog(IClusterMembershipService membership, ILocalSiloDetails local,
    ILogger<MembershipLog> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var known = new Dictionary<SiloAddress, SiloStatus>();
        bool first = true;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                foreach (var (address, member) in snapshot.Members)
                {
                    var before = known.GetValueOrDefault(address, SiloStatus.None);
                    if (before == member.Status) continue;
                    known[address] = member.Status;
                    // the first snapshot is the cluster as found, the table's dead entries of the past included
                    if (first || address.Equals(local.SiloAddress)) continue;
                    if (member.Status == SiloStatus.Active) LogJoined(logger, address, member.Name);
                    else if (member.Status == SiloStatus.Dead)
                        LogLeft(logger, address, member.Name,
                            before is SiloStatus.ShuttingDown or SiloStatus.Stopping ? "shut down" : "declared dead");
                }
                first = false;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "silo {Silo} ({Name}) joined the cluster")]
    static partial void LogJoined(ILogger logger, SiloAddress silo, string name);

    [LoggerMessage(Level = LogLevel.Information, Message = "silo {Silo} ({Name}) left the cluster: {How}")]
    static partial void LogLeft(ILogger logger, SiloAddress silo, string name, string how);
}
