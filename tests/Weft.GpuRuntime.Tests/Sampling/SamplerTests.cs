using Weft.GpuRuntime.Sampling;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>The sampler's semantics on hand-made logits: which tokens each truncation keeps, penalties, greedy
/// ties.</summary>
public sealed class SamplerTests
{
    static readonly float[] Probs = [0.5f, 0.3f, 0.1f, 0.06f, 0.04f];
    static float[] Logits => [.. Probs.Select(p => MathF.Log(p))];

    /// <summary>The distinct tokens drawn over many seeds, with their counts.</summary>
    static Dictionary<int, int> Draws(SamplingParams p, float[]? logits = null, int n = 4000)
    {
        var sampler = new Sampler(Probs.Length);
        var counts = new Dictionary<int, int>();
        for (ulong seed = 0; seed < (ulong)n; seed++)
        {
            int t = sampler.Sample((logits ?? Logits).ToArray(), p, seed, [9], 1);
            counts[t] = counts.GetValueOrDefault(t) + 1;
        }
        return counts;
    }

    [Fact]
    public void Top_logprobs_are_the_highest_logits_first_with_ties_to_the_lower_id_and_the_bias_does_not_move_them()
    {
        var sampler = new Sampler(6);
        float[] logits = [1, 3, 5, 5, 0, 3];
        int[] ids = new int[4];
        float[] values = new float[4];
        var p = new SamplingParams { Temperature = 0, LogitBias = new Dictionary<int, float> { [4] = 10 } };
        int token = sampler.Sample(logits.ToArray(), p, 0, [0], 1, ids, values, out float sampled);

        double lse = Math.Log(logits.Sum(l => Math.Exp(l)));
        Assert.Equal([2, 3, 1, 5], ids);
        Assert.Equal([5 - lse, 5 - lse, 3 - lse, 3 - lse], values.Select(v => (double)v), new ToleranceComparer(1e-6));
        // the bias picked token 4; its log-probability is of the raw logit 0
        Assert.Equal(4, token);
        Assert.Equal(0 - lse, sampled, 1e-6);
    }

    sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }

    [Fact]
    public void Greedy_takes_the_highest_logit_and_ties_go_to_the_lowest_id()
    {
        var sampler = new Sampler(5);
        Assert.Equal(2, sampler.Sample(new float[] { 1, 3, 5, 5, 0 }, SamplingParams.Greedy(1), 0, [0], 1));
        // a temperature too small to divide by is greedy, as in vLLM, rather than NaN probabilities
        Assert.Equal(2, sampler.Sample(new float[] { 1, 3, 5, 4, 0 }, new SamplingParams { Temperature = 1e-39f }, 7,
            [0], 1));
        Assert.Equal(2, sampler.Sample(new float[] { 1, 3, 5, 4, 0 }, new SamplingParams { Temperature = 2f, TopK = 1 },
            7, [0], 1));
    }

    [Fact]
    public void Temperature_one_draws_in_proportion_to_the_probabilities()
    {
        var counts = Draws(new SamplingParams { Temperature = 1 }, n: 20000);
        for (int t = 0; t < Probs.Length; t++) Assert.Equal(Probs[t], counts[t] / 20000.0, 0.015);
    }

    [Theory]
    [InlineData(2, 1f, 0f, new[] { 0, 1 })]         // top-k
    [InlineData(0, 0.75f, 0f, new[] { 0, 1 })]      // top-p: 0.5 is short of 0.75, 0.5 + 0.3 reaches it
    [InlineData(0, 0.85f, 0f, new[] { 0, 1, 2 })]   // ... and 0.85 needs one more
    [InlineData(0, 1f, 0.15f, new[] { 0, 1, 2 })]   // min-p: ≥ 0.15 × 0.5
    [InlineData(0, 0.6f, 0.3f, new[] { 0 })]        // top-p over what min-p kept: 0.5 / 0.8 ≥ 0.6
    [InlineData(3, 0.85f, 0f, new[] { 0, 1 })]      // top-p over the top-k: (0.5 + 0.3) / 0.9 ≥ 0.85
    public void Truncations_keep_exactly_their_tokens(int topK, float topP, float minP, int[] kept)
    {
        var counts = Draws(new SamplingParams { Temperature = 1, TopK = topK, TopP = topP, MinP = minP });
        Assert.Equal(kept, counts.Keys.Order());
    }

    [Fact]
    public void Penalties_follow_the_openai_and_vllm_formulas()
    {
        var sampler = new Sampler(4);
        // tokens: prompt [0], generated [1, 1, 2]; presence/frequency count generated tokens, repetition all of them
        int[] history = [0, 1, 1, 2];
        var logits = new float[] { 2f, 2f, -1f, 1.95f };
        sampler.Sample(logits, new SamplingParams { Temperature = 0, RepetitionPenalty = 2f }, 0, history, 1);
        Assert.Equal(new[] { 1f, 1f, -2f, 1.95f }, logits);

        logits = [2f, 2f, -1f, 1.95f];
        int chosen = sampler.Sample(logits,
            new SamplingParams { Temperature = 0, PresencePenalty = 0.5f, FrequencyPenalty = 0.25f }, 0, history, 1);
        Assert.Equal(new[] { 2f, 2f - 0.5f - 0.5f, -1f - 0.5f - 0.25f, 1.95f }, logits);
        Assert.Equal(0, chosen);
    }

    [Fact]
    public void The_same_seed_and_index_draw_the_same_token()
    {
        var sampler = new Sampler(Probs.Length);
        var p = new SamplingParams { Temperature = 1.3f, TopP = 0.95f };
        int a = sampler.Sample(Logits, p, 42, [9, 1, 2], 1);
        // same completion index: the draw depends on no history
        Assert.Equal(a, sampler.Sample(Logits, p, 42, [9, 3, 4], 1));
        var seeds = Enumerable.Range(0, 64).Select(s => sampler.Sample(Logits, p, (ulong)s, [9], 1)).Distinct().Count();
        Assert.True(seeds > 1, "different seeds should draw different tokens");
    }
}
