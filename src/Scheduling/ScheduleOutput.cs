namespace Weft.Scheduling;

/// <summary>
/// One sequence's share of a tick: compute its tokens [NumComputedTokens, NumComputedTokens + NumNewTokens) and, when
/// <paramref name="NeedsToken"/> (the chunk reaches its last token), sample one token from the last row's logits.
/// </summary>
public readonly record struct ScheduledSequence(Sequence Sequence, int NumNewTokens, bool NeedsToken);

/// <summary>Copy KV block <paramref name="Source"/> into <paramref name="Destination"/> (every layer, K and V) before
/// the tick's forward pass: a forked sequence's own copy of the partial block it shares with its parent.</summary>
public readonly record struct BlockCopy(int Source, int Destination);

/// <summary>What one <see cref="Scheduler.Schedule"/> decided; hand it back to <see cref="Scheduler.Update"/> after the
/// forward pass.</summary>
public sealed class ScheduleOutput
{
    internal ScheduleOutput(List<ScheduledSequence> scheduled, List<Sequence> preempted, List<Sequence> finished,
        List<BlockCopy> blockCopies)
    {
        Scheduled = scheduled;
        BlockCopies = blockCopies;
        Preempted = preempted;
        Finished = finished;
        foreach (var s in scheduled)
        {
            NumBatchedTokens += s.NumNewTokens;
            if (s.NeedsToken) NumTokensToSample++;
        }
    }

    /// <summary>The batch, in order: running sequences first, then newly admitted ones.</summary>
    public IReadOnlyList<ScheduledSequence> Scheduled { get; }
    /// <summary>Running sequences whose blocks were taken back this tick; they wait again and will recompute.</summary>
    public IReadOnlyList<Sequence> Preempted { get; }
    /// <summary>Sequences finished while scheduling (cancelled); <see cref="Scheduler.Update"/> returns the
    /// others.</summary>
    public IReadOnlyList<Sequence> Finished { get; }
    /// <summary>Block copies to make before the forward pass, which may then write the source blocks: at most one
    /// per newly admitted sequence.</summary>
    public IReadOnlyList<BlockCopy> BlockCopies { get; }
    public int NumBatchedTokens { get; }
    /// <summary>Entries with <see cref="ScheduledSequence.NeedsToken"/>: the number of tokens
    /// <see cref="Scheduler.Update"/> expects.</summary>
    public int NumTokensToSample { get; }
    public bool IsEmpty => Scheduled.Count == 0;
}
