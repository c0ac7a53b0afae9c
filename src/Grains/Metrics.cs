using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.Grains;

/// <summary>
/// The serving metrics (System.Diagnostics.Metrics, meter "Weft"; the silo exports them as Prometheus text). Gauges
/// read the live schedulers of this process's BatchGrains.
/// </summary>
public static class Metrics
{
    public const string MeterName = "Weft";
    static readonly Meter Meter = new(MeterName);
    static readonly ConcurrentDictionary<Scheduler, int> Schedulers = new();

    static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("weft_prompt_tokens", "{token}",
        "prompt tokens of finished requests");
    static readonly Counter<long> GenerationTokens = Meter.CreateCounter<long>("weft_generation_tokens", "{token}",
        "tokens generated");
    static readonly Counter<long> CachedPromptTokens = Meter.CreateCounter<long>("weft_cached_prompt_tokens", "{token}",
        "prompt tokens served from the KV cache");
    static readonly Counter<long> Requests = Meter.CreateCounter<long>("weft_requests", "{request}",
        "finished requests by finish reason");
    static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram<double>("weft_time_to_first_token", "s",
        "time from admission to the first token");
    static readonly Histogram<double> InterTokenLatency = Meter.CreateHistogram<double>("weft_inter_token_latency", "s",
        "time between consecutive tokens of a request");
    static readonly Histogram<double> EndToEndLatency = Meter.CreateHistogram<double>("weft_e2e_request_latency", "s",
        "time from admission to the last token");
    static readonly Histogram<double> TickDuration = Meter.CreateHistogram<double>("weft_tick_duration", "s",
        "duration of one scheduler tick (forward pass included)");
    static readonly Histogram<int> BatchSize = Meter.CreateHistogram<int>("weft_batch_size", "{sequence}",
        "sequences in one tick");

    static Metrics()
    {
        Meter.CreateObservableGauge("weft_requests_running", () => Schedulers.Keys.Sum(s => s.NumRunning), "{request}",
            "sequences being generated");
        Meter.CreateObservableGauge("weft_requests_waiting", () => Schedulers.Keys.Sum(s => s.NumWaiting), "{request}",
            "sequences waiting for a slot");
        Meter.CreateObservableGauge("weft_kv_cache_usage_ratio",
            () => Schedulers.IsEmpty ? 0 : Schedulers.Keys.Average(s => s.KvCacheUsage), "1",
            "fraction of KV blocks in use (parked conversations included)");
        Meter.CreateObservableCounter("weft_preemptions", () => Schedulers.Keys.Sum(s => s.TotalPreemptions),
            "{preemption}", "sequences preempted to free KV blocks");
    }

    public static void Register(Scheduler s) => Schedulers[s] = 0;
    public static void Unregister(Scheduler s) => Schedulers.TryRemove(s, out _);

    public static void RecordTick(TickResult tick)
    {
        TickDuration.Record(tick.TickTime.TotalSeconds);
        BatchSize.Record(tick.NumSequences);
        GenerationTokens.Add(tick.Sampled.Count);
    }

    public static void RecordFirstToken(TimeSpan t, string tenant) =>
        TimeToFirstToken.Record(t.TotalSeconds, Tag(tenant));
    public static void RecordInterToken(TimeSpan t) => InterTokenLatency.Record(t.TotalSeconds);

    public static void RecordFinished(Sequence s, string finishReason, TimeSpan total, string tenant)
    {
        PromptTokens.Add(s.NumPromptTokens, Tag(tenant));
        CachedPromptTokens.Add(s.NumCachedTokens, Tag(tenant));
        Requests.Add(1, new KeyValuePair<string, object?>("finish_reason", finishReason), Tag(tenant));
        EndToEndLatency.Record(total.TotalSeconds, Tag(tenant));
    }

    /// <summary>The "tenant" label of per-request series; tenants come from the silo's key list, so it stays a short
    /// list of values.</summary>
    static KeyValuePair<string, object?> Tag(string tenant) => new("tenant", tenant);
}
