using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.Grains;

/// <summary>
/// The serving metrics (System.Diagnostics.Metrics, meter "Weft"; the silo exports them as Prometheus text). Every
/// series carries the served model's name and the device; per-request series the tenant too (tenants come from the
/// silo's key list, so they stay a short list of values). Gauges read the live schedulers of this process's
/// BatchGrains, one measurement per device.
/// </summary>
public static class Metrics
{
    public const string MeterName = "Weft";
    static readonly Meter Meter = new(MeterName);
    static readonly ConcurrentDictionary<Scheduler, DeviceMetrics> Schedulers = new();

    static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("weft_prompt_tokens", "{token}",
        "prompt tokens of finished requests");
    static readonly Counter<long> GenerationTokens = Meter.CreateCounter<long>("weft_generation_tokens", "{token}",
        "tokens generated");
    static readonly Counter<long> CachedPromptTokens = Meter.CreateCounter<long>("weft_cached_prompt_tokens", "{token}",
        "prompt tokens served from the KV cache");
    static readonly Counter<long> Requests = Meter.CreateCounter<long>("weft_requests", "{request}",
        "finished requests by finish reason");
    static readonly Counter<long> Cancelled = Meter.CreateCounter<long>("weft_requests_cancelled", "{request}",
        "requests cancelled before their end (the client went away or stopped them)");
    static readonly Counter<long> Failed = Meter.CreateCounter<long>("weft_requests_failed", "{request}",
        "requests that failed with an error of the server");
    static readonly Counter<long> Refused = Meter.CreateCounter<long>("weft_requests_refused", "{request}",
        "requests refused for now (HTTP 429) by reason: queue_full or tenant_limit");
    static readonly Histogram<double> QueueTime = Meter.CreateHistogram<double>("weft_request_queue_time", "s",
        "time from admission to the start of the forward pass of the prompt's first chunk");
    static readonly Histogram<double> PrefillTime = Meter.CreateHistogram<double>("weft_request_prefill_time", "s",
        "time from the start of the prompt's first chunk to the end of the forward pass that sampled the first " +
        "token");
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
        Meter.CreateObservableGauge("weft_requests_running", () => PerDevice(s => s.NumRunning), "{request}",
            "sequences being generated");
        Meter.CreateObservableGauge("weft_requests_waiting", () => PerDevice(s => s.NumWaiting), "{request}",
            "sequences waiting for a slot");
        Meter.CreateObservableGauge("weft_kv_cache_usage_ratio", () => PerDevice(s => s.KvCacheUsage), "1",
            "fraction of the device's KV blocks in use (parked conversations included)");
        Meter.CreateObservableCounter("weft_preemptions", () => PerDevice(s => s.TotalPreemptions), "{preemption}",
            "sequences preempted to free KV blocks");
    }

    static IEnumerable<Measurement<T>> PerDevice<T>(Func<Scheduler, T> read) where T : struct =>
        Schedulers.Select(kv => new Measurement<T>(read(kv.Key), kv.Value.Tags));

    /// <summary>The devices of this process and their schedulers, for the periodic summary.</summary>
    public static IEnumerable<(Scheduler Scheduler, DeviceMetrics Device)> Devices =>
        Schedulers.Select(kv => (kv.Key, kv.Value));

    public static void Register(Scheduler s, DeviceMetrics device) => Schedulers[s] = device;
    public static void Unregister(Scheduler s) => Schedulers.TryRemove(s, out _);

    public static void RecordTick(TickResult tick, int firstTokens, DeviceMetrics device)
    {
        TickDuration.Record(tick.TickTime.TotalSeconds, device.Tags);
        BatchSize.Record(tick.NumSequences, device.Tags);
        GenerationTokens.Add(tick.Sampled.Count, device.Tags);
        device.Count(tick, firstTokens);
    }

    public static void RecordFirstToken(TimeSpan ttft, TimeSpan queue, TimeSpan prefill, in TagList tags)
    {
        TimeToFirstToken.Record(ttft.TotalSeconds, tags);
        QueueTime.Record(queue.TotalSeconds, tags);
        PrefillTime.Record(prefill.TotalSeconds, tags);
    }

    public static void RecordInterToken(TimeSpan t, in TagList tags) => InterTokenLatency.Record(t.TotalSeconds, tags);

    public static void RecordFinished(Sequence s, string finishReason, TimeSpan total, in TagList tags)
    {
        PromptTokens.Add(s.NumPromptTokens, tags);
        CachedPromptTokens.Add(s.NumCachedTokens, tags);
        var withReason = tags;
        withReason.Add("finish_reason", finishReason);
        Requests.Add(1, withReason);
        EndToEndLatency.Record(total.TotalSeconds, tags);
    }

    /// <summary>Puts a tenant's series of the counters of rare endings on /metrics at 0, so that rate() over them
    /// reads 0 rather than "no data" before the first one (and a dashboard shows the panel).</summary>
    internal static void StartAtZero(in TagList tags)
    {
        Cancelled.Add(0, tags);
        Failed.Add(0, tags);
        var queueFull = tags;
        queueFull.Add("reason", "queue_full");
        Refused.Add(0, queueFull);
    }

    public static void RecordCancelled(in TagList tags) => Cancelled.Add(1, tags);
    public static void RecordFailed(in TagList tags) => Failed.Add(1, tags);

    /// <param name="device">Empty where the refusal came before a device was chosen (a tenant's limit).</param>
    public static void RecordRefused(string model, string device, string tenant, string reason) =>
        Refused.Add(1, new TagList
        {
            { "model", model }, { "device", device }, { "tenant", tenant }, { "reason", reason }
        });
}

/// <summary>One device's labels, made once per BatchGrain activation so that recording allocates nothing, and its
/// token totals for the periodic summary of <paramref name="host"/> (several silos may share a process).</summary>
public sealed class DeviceMetrics(ModelHost host, int device)
{
    public ModelHost Host { get; } = host;
    readonly ConcurrentDictionary<string, bool> _tenants = new(StringComparer.Ordinal);
    long _promptTokens, _generationTokens;

    public string Model { get; } = host.ModelName;
    public string Device { get; } = device.ToString(CultureInfo.InvariantCulture);
    public TagList Tags => new() { { "model", Model }, { "device", Device } };

    /// <summary>The labels of one request's series.</summary>
    public TagList For(string tenant)
    {
        var tags = new TagList { { "model", Model }, { "device", Device }, { "tenant", tenant } };
        if (_tenants.TryAdd(tenant, true)) Metrics.StartAtZero(tags);
        return tags;
    }

    public long PromptTokens => Interlocked.Read(ref _promptTokens);
    public long GenerationTokens => Interlocked.Read(ref _generationTokens);

    /// <summary>A tick computed one token per decoding sequence and the rest for prompts; a sequence that sampled its
    /// first token was prefilling, so decoders = sampled - first tokens.</summary>
    internal void Count(TickResult tick, int firstTokens)
    {
        Interlocked.Add(ref _promptTokens, tick.NumTokens - (tick.Sampled.Count - firstTokens));
        Interlocked.Add(ref _generationTokens, tick.Sampled.Count);
    }
}
