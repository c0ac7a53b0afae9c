using System.Runtime.CompilerServices;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Sampling;

/// <summary>
/// Picks the next token from one row of logits. Order: logit bias → constraint (a mask) → penalties → greedy, or
/// top-k → temperature → softmax → min-p → top-p over what min-p kept → a draw. The draw uses a counter-based
/// generator keyed by (seed, completion index), so a sequence samples the same tokens whether it runs alone, batched,
/// or resumed after preemption.
/// </summary>
public sealed class Sampler(int vocabSize)
{
    readonly int[] _order = new int[vocabSize];
    readonly float[] _probs = new float[vocabSize];
    readonly ulong[] _keys = new ulong[vocabSize];
    readonly Dictionary<int, int> _counts = [];
    // the row before bias, mask and penalties, for the sampled token's log-probability; only rows that change it
    float[]? _raw;
    // the last draw's candidates (a prefix of _order) and the drawn one's place among them, for processed logprobs
    int _kept, _pickedAt;

    /// <param name="logits">One row; modified in place by penalties.</param>
    /// <param name="tokens">The sequence's tokens so far (prompt then generated).</param>
    public int Sample(Span<float> logits, SamplingParams p, ulong seed, IReadOnlyList<int> tokens, int numPromptTokens)
    {
        if (p.LogitBias is { } bias) ApplyBias(logits, bias);
        if (p.Constraint is not { } constraint) return Pick(logits, p, seed, tokens, numPromptTokens);
        constraint.Apply(logits, tokens, numPromptTokens);
        int token = Pick(logits, p, seed, tokens, numPromptTokens);
        constraint.Accepted(token);
        return token;
    }

    /// <summary>
    /// Samples as <see cref="Sample(Span{float}, SamplingParams, ulong, IReadOnlyList{int}, int)"/> and reports
    /// log-probabilities as <see cref="SamplingParams.LogprobsMode"/> says: of the raw logits (before bias, mask and
    /// penalties: vLLM's default) or of the distribution drawn from. The sampled token's, and the
    /// <paramref name="topIds"/>.Length most likely tokens' in <paramref name="topLogprobs"/>, most likely first.
    /// </summary>
    public int Sample(Span<float> logits, SamplingParams p, ulong seed, IReadOnlyList<int> tokens, int numPromptTokens,
        Span<int> topIds, Span<float> topLogprobs, out float sampledLogprob)
    {
        if (p.LogprobsMode == LogprobsMode.Processed)
        {
            int picked = Sample(logits, p, seed, tokens, numPromptTokens);
            sampledLogprob = Processed(logits, p, picked, topIds, topLogprobs);
            return picked;
        }
        ReadOnlySpan<float> raw = logits;
        if (p.LogitBias is not null || p.Constraint is not null || p.HasPenalties)
        {
            _raw ??= new float[_probs.Length];
            logits.CopyTo(_raw);
            raw = _raw.AsSpan(0, logits.Length);
        }
        float lse = LogSumExp(raw);
        TopLogprobs(raw, lse, topIds, topLogprobs);
        int token = Sample(logits, p, seed, tokens, numPromptTokens);
        sampledLogprob = raw[token] - lse;
        return token;
    }

    /// <summary>
    /// vLLM's processed_logprobs. A greedy row's logits after bias, mask and penalties are in <paramref name="logits"/>
    /// (penalties work in place). A sampled row's candidates are the first <see cref="_kept"/> of the key order with
    /// their probabilities at the temperature, so the log of each over their sum is the log-softmax of the processed
    /// logits; the tokens that top-k, min-p or top-p removed are -inf, and the top ids are the key order's (the same
    /// order as the processed logits', since the temperature is monotonic).
    /// </summary>
    float Processed(ReadOnlySpan<float> logits, SamplingParams p, int token, Span<int> ids, Span<float> values)
    {
        if (p.IsGreedy)
        {
            float lse = LogSumExp(logits);
            TopLogprobs(logits, lse, ids, values);
            return logits[token] - lse;
        }
        double total = 0;
        for (int i = 0; i < _kept; i++) total += _probs[i];
        for (int j = 0; j < ids.Length; j++)
        {
            ids[j] = (int)(_keys[j] & 0xFFFFFFFF);
            values[j] = j < _kept ? (float)Math.Log(_probs[j] / total) : float.NegativeInfinity;
        }
        return (float)Math.Log(_probs[_pickedAt] / total);
    }

    /// <summary>log Σ exp(logit): exp in f32 around the maximum and the sum in double, as the softmax of
    /// <see cref="Pick"/>, so the ILGPU kernel can compute the same value.</summary>
    public static float LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = logits[ArgMax(logits)];
        double sum = 0;
        foreach (float l in logits) sum += MathF.Exp(l - max);
        return max + (float)Math.Log(sum);
    }

    /// <summary>The ids.Length highest logits, highest first with ties to the lower id, as log-probabilities (logit
    /// minus <paramref name="lse"/>). One pass with insertion into at most 20 kept: no sort of the
    /// vocabulary.</summary>
    public static void TopLogprobs(ReadOnlySpan<float> logits, float lse, Span<int> ids, Span<float> values)
    {
        int k = ids.Length, kept = 0;
        if (k == 0) return;
        for (int i = 0; i < logits.Length; i++)
        {
            float v = logits[i];
            if (kept == k && !(v > values[k - 1])) continue;
            int at = Math.Min(kept, k - 1);
            while (at > 0 && v > values[at - 1])
            {
                values[at] = values[at - 1];
                ids[at] = ids[at - 1];
                at--;
            }
            values[at] = v;
            ids[at] = i;
            if (kept < k) kept++;
        }
        for (int j = 0; j < kept; j++) values[j] -= lse;
    }

    int Pick(Span<float> logits, SamplingParams p, ulong seed, IReadOnlyList<int> tokens, int numPromptTokens)
    {
        if (p.HasPenalties) ApplyPenalties(logits, p, tokens, numPromptTokens);
        if (p.IsGreedy) return ArgMax(logits);

        int n = Candidates(logits, p.TopK);
        // softmax over the candidates, highest first, at the given temperature
        float max = logits[_order[0]], inv = 1f / p.Temperature;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += _probs[i] = MathF.Exp((logits[_order[i]] - max) * inv);
        float norm = (float)(1.0 / sum);
        for (int i = 0; i < n; i++) _probs[i] *= norm;

        if (p.MinP > 0)
        {
            float cutoff = _probs[0] * p.MinP;
            int keep = 1;
            while (keep < n && _probs[keep] >= cutoff) keep++;
            n = keep;
        }
        if (p.TopP < 1)
        {
            // over what min-p kept, renormalised, as vLLM applies top-p after min-p
            double kept = 1;
            if (p.MinP > 0)
            {
                kept = 0;
                for (int i = 0; i < n; i++) kept += _probs[i];
            }
            double cum = 0, target = p.TopP * kept;
            int keep = 0;
            while (keep < n && cum < target) cum += _probs[keep++];
            n = Math.Max(1, keep);
        }

        int completionIndex = tokens.Count - numPromptTokens;
        double total = 0;
        for (int i = 0; i < n; i++) total += _probs[i];
        double u = Uniform(seed, (ulong)completionIndex) * total, acc = 0;
        _kept = n;
        for (int i = 0; i < n; i++)
        {
            acc += _probs[i];
            if (u < acc) return _order[_pickedAt = i];
        }
        return _order[_pickedAt = n - 1];
    }

    /// <summary>Highest logit; ties go to the lowest id.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > max) { max = logits[i]; best = i; }
        return best;
    }

    /// <summary>Fills _order with candidate ids sorted by logit (descending, ties by lower id) and returns their
    /// count.</summary>
    int Candidates(ReadOnlySpan<float> logits, int topK)
    {
        // One sort of packed (descending logit, id) keys: deterministic tie order, no comparer, no allocation.
        var keys = _keys.AsSpan(0, logits.Length);
        for (int i = 0; i < keys.Length; i++) keys[i] = (ulong)DescendingKey(logits[i]) << 32 | (uint)i;
        keys.Sort();
        int n = topK > 0 ? Math.Min(topK, keys.Length) : keys.Length;
        for (int i = 0; i < n; i++) _order[i] = (int)(keys[i] & 0xFFFFFFFF);
        return n;
    }

    /// <summary>Maps a float to a key whose unsigned order is the float's descending order.</summary>
    static uint DescendingKey(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        uint ascending = (u & 0x80000000) != 0 ? ~u : u | 0x80000000;
        return ~ascending;
    }

    /// <summary>-100 bans the token outright, as OpenAI documents it: added to logits of a few tens, -100 could still
    /// lose to a row whose other logits are lower still.</summary>
    static void ApplyBias(Span<float> logits, IReadOnlyDictionary<int, float> bias)
    {
        foreach (var (t, b) in bias) logits[t] = b <= -100 ? float.NegativeInfinity : logits[t] + b;
    }

    void ApplyPenalties(Span<float> logits, SamplingParams p, IReadOnlyList<int> tokens, int numPromptTokens)
    {
        if (p.RepetitionPenalty != 1)
        {
            _counts.Clear();
            foreach (var t in tokens) _counts[t] = 1;
            foreach (var t in _counts.Keys)
                logits[t] = logits[t] > 0 ? logits[t] / p.RepetitionPenalty : logits[t] * p.RepetitionPenalty;
        }
        if (p.PresencePenalty != 0 || p.FrequencyPenalty != 0)
        {
            _counts.Clear();
            for (int i = numPromptTokens; i < tokens.Count; i++)
                _counts[tokens[i]] = _counts.GetValueOrDefault(tokens[i]) + 1;
            foreach (var (t, count) in _counts)
                logits[t] -= p.FrequencyPenalty * count + p.PresencePenalty;
        }
    }

    /// <summary>A uniform double in [0, 1) from (seed, index): SplitMix64 finalizer over the pair. Plain arithmetic, so
    /// the ILGPU sampling kernel calls it too and both backends draw the same numbers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Uniform(ulong seed, ulong index)
    {
        ulong z = seed + (index + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
