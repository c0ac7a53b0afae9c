using System.Diagnostics;
using System.Diagnostics.Metrics;
using Weft.GpuRuntime.Sampling.Json;

namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>The time each constrained token's mask takes, as the histogram weft_constraint_mask_time of the "Weft"
/// meter that the silo exports (with the request's labels) and `weft bench serve` reads.</summary>
public static class MaskTiming
{
    public const string MeterName = "Weft", InstrumentName = "weft_constraint_mask_time";
    static readonly Meter Meter = new(MeterName);
    internal static readonly Histogram<double> Seconds = Meter.CreateHistogram<double>(InstrumentName, "s",
        "time to compute one constrained token's mask (a JSON schema's or a GBNF grammar's)");
}

/// <summary>
/// One sequence's grammar state. A mask walks the vocabulary trie from the state: a token is allowed when the grammar
/// accepts all its bytes, end tokens only once the text is complete. When the sampler reports the token it picked, the
/// state takes it and the next mask is computed on the thread pool while the next forward pass runs; the next
/// <see cref="Apply"/> waits for it (or, when the tokens are not what was accepted, as after a preemption that replays
/// them, recomputes from the tokens). A state alike the last one walked (inside a long string, in a repetition) takes
/// that walk's mask: the walks that allow most of the vocabulary, the slowest, are the ones that repeat. Buffers are
/// sized at the start: nothing is allocated per token.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification =
    "a ManualResetEventSlim whose wait handle is never asked for holds nothing to dispose")]
sealed class MaskConstraint<TMatcher> : IBitmaskConstraint, IThreadPoolWorkItem
    where TMatcher : class, IByteMatcher<TMatcher>
{
    readonly TMatcher _start;
    readonly TokenTrie _trie;
    readonly IReadOnlyList<int> _stopTokenIds;
    readonly TagList _tags;
    readonly TMatcher _state;
    readonly TMatcher[] _levels;
    readonly ulong[] _allowed;
    // the last state a mask was walked for, and that mask (without end tokens), reused while states are alike
    readonly TMatcher _walked;
    readonly ulong[] _walkedMask;
    bool _haveWalked;
    // set while no mask is being computed in the background
    readonly ManualResetEventSlim _idle = new(initialState: true);
    const int Idle = 0, Queued = 1, Running = 2;
    // the background job's progress: Apply runs a job the thread pool has not started yet itself
    int _phase;
    // generated tokens the state has taken, and the count the mask in _allowed is for (-1: none)
    int _consumed, _maskFor = -1, _accepted;
    // the start state rejected the prefix: only the end tokens are left
    readonly bool _startBroken;
    bool _broken;

    /// <param name="start">The grammar's start state; kept as it is, to start over from.</param>
    /// <param name="tags">The labels the mask times are recorded with (the request's model, device and tenant).</param>
    /// <param name="prefix">Text the grammar has taken before the first token this constraint sees: the part of a
    /// lazy constraint's triggering token that is the grammar's.</param>
    public MaskConstraint(TMatcher start, TokenTrie trie, IReadOnlyList<int> stopTokenIds, in TagList tags,
        ReadOnlySpan<byte> prefix = default)
    {
        if (prefix.Length > 0)
        {
            var fed = start.Blank();
            fed.CopyFrom(start);
            foreach (byte b in prefix)
                if (!fed.Feed(b))
                {
                    _startBroken = true;
                    break;
                }
            start = fed;
        }
        _start = start;
        _broken = _startBroken;
        _trie = trie;
        _stopTokenIds = stopTokenIds;
        _tags = tags;
        _state = start.Blank();
        _state.CopyFrom(start);
        _levels = new TMatcher[trie.MaxTokenBytes + 1];
        for (int i = 0; i < _levels.Length; i++) _levels[i] = start.Blank();
        _allowed = new ulong[(trie.VocabSize + 63) / 64];
        _walked = start.Blank();
        _walkedMask = new ulong[_allowed.Length];
    }

    /// <summary>Microseconds of the last mask computation (for measurements).</summary>
    public double LastMaskMicros { get; private set; }

    public void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens)
    {
        Ready(tokens, numPromptTokens);
        for (int t = 0; t < logits.Length; t++)
            if ((_allowed[t >> 6] & (1UL << t)) == 0) logits[t] = float.NegativeInfinity;
    }

    public void Mask(IReadOnlyList<int> tokens, int numPromptTokens, Span<ulong> allowed)
    {
        Ready(tokens, numPromptTokens);
        // the logits may be wider than the tokenizer's vocabulary: the tokens beyond it are never allowed
        var bits = _allowed.AsSpan(0, Math.Min(_allowed.Length, allowed.Length));
        bits.CopyTo(allowed);
        allowed[bits.Length..].Clear();
    }

    /// <summary>Brings <see cref="_allowed"/> to the mask after <paramref name="tokens"/>.</summary>
    void Ready(IReadOnlyList<int> tokens, int numPromptTokens)
    {
        RunQueued();
        _idle.Wait();
        int generated = tokens.Count - numPromptTokens;
        if (_maskFor != generated)
        {
            if (_consumed > generated)
            {
                _state.CopyFrom(_start);
                _consumed = 0;
                _broken = _startBroken;
            }
            for (; _consumed < generated; _consumed++) Advance(tokens[numPromptTokens + _consumed]);
            ComputeMask();
        }
    }

    public void Accepted(int token)
    {
        _idle.Reset();
        _accepted = token;
        Volatile.Write(ref _phase, Queued);
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    void IThreadPoolWorkItem.Execute() => RunQueued();

    /// <summary>Takes the queued job, on whichever thread gets to it first: with every core in the forward pass, the
    /// pool may not start the job before the sampler needs its mask, and the sampler then runs it rather than wait
    /// for a pool thread.</summary>
    void RunQueued()
    {
        if (Interlocked.CompareExchange(ref _phase, Running, Queued) != Queued) return;
        try
        {
            Advance(_accepted);
            _consumed++;
            ComputeMask();
        }
        finally
        {
            Volatile.Write(ref _phase, Idle);
            _idle.Set();
        }
    }

    void ComputeMask()
    {
        long start = Stopwatch.GetTimestamp();
        if (_broken) Array.Clear(_allowed);
        else if (_haveWalked && _state.MasksAlike(_walked, _trie.MaxTokenBytes))
            Array.Copy(_walkedMask, _allowed, _allowed.Length);
        else
        {
            Array.Clear(_allowed);
            _levels[0].CopyFrom(_state);
            Walk(0, 0);
            _walked.CopyFrom(_state);
            Array.Copy(_allowed, _walkedMask, _allowed.Length);
            _haveWalked = true;
        }
        if (_broken || _state.CanFinish)
        {
            foreach (int t in _trie.EndTokens) Allow(t);
            foreach (int t in _stopTokenIds) Allow(t);
        }
        _maskFor = _consumed;
        var elapsed = Stopwatch.GetElapsedTime(start);
        LastMaskMicros = elapsed.TotalMicroseconds;
        MaskTiming.Seconds.Record(elapsed.TotalSeconds, _tags);
    }

    void Allow(int t)
    {
        if ((uint)t < (uint)_trie.VocabSize) _allowed[t >> 6] |= 1UL << t;
    }

    /// <summary>A sampled token moves the state on; one the mask did not allow (it cannot happen unless the logits
    /// were all -inf) leaves only the end tokens.</summary>
    void Advance(int token)
    {
        if (_broken || _trie.EndTokens.Contains(token)) return;
        foreach (byte b in _trie.Pieces[token])
            if (!_state.Feed(b))
            {
                _broken = true;
                return;
            }
    }

    void Walk(int node, int level)
    {
        var trie = _trie;
        var here = _levels[level];
        var next = _levels[level + 1];
        for (int c = node + 1, end = trie.End[node]; c < end; c = trie.End[c])
        {
            if (!next.FeedFrom(here, trie.Byte[c])) continue;
            for (int k = trie.TokenStart[c]; k < trie.TokenStart[c + 1]; k++) Allow(trie.Tokens[k]);
            if (trie.End[c] > c + 1) Walk(c, level + 1);
        }
    }
}
