using System.Runtime.InteropServices;

namespace Weft.Scheduling;

public enum SequenceStatus { Waiting, Running, Finished }

public enum FinishReason { None, Stop, Length, Cancelled, Error }

/// <summary>
/// One sequence's bookkeeping: its tokens (prompt then generated), how many of them the KV cache already holds, and
/// the KV blocks that hold them. Only the <see cref="Scheduler"/> and the <see cref="BlockManager"/> change it (between
/// ticks); the engine and the grain read it.
/// </summary>
public sealed class Sequence(
    long id, IReadOnlyList<int> promptTokens, SamplingParams sampling, int priority = 0, bool keepCache = false)
{
    readonly List<int> _tokenIds = [.. promptTokens];
    readonly List<int> _blockTable = [];
    readonly List<int> _windowBlockTable = [];
    // Written from any thread (a cancellation callback) and read by the scheduler's thread at the next tick.
    volatile bool _cancelRequested, _stopRequested;

    public long Id { get; } = id;
    public IReadOnlyList<int> TokenIds => _tokenIds;
    public int NumPromptTokens { get; private set; } = promptTokens.Count;
    /// <summary>Tokens whose K/V are in the cache; the next forward pass starts at this position.</summary>
    public int NumComputedTokens { get; internal set; }
    /// <summary>Prompt tokens the cache already held when this turn was admitted (reported as cached tokens).</summary>
    public int NumCachedTokens { get; internal set; }
    /// <summary>The KV blocks holding this sequence's tokens, in position order.</summary>
    public IReadOnlyList<int> BlockTable => _blockTable;
    /// <summary>The KV blocks of the sliding-window layers, indexed like <see cref="BlockTable"/>; entries before the
    /// window point at <see cref="WindowBlockManager.ZeroBlock"/>. Empty without a <see cref="WindowBlockManager"/>.
    /// </summary>
    public IReadOnlyList<int> WindowBlockTable => _windowBlockTable;
    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;
    public FinishReason FinishReason { get; private set; }
    public string? Error { get; private set; }
    public SamplingParams Sampling { get; private set; } = sampling;
    /// <summary>Lower runs first; preemption picks the highest value (then the newest). Fixed for a turn.</summary>
    public int Priority { get; private set; } = priority;
    /// <summary>Monotonic admission order, used for FIFO and "newest first" preemption.</summary>
    public long ArrivalOrder { get; internal set; }
    /// <summary>Cancellation was requested (<see cref="Scheduler.Cancel(Sequence)"/>): the next tick finishes the
    /// sequence as cancelled and frees its blocks.</summary>
    public bool CancelRequested => _cancelRequested;
    /// <summary>The reply ended by the caller's rule (a stop string, <see cref="Scheduler.Stop"/>): the next tick
    /// finishes it as stopped, blocks kept as for any finished turn.</summary>
    public bool StopRequested => _stopRequested;
    public int NumPreemptions { get; internal set; }
    /// <summary>
    /// Keep the KV blocks when this turn finishes (parked) so the next turn computes only its new tokens; parked blocks
    /// are evicted, least recently used first, when memory is needed.
    /// </summary>
    public bool KeepCache { get; private set; } = keepCache;
    /// <summary>Seeds the prefix-cache hashes of this sequence's blocks: only sequences with the same salt share cached
    /// blocks (one salt per tenant). 0 is the unsalted cache.</summary>
    public ulong CacheSalt { get; init; }

    public int NumTokens => _tokenIds.Count;
    public int NumCompletionTokens => NumTokens - NumPromptTokens;
    public int LastToken => _tokenIds[^1];
    public bool IsFinished => Status == SequenceStatus.Finished;

    /// <summary>Seed of this turn's counter-based RNG; a draw depends only on (seed, completion index), so preemption
    /// and batching never change it.</summary>
    public ulong Seed { get; private set; } = sampling.Seed ?? (ulong)Random.Shared.NextInt64();

    /// <summary>The running sequence of the same prompt whose K/V this one's first admission copies rather than
    /// computes (<see cref="Scheduler.AddFork"/>); cleared once admitted.</summary>
    internal Sequence? ForkOf { get; set; }

    /// <summary>The block table the <see cref="BlockManager"/> extends and releases.</summary>
    internal List<int> Blocks => _blockTable;

    /// <summary>The window block table the <see cref="WindowBlockManager"/> extends and releases.</summary>
    internal List<int> WindowBlocks => _windowBlockTable;

    internal ReadOnlySpan<int> TokenSpan => CollectionsMarshal.AsSpan(_tokenIds);

    internal void RequestCancel() => _cancelRequested = true;

    internal void RequestStop() => _stopRequested = true;

    internal void DropCacheOnFinish() => KeepCache = false;

    internal void AppendToken(int token) => _tokenIds.Add(token);

    internal void Finish(FinishReason reason, string? error = null)
    {
        Status = SequenceStatus.Finished;
        FinishReason = reason;
        Error = error;
    }

    /// <summary>
    /// Starts a new turn on this sequence: the whole conversation so far is <paramref name="tokens"/>. The KV cache is
    /// kept for the longest prefix shared with what was computed; everything after it will be computed again.
    /// Returns the number of prompt tokens whose K/V can be reused.
    /// </summary>
    internal int StartTurn(IReadOnlyList<int> tokens, SamplingParams sampling, int priority, bool keepCache)
    {
        if (Status != SequenceStatus.Finished)
            throw new InvalidOperationException(
                $"Sequence {Id} is {Status}; a new turn can start only after the current one finished.");
        int common = 0;
        int limit = Math.Min(NumComputedTokens, tokens.Count - 1); // at least one token must be computed for logits
        while (common < limit && _tokenIds[common] == tokens[common]) common++;
        _tokenIds.Clear();
        _tokenIds.AddRange(tokens);
        NumComputedTokens = common;
        NumCachedTokens = common;
        NumPromptTokens = tokens.Count;
        Sampling = sampling;
        Seed = sampling.Seed ?? (ulong)Random.Shared.NextInt64();
        Priority = priority;
        KeepCache = keepCache;
        Status = SequenceStatus.Waiting;
        FinishReason = FinishReason.None;
        Error = null;
        _cancelRequested = _stopRequested = false;
        return common;
    }

    public override string ToString() =>
        $"seq {Id} ({Status}, {NumComputedTokens}/{NumTokens} computed, {BlockTable.Count} blocks)";
}
