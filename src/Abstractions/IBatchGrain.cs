namespace Weft.Abstractions;

/// <summary>
/// A sequence to generate on a device. <see cref="SequenceId"/> is the KV handle of an earlier turn of the same
/// conversation on this device (0 for none): the cache it holds is reused for the longest common prefix.
/// </summary>
[GenerateSerializer, Immutable, Alias("weft.GenerationRequest")]
public sealed record GenerationRequest
{
    [Id(0)] public long SequenceId { get; init; }
    [Id(1)] public required IReadOnlyList<int> PromptTokens { get; init; }
    [Id(2)] public SamplingOptions Sampling { get; init; } = new();
    [Id(3)] public int Priority { get; init; }
    /// <summary>Keep the sequence's KV blocks after the reply (until memory is needed) for the next turn.</summary>
    [Id(4)] public bool KeepCache { get; init; }
    /// <summary>Whose request this is: it salts the prefix cache (only one tenant's sequences share cached blocks)
    /// and labels the metrics. Empty: no tenant.</summary>
    [Id(5)] public string Tenant { get; init; } = "";
    /// <summary>The conversation grain's key, for the request's log line. Empty: not from a conversation.</summary>
    [Id(6)] public string Conversation { get; init; } = "";
    /// <summary>Independent sequences from the prompt; choice i draws with seed + i when a seed is given. The others
    /// are admitted once the first has computed the prompt, so that they find its KV blocks in the prefix
    /// cache.</summary>
    [Id(7)] public int Choices { get; init; } = 1;
    /// <summary>The id its client got (<see cref="TurnRequest.RequestId"/>), for the request's log line. Empty: the
    /// line names the sequence instead.</summary>
    [Id(8)] public string RequestId { get; init; } = "";
}

/// <summary>Tokens sampled for one sequence since the last delta, their text, and on the last delta the finish reason
/// and counts.</summary>
[GenerateSerializer, Immutable, Alias("weft.GenerationDelta")]
public sealed record GenerationDelta
{
    [Id(0)] public long SequenceId { get; init; }
    [Id(1)] public string Text { get; init; } = "";
    [Id(2)] public IReadOnlyList<int> TokenIds { get; init; } = [];
    /// <summary>"stop" or "length" on the last delta.</summary>
    [Id(3)] public string? FinishReason { get; init; }
    [Id(4)] public int PromptTokens { get; init; }
    [Id(5)] public int CachedTokens { get; init; }
    [Id(6)] public int CompletionTokens { get; init; }
    /// <summary>When the request asked for them: one per token of <see cref="TokenIds"/>.</summary>
    [Id(7)] public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
    /// <summary>Which of the request's choices the delta belongs to.</summary>
    [Id(8)] public int Choice { get; init; }
}

/// <summary>A device's load, for placement and metrics.</summary>
[GenerateSerializer, Immutable, Alias("weft.DeviceLoad")]
public sealed record DeviceLoad(
    [property: Id(0)] int Device,
    [property: Id(1)] int FreeKvTokens,
    [property: Id(2)] int TotalKvTokens,
    [property: Id(3)] int Running,
    [property: Id(4)] int Waiting,
    [property: Id(5)] int Parked);

/// <summary>
/// Counters of a BatchGrain since activation: how full its ticks were and where their time went.
/// <see cref="DeviceIdleMs"/> sums the gaps between the end of one forward pass and the start of the next while the
/// loop ran without a break, <see cref="DeviceCycleMs"/> the start-to-start times of the same pairs: their ratio is
/// the fraction of the tick the device waited for the host. Of the <see cref="FirstTokens"/> replies' first tokens,
/// <see cref="QueueMs"/> sums the time from admission to the start of the forward pass of the prompt's first chunk,
/// <see cref="PrefillMs"/> the time from there to the end of the forward pass that sampled the first token.
/// </summary>
[GenerateSerializer, Immutable, Alias("weft.BatchStats")]
public sealed record BatchStats(
    [property: Id(0)] long Ticks,
    [property: Id(1)] double MeanBatchSize,
    [property: Id(2)] double MeanTickMs,
    [property: Id(3)] double MeanForwardMs,
    [property: Id(4)] long Preemptions,
    [property: Id(5)] long TokensGenerated,
    [property: Id(6)] DeviceLoad Load,
    [property: Id(7)] double DeviceIdleMs = 0,
    [property: Id(8)] double DeviceCycleMs = 0,
    [property: Id(9)] long FirstTokens = 0,
    [property: Id(10)] double QueueMs = 0,
    [property: Id(11)] double PrefillMs = 0);

/// <summary>
/// The continuous-batching loop of one device of one silo, keyed "{silo}/{device}" and pinned to that silo. Each tick
/// runs one forward pass over every scheduled sequence.
/// </summary>
[Alias("weft.IBatchGrain")]
public interface IBatchGrain : IGrainWithStringKey
{
    [Alias("Generate")]
    IAsyncEnumerable<GenerationDelta> GenerateAsync(GenerationRequest request,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// Admits the request and writes its deltas to the channel a reader on this grain's silo registered under
    /// <paramref name="stream"/>: no message per token. False (nothing admitted) when no such channel is registered
    /// here; the caller then streams with <see cref="GenerateAsync"/>.
    /// </summary>
    [Alias("StartLocal")]
    Task<bool> StartLocalAsync(GenerationRequest request, Guid stream);

    /// <summary>Frees a kept sequence's KV blocks (a conversation was reset or moved).</summary>
    [Alias("Release")]
    Task ReleaseAsync(long sequenceId);

    [Alias("GetStats")]
    Task<BatchStats> GetStatsAsync();
}

/// <summary>The devices of one silo and their load, keyed "{silo}/load" and pinned to that silo; read by conversation
/// placement.</summary>
[Alias("weft.ISiloLoadGrain")]
public interface ISiloLoadGrain : IGrainWithStringKey
{
    [Alias("GetLoad")]
    Task<IReadOnlyList<DeviceLoad>> GetLoadAsync();
}
