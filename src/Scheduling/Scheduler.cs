using System.Diagnostics.CodeAnalysis;

namespace Weft.Scheduling;

/// <summary>
/// Continuous batching, one tick at a time: <see cref="Schedule"/> picks each sequence's token count for the next
/// forward pass (a decode is 1 token, a prefill is a chunk; the same path), the engine runs it, and
/// <see cref="Update"/> records the results. Running sequences come first and are never dropped from a tick unless
/// preempted; waiting ones fill the remaining budget in priority order. Single-threaded: call it from one thread (the
/// batch grain's).
/// </summary>
/// <remarks>
/// Sequences marked <see cref="Sequence.KeepCache"/> are parked when they finish: their blocks stay allocated for the
/// next turn (<see cref="StartTurn"/>, then <see cref="Add"/>) until memory is needed. Blocks are found, in
/// this order: free blocks, parked sequences' blocks (least recently used first), the kept history of queued turns,
/// and finally, for running sequences only, by preempting the lowest-priority, newest running sequence (recompute).
/// A model with sliding-window layers has a second pool, a <see cref="WindowBlockManager"/>: a sequence gets blocks in
/// both, fits only when both have room, and gives back its window blocks as its computed tokens leave the window.
/// Prefix sharing across sequences is off then (a cached prefix's window blocks would be gone).
/// </remarks>
public sealed class Scheduler
{
    static readonly Comparison<Sequence> RunningOrder = (a, b) =>
        a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : a.ArrivalOrder.CompareTo(b.ArrivalOrder);

    readonly SchedulerOptions _options;
    readonly BlockManager _blocks;
    readonly WindowBlockManager? _window;
    readonly IReadOnlySet<int> _eosTokenIds;
    readonly int _watermarkBlocks;
    readonly List<Sequence> _running = [];
    readonly SortedSet<WaitingEntry> _waiting = new(Comparer<WaitingEntry>.Create(WaitingEntry.Compare));
    readonly Dictionary<long, WaitingEntry> _waitingById = [];
    readonly LinkedList<Sequence> _parked = [];
    readonly Dictionary<Sequence, LinkedListNode<Sequence>> _parkedNodes = [];
    ScheduleOutput? _pending;
    long _tick, _arrivals, _resumes;

    public Scheduler(SchedulerOptions options, BlockManager blocks, IReadOnlySet<int> eosTokenIds,
        WindowBlockManager? window = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(eosTokenIds);
        if (options.Validate() is { } error) throw new ArgumentException(error, nameof(options));
        _options = options;
        if (window is not null && window.BlockSize != blocks.BlockSize)
            throw new ArgumentException(
                $"The window pool's blocks hold {window.BlockSize} tokens, the main pool's {blocks.BlockSize}.",
                nameof(window));
        _blocks = blocks;
        _window = window;
        _eosTokenIds = eosTokenIds;
        _watermarkBlocks = (int)(options.KvWatermark * blocks.NumBlocks);
    }

    public SchedulerOptions Options => _options;
    public int NumWaiting => _waitingById.Count;
    public int NumRunning => _running.Count;
    public int NumParked => _parked.Count;
    public bool HasWork => NumWaiting + NumRunning > 0;
    /// <summary>Fraction of KV blocks held by sequences (running, queued or parked).</summary>
    public double KvCacheUsage => 1.0 - (double)_blocks.NumFreeBlocks / _blocks.NumBlocks;
    public long TotalPreemptions { get; private set; }

    /// <summary>
    /// Queues a new sequence, or the next turn of a finished one. Throws <see cref="SchedulerException"/> when refused:
    /// retryable when the waiting queue is full, not retryable when the sequence can never fit.
    /// </summary>
    public void Add(Sequence s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Status != SequenceStatus.Waiting)
            throw new InvalidOperationException(
                $"Sequence {s.Id} is {s.Status}; a finished sequence is added again only after StartTurn.");
        if (_waitingById.ContainsKey(s.Id) || _running.Exists(r => r.Id == s.Id))
            throw new InvalidOperationException($"A sequence with id {s.Id} is already waiting or running.");
        if (s.NumTokens == 0) throw new SchedulerException($"Sequence {s.Id} has an empty prompt.", retryable: false);
        long total = (long)s.NumTokens + s.Sampling.MaxTokens;
        if (total > _options.MaxModelLen)
            throw new SchedulerException(
                $"The prompt ({s.NumTokens} tokens) plus max_tokens ({s.Sampling.MaxTokens}) exceeds the context " +
                $"length ({_options.MaxModelLen}).",
                retryable: false);
        // the last sampled token is returned, never computed, so it takes no KV slot
        long blocksNeeded = (total - 1 + _blocks.BlockSize - 1) / _blocks.BlockSize;
        if (blocksNeeded > _blocks.NumBlocks - _watermarkBlocks)
            throw new SchedulerException(
                $"The prompt plus max_tokens ({total} tokens) needs {blocksNeeded} KV blocks; the cache admits " +
                $"at most {_blocks.NumBlocks - _watermarkBlocks} for one sequence.",
                retryable: false);
        if (_window is not null)
        {
            int chunk = Math.Min(_options.PrefillChunkSize ?? int.MaxValue, _options.MaxNumBatchedTokens);
            long windowNeeded = Math.Min((total - 1 + _window.BlockSize - 1) / _window.BlockSize,
                _window.MaxLiveBlocks(chunk));
            if (windowNeeded > _window.NumBlocks - 1)
                throw new SchedulerException(
                    $"A sequence needs up to {windowNeeded} sliding-window KV blocks; the window pool has " +
                    $"{_window.NumBlocks - 1}.",
                    retryable: false);
        }
        if (_waitingById.Count >= _options.MaxWaiting)
            throw new SchedulerException(
                $"The waiting queue is full ({_options.MaxWaiting} requests); retry later.", retryable: true);

        // A parked sequence's blocks now belong to its queued turn; keep only those StartTurn found still valid.
        Unpark(s);
        TruncateTo(s, s.NumComputedTokens);
        s.ArrivalOrder = ++_arrivals;
        Enqueue(s, resumeOrder: 0);
    }

    /// <summary>
    /// Queues <paramref name="s"/>, a new sequence of the same prompt as <paramref name="parent"/> (another choice of
    /// one request), to start from the parent's K/V: when admitted it shares the parent's full blocks of the prompt,
    /// gets its own copy of the partial one (<see cref="ScheduleOutput.BlockCopies"/>) and computes only the prompt's
    /// last token, for its own logits. Where the parent no longer holds the prompt by then (preempted, cancelled), it
    /// is admitted as <see cref="Add"/> would. With a window pool it always is: its blocks have one owner each, so a
    /// fork would need copies of the whole window, not one block.
    /// </summary>
    public void AddFork(Sequence s, Sequence parent)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(parent);
        Add(s);
        if (_window is null) s.ForkOf = parent;
    }

    /// <summary>
    /// Starts the next turn of a finished sequence: the whole conversation so far is <paramref name="tokens"/>. The KV
    /// cache is kept for the longest prefix shared with what was computed; everything after it will be computed again.
    /// Returns the number of prompt tokens whose K/V can be reused. <see cref="Add"/> then drops the blocks past that
    /// prefix (<see cref="BlockManager.TruncateTo"/>), which may round it down to a block boundary, or to 0 where the
    /// window pool no longer holds that prefix's window (<see cref="WindowBlockManager.Covers"/>). Priority and
    /// keep-cache are the new turn's, as for a new <see cref="Sequence"/>.
    /// </summary>
    [SuppressMessage("Performance", "CA1822", Justification = "the scheduler's API; the sequence checks its state")]
    public int StartTurn(Sequence s, IReadOnlyList<int> tokens, SamplingParams sampling, int priority, bool keepCache)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(sampling);
        return s.StartTurn(tokens, sampling, priority, keepCache);
    }

    /// <summary>Requests cancellation of a waiting or running sequence; it finishes at the start of the next
    /// tick.</summary>
    public bool Cancel(long sequenceId)
    {
        var s = _waitingById.TryGetValue(sequenceId, out var entry)
            ? entry.Sequence : _running.Find(r => r.Id == sequenceId);
        s?.RequestCancel();
        return s is not null;
    }

    /// <summary>
    /// Requests cancellation of <paramref name="s"/>: the next tick finishes it as cancelled and frees its blocks. Safe
    /// from any thread (a cancellation callback), unlike the rest of the scheduler: it only raises a flag on the
    /// sequence.
    /// </summary>
    [SuppressMessage("Performance", "CA1822", Justification = "the scheduler's API; it may touch nothing else")]
    public void Cancel(Sequence s)
    {
        ArgumentNullException.ThrowIfNull(s);
        s.RequestCancel();
    }

    /// <summary>
    /// Ends <paramref name="s"/>'s reply by the caller's rule (a stop string): the next tick finishes it as stopped,
    /// its blocks kept as for any finished turn. Safe from any thread, like <see cref="Cancel(Sequence)"/>.
    /// </summary>
    [SuppressMessage("Performance", "CA1822", Justification = "the scheduler's API; it may touch nothing else")]
    public void Stop(Sequence s)
    {
        ArgumentNullException.ThrowIfNull(s);
        s.RequestStop();
    }

    /// <summary>
    /// The conversation of <paramref name="s"/> is gone: frees the blocks it still holds when finished and parked
    /// (no-op when it holds none), or, when it is queued or running, frees them when it finishes instead of parking
    /// them.
    /// </summary>
    public void Release(Sequence s)
    {
        ArgumentNullException.ThrowIfNull(s);
        if (s.Status == SequenceStatus.Running
            || (_waitingById.TryGetValue(s.Id, out var entry) && entry.Sequence == s))
            s.DropCacheOnFinish();
        else if (Unpark(s)) Free(s);
    }

    /// <summary>Plans one tick. Pass the result to <see cref="Update"/> (or <see cref="Fail"/>) before scheduling
    /// again.</summary>
    public ScheduleOutput Schedule()
    {
        if (_pending is not null)
            throw new InvalidOperationException("The previous tick's output has not been passed to Update or Fail.");
        _tick++;
        var finished = FinishRequested();
        var batch = new List<ScheduledSequence>();
        var preempted = new List<Sequence>();
        var copies = new List<BlockCopy>();
        int budget = ScheduleRunning(batch, preempted);
        // Never preempt to admit: a tick short of blocks for its running sequences admits nothing.
        if (preempted.Count == 0) AdmitWaiting(batch, copies, budget);
        var output = new ScheduleOutput(batch, preempted, finished, copies);
        if (!output.IsEmpty) _pending = output;
        return output;
    }

    /// <summary>
    /// Records a computed tick: <paramref name="sampledTokens"/> holds one token per entry that needed one, in batch
    /// order. Returns the sequences that finished (stop token, EOS, max_tokens or the context length).
    /// </summary>
    public IReadOnlyList<Sequence> Update(ScheduleOutput output, ReadOnlySpan<int> sampledTokens)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (output.IsEmpty) return [];
        if (sampledTokens.Length != output.NumTokensToSample)
            throw new ArgumentException(
                $"Expected {output.NumTokensToSample} sampled tokens (one per sequence that needs one), got " +
                $"{sampledTokens.Length}.", nameof(sampledTokens));
        TakePending(output);

        var finished = new List<Sequence>();
        int next = 0;
        foreach (var (s, numNewTokens, needsToken) in output.Scheduled)
        {
            s.NumComputedTokens += numNewTokens;
            if (_window is null) _blocks.CommitComputed(s);
            else _window.ReleaseOutOfWindow(s);
            if (!needsToken) continue;
            s.AppendToken(sampledTokens[next++]);
            var reason = StopReason(s);
            if (reason == FinishReason.None) continue;
            Finish(s, reason);
            finished.Add(s);
        }
        if (finished.Count > 0) _running.RemoveAll(s => s.IsFinished);
        return finished;
    }

    /// <summary>Records a tick whose forward pass failed: every sequence in it finishes with
    /// <paramref name="error"/>.</summary>
    public IReadOnlyList<Sequence> Fail(ScheduleOutput output, string error)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (output.IsEmpty) return [];
        TakePending(output);
        var failed = new List<Sequence>();
        foreach (var entry in output.Scheduled)
        {
            var s = entry.Sequence;
            s.Finish(FinishReason.Error, error);
            // Never keep blocks whose slots the failed pass may have half written.
            Free(s);
            failed.Add(s);
        }
        _running.RemoveAll(s => s.IsFinished);
        return failed;
    }

    int ScheduleRunning(List<ScheduledSequence> batch, List<Sequence> preempted)
    {
        int budget = _options.MaxNumBatchedTokens;
        // Best first, so the preemption victim (lowest priority, newest) is always at the not yet scheduled end.
        _running.Sort(RunningOrder);
        int end = _running.Count;
        for (int i = 0; i < end; i++)
        {
            var s = _running[i];
            // One token of budget stays reserved for each running sequence still to come, so none is left out.
            int n = NextChunk(s, budget - (end - i - 1));
            while (!MakeRoom(s, n, reserve: 0, except: null))
            {
                var victim = _running[--end];
                Preempt(victim);
                preempted.Add(victim);
                if (victim == s) break;
            }
            if (end == i) break;
            Allocate(s, n);
            batch.Add(new(s, n, s.NumComputedTokens + n == s.NumTokens));
            budget -= n;
        }
        _running.RemoveRange(end, _running.Count - end);
        return budget;
    }

    void AdmitWaiting(List<ScheduledSequence> batch, List<BlockCopy> copies, int budget)
    {
        while (budget > 0 && _running.Count < _options.MaxNumSeqs && _waiting.Min is { } entry)
        {
            var s = entry.Sequence;
            int held = s.NumComputedTokens;
            // The copy reads the source before this tick's forward pass writes anything, so the parent may still
            // write its own next token into it, or be evicted by MakeRoom below, in this very tick.
            int? copySource = s.ForkOf is { } parent ? _blocks.Fork(s, parent) : null;
            if (copySource is null && _window is null) _blocks.AllocatePrefix(s);
            int n = NextChunk(s, budget);
            if (!MakeRoom(s, n, _watermarkBlocks, except: s))
            {
                // Strictly in order: letting smaller requests pass would starve the large one at the head.
                _blocks.TruncateTo(s, held);
                return;
            }
            Allocate(s, n);
            if (copySource >= 0) copies.Add(new BlockCopy(copySource.Value, s.BlockTable[^1]));
            // a resumption after preemption recomputes from the prefix cache: the parent may be anywhere by then
            s.ForkOf = null;
            _waiting.Remove(entry);
            _waitingById.Remove(s.Id);
            // Cached tokens are what this turn found on admission, not what a resumption after preemption finds.
            if (entry.ResumeOrder == 0) s.NumCachedTokens = s.NumComputedTokens;
            s.Status = SequenceStatus.Running;
            _running.Add(s);
            batch.Add(new(s, n, s.NumComputedTokens + n == s.NumTokens));
            budget -= n;
        }
    }

    int NextChunk(Sequence s, int available) =>
        Math.Min(Math.Min(s.NumTokens - s.NumComputedTokens, available), _options.PrefillChunkSize ?? int.MaxValue);

    /// <summary>Evicts idle holders of blocks until <paramref name="s"/> can get its next <paramref name="n"/>
    /// slots.</summary>
    bool MakeRoom(Sequence s, int n, int reserve, Sequence? except)
    {
        if (CanAllocate(s, n, reserve)) return true;
        // Evict only when that can make room; otherwise idle caches would be thrown away every tick the head of the
        // queue waits for running sequences to finish. (An upper bound: blocks shared with others are not freed by
        // evicting.)
        var (idle, idleWindow) = IdleBlocks(except);
        if (_blocks.BlocksNeeded(s, n) + reserve > _blocks.NumFreeBlocks + idle) return false;
        if (_window is not null && _window.BlocksNeeded(s, n) > _window.NumFreeBlocks + idleWindow) return false;
        while (!CanAllocate(s, n, reserve))
            if (!EvictIdle(except)) return false;
        return true;
    }

    bool CanAllocate(Sequence s, int n, int reserve) =>
        _blocks.CanAllocate(s, n, reserve) && (_window is null || _window.CanAllocate(s, n));

    void Allocate(Sequence s, int n)
    {
        _blocks.Allocate(s, n);
        _window?.Allocate(s, n);
    }

    /// <summary>Gives back every block of <paramref name="s"/>, in both pools; it will compute from its
    /// start.</summary>
    void Free(Sequence s)
    {
        _blocks.Free(s);
        _window?.Free(s);
    }

    /// <summary>Keeps the K/V of at most the first <paramref name="numTokens"/> computed tokens of
    /// <paramref name="s"/>; with a window pool, only if their window is still held, else none.</summary>
    void TruncateTo(Sequence s, int numTokens)
    {
        int keep = _blocks.TruncateTo(s, numTokens);
        if (_window is null) return;
        if (!_window.Covers(s, keep)) keep = _blocks.TruncateTo(s, 0);
        _window.TruncateTo(s, keep);
    }

    (int Blocks, int WindowBlocks) IdleBlocks(Sequence? except)
    {
        int blocks = 0, window = 0;
        foreach (var s in _parked) Count(s);
        foreach (var entry in _waitingById.Values)
            if (entry.Sequence != except) Count(entry.Sequence);
        return (blocks, window);

        void Count(Sequence s)
        {
            blocks += s.BlockTable.Count;
            if (_window is not null) window += WindowBlockManager.LiveBlocks(s);
        }
    }

    bool EvictIdle(Sequence? except)
    {
        if (_parked.First is { } lru)
        {
            Unpark(lru.Value);
            Free(lru.Value);
            return true;
        }
        // Then the kept history of queued turns, newest first; they will recompute (the prefix cache may give some
        // back).
        Sequence? newest = null;
        foreach (var entry in _waitingById.Values)
        {
            var s = entry.Sequence;
            if (s != except && s.BlockTable.Count > 0 && (newest is null || s.ArrivalOrder > newest.ArrivalOrder))
                newest = s;
        }
        if (newest is null) return false;
        Free(newest);
        return true;
    }

    void Preempt(Sequence s)
    {
        // Recompute rather than swap: its full blocks stay in the prefix cache until reused.
        Free(s);
        s.NumPreemptions++;
        TotalPreemptions++;
        Enqueue(s, ++_resumes);
    }

    void Enqueue(Sequence s, long resumeOrder)
    {
        var entry = new WaitingEntry(s, resumeOrder, (long)s.Priority * _options.AgingTicks + _tick);
        _waiting.Add(entry);
        _waitingById.Add(s.Id, entry);
        s.Status = SequenceStatus.Waiting;
    }

    List<Sequence> FinishRequested()
    {
        var finished = new List<Sequence>();
        for (int i = _running.Count - 1; i >= 0; i--)
        {
            if (!_running[i].CancelRequested && !_running[i].StopRequested) continue;
            finished.Add(_running[i]);
            _running.RemoveAt(i);
        }
        foreach (var entry in _waitingById.Values)
            if (entry.Sequence.CancelRequested || entry.Sequence.StopRequested) finished.Add(entry.Sequence);
        foreach (var s in finished)
        {
            if (_waitingById.Remove(s.Id, out var entry)) _waiting.Remove(entry);
            Finish(s, s.CancelRequested ? FinishReason.Cancelled : FinishReason.Stop);
        }
        return finished;
    }

    FinishReason StopReason(Sequence s)
    {
        int token = s.LastToken;
        if (s.Sampling.StopTokenIds.Contains(token) || (!s.Sampling.IgnoreEos && _eosTokenIds.Contains(token)))
            return FinishReason.Stop;
        if (s.NumCompletionTokens >= s.Sampling.MaxTokens || s.NumTokens >= _options.MaxModelLen)
            return FinishReason.Length;
        return FinishReason.None;
    }

    void Finish(Sequence s, FinishReason reason)
    {
        s.Finish(reason);
        if (s.KeepCache && reason != FinishReason.Cancelled && s.BlockTable.Count > 0)
            _parkedNodes.Add(s, _parked.AddLast(s));
        else Free(s);
    }

    bool Unpark(Sequence s)
    {
        if (!_parkedNodes.Remove(s, out var node)) return false;
        _parked.Remove(node);
        return true;
    }

    void TakePending(ScheduleOutput output)
    {
        if (!ReferenceEquals(output, _pending))
            throw new InvalidOperationException(
                "Only the output of the latest Schedule can be recorded, and only once.");
        _pending = null;
    }

    /// <summary>
    /// A queued sequence. Preempted sequences go to the front, the last preempted first. The others are ordered by
    /// priority with aging, which is time-invariant as a rank: waiting <see cref="SchedulerOptions.AgingTicks"/> ticks
    /// is worth one priority level, so priority × AgingTicks + enqueue tick orders them at every tick.
    /// </summary>
    sealed record WaitingEntry(Sequence Sequence, long ResumeOrder, long Rank)
    {
        public static int Compare(WaitingEntry? a, WaitingEntry? b)
        {
            if (ReferenceEquals(a, b)) return 0;
            if (a is null) return -1;
            if (b is null) return 1;
            if ((a.ResumeOrder > 0) != (b.ResumeOrder > 0)) return a.ResumeOrder > 0 ? -1 : 1;
            if (a.ResumeOrder != b.ResumeOrder) return b.ResumeOrder.CompareTo(a.ResumeOrder);
            return a.Rank != b.Rank
                ? a.Rank.CompareTo(b.Rank) : a.Sequence.ArrivalOrder.CompareTo(b.Sequence.ArrivalOrder);
        }
    }
}
