namespace Weft.Scheduling;

/// <summary>Limits of one <see cref="Scheduler"/>: per tick, for the waiting queue, and for each sequence.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Tokens of context a sequence may reach: prompt plus max_tokens must fit.</summary>
    public required int MaxModelLen { get; init; }
    /// <summary>Sequences in one tick's batch (and running at once).</summary>
    public int MaxNumSeqs { get; init; } = 256;
    /// <summary>Tokens in one tick's batch; at least <see cref="MaxNumSeqs"/>, so every running sequence fits every
    /// tick.</summary>
    public int MaxNumBatchedTokens { get; init; } = 2048;
    /// <summary>Requests queued beyond this are refused (retryable) rather than left to wait without bound.</summary>
    public int MaxWaiting { get; init; } = 1024;
    /// <summary>Fraction of the KV blocks a new admission must leave free, so running sequences can keep
    /// growing.</summary>
    public double KvWatermark { get; init; } = 0.01;
    /// <summary>Ticks of waiting worth one priority level, so low-priority requests are not starved.</summary>
    public int AgingTicks { get; init; } = 100;
    /// <summary>Most prompt tokens one sequence computes in a tick; null lets one prefill take the whole remaining
    /// budget.</summary>
    public int? PrefillChunkSize { get; init; }

    /// <summary>The first problem with these options, or null.</summary>
    public string? Validate()
    {
        if (MaxModelLen < 2) return $"MaxModelLen must be at least 2 (got {MaxModelLen})";
        if (MaxNumSeqs < 1) return $"MaxNumSeqs must be at least 1 (got {MaxNumSeqs})";
        if (MaxNumBatchedTokens < MaxNumSeqs)
            return $"MaxNumBatchedTokens ({MaxNumBatchedTokens}) must be at least MaxNumSeqs ({MaxNumSeqs}): " +
                "every running sequence needs a token each tick";
        if (MaxWaiting < 1) return $"MaxWaiting must be at least 1 (got {MaxWaiting})";
        if (!double.IsFinite(KvWatermark) || KvWatermark < 0 || KvWatermark >= 1)
            return $"KvWatermark must be in [0, 1) (got {KvWatermark})";
        if (AgingTicks < 1) return $"AgingTicks must be at least 1 (got {AgingTicks})";
        if (PrefillChunkSize < 1) return $"PrefillChunkSize must be at least 1 when set (got {PrefillChunkSize})";
        return null;
    }
}
