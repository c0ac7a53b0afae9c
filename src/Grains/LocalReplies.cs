using System.Collections.Concurrent;
using System.Threading.Channels;
using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>
/// A reply's deltas handed from the BatchGrain to a reader on the same silo without Orleans in between. The reader
/// creates it and registers it in <see cref="LocalReplies"/>; the BatchGrain that admits the sequence writes the
/// channel and sets <see cref="Cancel"/>.
/// </summary>
public sealed class LocalReply
{
    public Channel<GenerationDelta> Channel { get; } =
        System.Threading.Channels.Channel.CreateUnbounded<GenerationDelta>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>Flags the sequence for the next tick to finish (safe from any thread); a no-op until it is
    /// admitted.</summary>
    public Action Cancel { get; internal set; } = () => { };
}

/// <summary>
/// The silo's registry of <see cref="LocalReply"/>s. A conversation and its device's BatchGrain are always on the
/// same silo (the BatchGrain's key names it), so the grain stream between them (two messages and two activation-queue
/// turns per token, and the BatchGrain's queue shared with its tick loop) is not needed. Measured on two cores, the
/// threads other than the engine's took under 1 % of the CPU either way: this keeps it so as the load grows.
/// </summary>
public sealed class LocalReplies
{
    readonly ConcurrentDictionary<Guid, LocalReply> _replies = new();

    public (Guid Key, LocalReply Reply) Open()
    {
        var key = Guid.NewGuid();
        var reply = new LocalReply();
        _replies[key] = reply;
        return (key, reply);
    }

    public bool TryGet(Guid key, out LocalReply reply) => _replies.TryGetValue(key, out reply!);

    public void Close(Guid key) => _replies.TryRemove(key, out _);
}
