namespace Weft.Scheduling;

/// <summary>
/// Per-request sampling settings with OpenAI/vLLM semantics. Temperature 0 is greedy (ties go to the lowest id).
/// Presence and frequency penalties count generated tokens; the repetition penalty counts prompt and generated tokens.
/// </summary>
public sealed record SamplingParams
{
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    /// <summary>0 disables top-k.</summary>
    public int TopK { get; init; }
    public float MinP { get; init; }
    /// <summary>Null draws a seed per request; a given seed makes the output reproducible, alone or batched.</summary>
    public ulong? Seed { get; init; }
    public int MaxTokens { get; init; } = 256;
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    public float RepetitionPenalty { get; init; } = 1f;
    public bool IgnoreEos { get; init; }
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Added to the logits before penalties (OpenAI's logit_bias); null for none.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Forbids tokens (a JSON schema); applied after the bias, so no bias brings a forbidden token
    /// back.</summary>
    public ITokenConstraint? Constraint { get; init; }
    /// <summary>Report the sampled token's log-probability and this many of the most likely tokens' (0 to
    /// <see cref="MaxLogprobs"/>), as <see cref="LogprobsMode"/> says; null reports none.</summary>
    public int? Logprobs { get; init; }
    public LogprobsMode LogprobsMode { get; init; }

    /// <summary>OpenAI's limit on top_logprobs, which is vLLM's default max_logprobs too.</summary>
    public const int MaxLogprobs = 20;

    public static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens };

    /// <summary>Below vLLM's sampling epsilon a temperature is greedy: 1/T would overflow and the softmax turn to
    /// NaN.</summary>
    public bool IsGreedy => Temperature < 1e-5f || TopK == 1;
    public bool HasPenalties => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1;

    /// <summary>The first problem with these settings, or null: the field as the HTTP API names it, and why.</summary>
    public (string Param, string Message)? Validate(int vocabSize)
    {
        if (!float.IsFinite(Temperature) || Temperature < 0 || Temperature > 100)
            return ("temperature", "temperature must be between 0 and 100");
        if (!float.IsFinite(TopP) || TopP <= 0 || TopP > 1) return ("top_p", "top_p must be in (0, 1]");
        if (TopK < 0) return ("top_k", "top_k must be 0 (disabled) or positive");
        if (!float.IsFinite(MinP) || MinP < 0 || MinP > 1) return ("min_p", "min_p must be in [0, 1]");
        if (MaxTokens < 1) return ("max_tokens", "max_tokens must be at least 1");
        if (!float.IsFinite(PresencePenalty) || PresencePenalty < -2 || PresencePenalty > 2)
            return ("presence_penalty", "presence_penalty must be between -2 and 2");
        if (!float.IsFinite(FrequencyPenalty) || FrequencyPenalty < -2 || FrequencyPenalty > 2)
            return ("frequency_penalty", "frequency_penalty must be between -2 and 2");
        if (!float.IsFinite(RepetitionPenalty) || RepetitionPenalty <= 0 || RepetitionPenalty > 10)
            return ("repetition_penalty", "repetition_penalty must be in (0, 10]");
        if (LogitBias is not null)
            foreach (var (t, bias) in LogitBias)
            {
                if (t < 0 || t >= vocabSize)
                    return ("logit_bias", $"token id {t} is outside the vocabulary (0..{vocabSize - 1})");
                if (!float.IsFinite(bias) || bias < -100 || bias > 100)
                    return ("logit_bias", "a logit bias must be between -100 and 100");
            }
        if (Logprobs is < 0 or > MaxLogprobs)
            return ("top_logprobs", $"top_logprobs must be between 0 and {MaxLogprobs}");
        foreach (var t in StopTokenIds)
            if (t < 0 || t >= vocabSize)
                return ("stop_token_ids", $"stop token id {t} is outside the vocabulary (0..{vocabSize - 1})");
        return null;
    }
}
