using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// The log-probabilities a step's samplers report for the logits rows whose sequence asked for them
/// (<see cref="SamplingParams.Logprobs"/>): the log-softmax of the raw logits at the sampled token and at the k most
/// likely tokens, most likely first (ties to the lower id). Sized at start-up; a step overwrites it.
/// </summary>
public sealed class StepLogprobs(int maxRows)
{
    const int Top = SamplingParams.MaxLogprobs;

    /// <summary>[row] the sampled token's log-probability.</summary>
    public float[] Sampled { get; } = new float[maxRows];
    /// <summary>[row × 20] the most likely tokens, the row's k first.</summary>
    public int[] TopIds { get; } = new int[maxRows * Top];
    /// <summary>[row × 20] their log-probabilities.</summary>
    public float[] TopLogprobs { get; } = new float[maxRows * Top];

    public Span<int> Ids(int row) => TopIds.AsSpan(row * Top, Top);

    public Span<float> Values(int row) => TopLogprobs.AsSpan(row * Top, Top);

    /// <summary>Row <paramref name="row"/>'s values, copied out of the buffers the next step overwrites; null when its
    /// sequence asked for none.</summary>
    public TokenLogprobs? Take(int row, SamplingParams sampling) => sampling.Logprobs is { } k
        ? new TokenLogprobs(Sampled[row], Ids(row)[..k].ToArray(), Values(row)[..k].ToArray())
        : null;
}

/// <summary>One sampled token's log-probability and the most likely tokens' (ids and values, most likely
/// first).</summary>
public sealed record TokenLogprobs(float Logprob, int[] TopIds, float[] TopLogprobs);
