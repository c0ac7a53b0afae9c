using Weft.GpuRuntime.Engine;
using Weft.Models;
using Weft.Scheduling;

namespace Weft.Grains;

/// <summary>What a silo serves and how: the model, its engine, and the scheduler's limits. Bound from the "Weft"
/// configuration section.</summary>
public sealed record ModelHostOptions
{
    /// <summary>GGUF file to serve; null serves the embedded demo model, generated on first use into
    /// <see cref="CacheDirectory"/>.</summary>
    public string? Model { get; init; }
    /// <summary>The demo model's preset when <see cref="Model"/> is null.</summary>
    public string DemoPreset { get; init; } = "tiny";
    /// <summary>The name clients use in the "model" field; defaults to the file name without extension.</summary>
    public string? ServedModelName { get; init; }
    /// <summary>Overrides the file's chat template: a Jinja template's path or text, or the name of a built-in
    /// format (chatml, llama2, llama3, zephyr, mistral, gemma, phi3).</summary>
    public string? ChatTemplate { get; init; }
    public string CacheDirectory { get; init; } = DemoModel.DefaultCacheDirectory;
    public EngineOptions Engine { get; init; } = new();
    /// <summary>Devices to serve on, one engine and one BatchGrain each; 0 takes every CUDA device when the engine runs
    /// on CUDA, else one. More than one on the CPU splits the cores between the engines.</summary>
    public int Devices { get; init; }
    /// <summary>Requests waiting for a slot beyond which new ones are refused (HTTP 429).</summary>
    public int MaxWaiting { get; init; } = 1024;
    /// <summary>Fraction of KV blocks kept free when admitting new sequences, so running ones rarely need
    /// preempting.</summary>
    public double KvWatermark { get; init; } = 0.01;
    /// <summary>Ticks a waiting request waits before its priority improves by one level.</summary>
    public int AgingTicks { get; init; } = 100;
    /// <summary>Largest prefill chunk per sequence per tick; null lets one prompt take the whole token
    /// budget.</summary>
    public int? PrefillChunkSize { get; init; }
    /// <summary>Seconds a conversation may go without a turn before its history, stored state and KV cache are
    /// removed; 0 keeps conversations until they are deleted.</summary>
    public int ConversationTtlSeconds { get; init; } = 3600;
    /// <summary>Tokens a turn without max_tokens keeps free for its reply when the conversation's oldest turns are
    /// dropped to fit, capped at a quarter of the context: without a reserve the cut history would fill the context
    /// to one token short, and every reply would be one token long.</summary>
    public int TruncationReplyTokens { get; init; } = 1024;
    /// <summary>Seconds after which a stored response of the Responses API is removed (GET then answers 404); 0 keeps
    /// them until they are deleted. OpenAI keeps them 30 days.</summary>
    public int ResponseTtlSeconds { get; init; } = 30 * 24 * 3600;
    /// <summary>Turns one tenant may have in progress on a silo at once (HTTP 429 beyond); null: no limit.</summary>
    public int? TenantMaxRequests { get; init; }
    /// <summary>Prompt tokens of one tenant's turns in progress on a silo (HTTP 429 beyond; a tenant's only turn is
    /// always admitted); null: no limit.</summary>
    public int? TenantMaxQueuedTokens { get; init; }
    /// <summary>Map the model file rather than read it into memory: less memory and a faster start, but the file must
    /// not be overwritten while it is served (the process then reads the new bytes, or dies on a shorter
    /// file).</summary>
    public bool Mmap { get; init; }
    /// <summary>Seconds between the summary lines of the log (throughput, running and waiting requests, KV cache
    /// usage), written only while there is work; 0 turns them off.</summary>
    public int SummaryIntervalSeconds { get; init; } = 10;
    /// <summary>What logprobs report, as vLLM's --logprobs-mode: "raw_logprobs", the log-softmax of the model's
    /// logits, or "processed_logprobs", of those the token is drawn from (after logit_bias, a grammar's mask,
    /// penalties, temperature, top-k, min-p and top-p).</summary>
    public string LogprobsMode { get; init; } = LogprobsModes.RawName;

    /// <summary><see cref="LogprobsMode"/> parsed; <see cref="Validate"/> has refused any other name.</summary>
    public LogprobsMode LogprobsModeValue => LogprobsModes.Parse(LogprobsMode) ?? Scheduling.LogprobsMode.Raw;

    public IEnumerable<string> Validate()
    {
        if (Model is null && !DemoModelShape.Presets.Any(p => p.Name == DemoPreset))
            yield return $"demo preset '{DemoPreset}' is unknown " +
                $"(known: {string.Join(", ", DemoModelShape.Presets.Select(p => p.Name))})";
        if (Devices < 0) yield return "devices must not be negative";
        if (Engine.Device != 0)
            yield return "the silo runs one engine on each of its first `devices` GPUs; " +
                "engine.device is for a single engine (weft bench, weft generate)";
        if (MaxWaiting < 1) yield return "max-waiting must be at least 1";
        if (KvWatermark is < 0 or >= 1) yield return "kv-watermark must be in [0, 1)";
        if (AgingTicks < 1) yield return "aging-ticks must be positive";
        if (PrefillChunkSize is < 1) yield return "prefill-chunk-size must be positive";
        if (ConversationTtlSeconds < 0) yield return "conversation-ttl must not be negative (0: never expire)";
        if (TruncationReplyTokens < 1) yield return "truncation-reply-tokens must be at least 1";
        if (ResponseTtlSeconds < 0) yield return "response-ttl must not be negative (0: never expire)";
        if (TenantMaxRequests is < 1) yield return "tenant-max-requests must be at least 1";
        if (SummaryIntervalSeconds < 0) yield return "summary-interval must not be negative (0: no summary)";
        if (TenantMaxQueuedTokens is < 1) yield return "tenant-max-queued-tokens must be at least 1";
        if (LogprobsModes.Parse(LogprobsMode) is null)
            yield return $"logprobs-mode must be {LogprobsModes.RawName} or {LogprobsModes.ProcessedName}";
        foreach (var e in Engine.Validate()) yield return e;
    }
}
