using Weft.Scheduling;

namespace Weft.Scheduling;

public enum SequenceStatus { Waiting, Running, Finished }

public enum FinishReason { None, Stop, Length, Cancelled, Error }

/// <summary>
/// One sequence's bookkeeping: its tokens (prompt then generated), how many of them the KV cache already holds, and
/// the KV blocks that hold them. Plain data shared by the scheduler (which mutates it between ticks) and the engine
/// (which reads it during a tick).
/// </summary>
public sealed class Sequence(long id, IReadOnlyList<int> promptTokens, SamplingParams sampling)
{
    public long Id { get; } = id;
    public List<int> TokenIds { get; } = [.. promptTokens];
    public int NumPromptTokens { get; private set; } = promptTokens.Count;
    /// <summary>Tokens whose K/V are in the cache; the next forward pass starts at this position.</summary>
    public int NumComputedTokens { get; set; }
    /// <summary>Prompt tokens the cache already held when this turn was admitted (reported as cached tokens).</summary>
    public int NumCachedTokens { get; set; }
    public List<int> BlockTable { get; } = [];
    public SequenceStatus Status { get; set; } = SequenceStatus.Waiting;
    public FinishReason FinishReason { get; set; }
    public string? Error { get; set; }
    public SamplingParams Sampling { get; private set; } = sampling;
    /// <summary>Lower runs first; preemption picks the highest value (then the newest).</summary>
    public int Priority { get; set; }
    /// <summary>Monotonic admission order, used for FIFO and "newest first" preemption.</summary>
    public long ArrivalOrder { get; set; }
    /// <summary>Set from any thread; the next tick finishes the sequence as cancelled and frees its blocks.</summary>
    public bool CancelRequested { get; set; }
    /// <summary>The reply ended by the caller's rule (a stop string): the next tick finishes it as stopped, blocks kept as
    /// for any finished turn.</summary>
    public bool StopRequested { get; set; }
    public int NumPreemptions { get; set; }
    /// <summary>
    /// Keep the KV blocks when this turn finishes (parked) so the next turn computes only its new tokens; parked blocks
    /// are evicted, least recently used first, when memory is needed.
    /// </summary>
    public bool KeepCache { get; set; }

    public int NumTokens => TokenIds.Count;
    public int NumCompletionTokens => NumTokens - NumPromptTokens;
    public int LastToken => TokenIds[^1];
    public bool IsFinished => Status == SequenceStatus.Finished;

    /// <summary>Seed of this turn's counter-based RNG; a draw depends only on (seed, completion index), so preemption and batching never change it.</summary>
    public ulong Seed { get; private set; } = sampling.Seed ?? (ulong)Random.Shared.NextInt64();

    /// <summary>
    /// Starts a new turn on this sequence: the whole conversation so far is <paramref name="tokens"/>. The KV cache is
    /// kept for the longest prefix shared with what was computed; everything after it will be computed again.
    /// Returns the number of prompt tokens whose K/V can be reused. <see cref="Scheduler.Add"/> then drops the blocks
    /// past that prefix (<see cref="BlockManager.TruncateTo"/>), which may round it down to a block boundary.
    /// </summary>
    public int StartTurn(IReadOnlyList<int> tokens, SamplingParams sampling)
    {
        if (Status != SequenceStatus.Finished)
            throw new InvalidOperationException($"Sequence {Id} is {Status}; a new turn can start only after the current one finished.");
        int common = 0;
        int limit = Math.Min(NumComputedTokens, tokens.Count - 1); // at least one token must be computed to produce logits
        while (common < limit && TokenIds[common] == tokens[common]) common++;
        TokenIds.Clear();
        TokenIds.AddRange(tokens);
        NumComputedTokens = common;
        NumCachedTokens = common;
        NumPromptTokens = tokens.Count;
        Sampling = sampling;
        Seed = sampling.Seed ?? (ulong)Random.Shared.NextInt64();
        Status = SequenceStatus.Waiting;
        FinishReason = FinishReason.None;
        Error = null;
        CancelRequested = StopRequested = false;
        return common;
    }

    public override string ToString() => $"seq {Id} ({Status}, {NumComputedTokens}/{NumTokens} computed, {BlockTable.Count} blocks)";
}
