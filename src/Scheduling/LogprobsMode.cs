namespace Weft.Scheduling;

/// <summary>What <see cref="SamplingParams.Logprobs"/> reports, as vLLM's --logprobs-mode names it.</summary>
public enum LogprobsMode
{
    /// <summary>raw_logprobs: the log-softmax of the model's logits, before bias, mask, penalties and
    /// temperature.</summary>
    Raw,
    /// <summary>processed_logprobs: the log-probabilities of the distribution the token is drawn from, after bias,
    /// mask, penalties, temperature, top-k, min-p and top-p (a token they removed is -inf); a greedy row's after bias,
    /// mask and penalties.</summary>
    Processed,
}

public static class LogprobsModes
{
    public const string RawName = "raw_logprobs", ProcessedName = "processed_logprobs";

    public static LogprobsMode? Parse(string name) => name switch
    {
        RawName => LogprobsMode.Raw,
        ProcessedName => LogprobsMode.Processed,
        _ => null,
    };
}
