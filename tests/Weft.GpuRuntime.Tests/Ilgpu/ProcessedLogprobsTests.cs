using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Ilgpu;

/// <summary>
/// vLLM's processed_logprobs on the cpu backend and the ILGPU sampling kernel: the log-softmax of the logits the
/// token is drawn from, computed here from the raw logits by the sampler's documented steps (bias, penalties, then
/// for a sampled row the temperature, top-k, min-p and top-p, what they remove being -inf).
/// </summary>
public sealed class ProcessedLogprobsTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    // the last two tokens of each history are generated ones, for the presence and frequency penalties
    static readonly int[][] Histories = [[1, 300, 301, 301], [1, 5, 6, 7, 8], [1, 700, 9, 300, 7, 7], [1, 42, 42, 9]];

    static readonly SamplingParams[] Asked =
    [
        // greedy with penalties: no temperature, no cut
        new() { Temperature = 0, RepetitionPenalty = 1.5f, PresencePenalty = 0.8f, Logprobs = 5 },
        new()
        {
            Temperature = 0.8f, TopK = 50, TopP = 0.9f, MinP = 0.02f, Seed = 3, Logprobs = SamplingParams.MaxLogprobs,
        },
        // a bias with penalties: applied in the ILGPU sampling kernel too
        new()
        {
            Temperature = 0.7f, Seed = 9, RepetitionPenalty = 1.3f, TopP = 0.5f,
            LogitBias = new Dictionary<int, float> { [7] = 5, [9] = -100 }, Logprobs = 3,
        },
        new() { Temperature = 1.3f, Seed = 4, FrequencyPenalty = 0.5f, PresencePenalty = 0.3f, Logprobs = 8 },
    ];

    [Theory]
    [InlineData(EngineKind.Cpu)]
    [InlineData(EngineKind.IlgpuCpu)]
    public void Processed_logprobs_are_the_log_softmax_of_the_logits_the_token_is_drawn_from(EngineKind kind)
    {
        using var engine = InferenceEngine.Load(models.Write(TestModelFiles.Tiny), new EngineOptions
        {
            Engine = kind, BlockSize = 4, KvBlocks = 64, MaxNumSeqs = 8, MaxNumBatchedTokens = 64, Threads = 2,
        });
        void Fill(Func<int, SamplingParams> sampling)
        {
            engine.Inputs.Clear();
            for (int i = 0; i < Histories.Length; i++)
                engine.Inputs.Add(new StepItem(Histories[i], 0, Histories[i].Length, [.. Enumerable.Range(i * 4, 4)],
                    true, sampling(i), sampling(i).Seed ?? 0, Histories[i].Length - 2));
        }
        Fill(_ => SamplingParams.Greedy(1));
        engine.Step();
        var raw = Enumerable.Range(0, Histories.Length).Select(engine.GetLogits).ToArray();
        Fill(i => Asked[i] with { LogprobsMode = LogprobsMode.Processed });
        var tokens = engine.Step().ToArray();

        for (int i = 0; i < Histories.Length; i++)
        {
            var p = Asked[i];
            var penalised = Penalised(raw[i], p, Histories[i], Histories[i].Length - 2);
            var expected = p.IsGreedy ? LogSoftmax(penalised) : Drawn(penalised, p);
            int k = p.Logprobs!.Value;
            var order = penalised.Select((l, id) => (l, id)).OrderByDescending(t => t.l).ThenBy(t => t.id)
                .Select(t => t.id).Take(k).ToArray();
            Assert.Equal(order, engine.Logprobs.Ids(i)[..k].ToArray());
            for (int j = 0; j < k; j++) AssertLogprob(expected[order[j]], engine.Logprobs.Values(i)[j]);
            AssertLogprob(expected[tokens[i]], engine.Logprobs.Sampled[i]);
            Assert.True(double.IsFinite(expected[tokens[i]]), "the drawn token was one the cuts kept");
        }
        // the cuts removed some of the 20 (top-p 0.9 after min-p over a random model's flat distribution)
        Assert.Contains(float.NegativeInfinity, engine.Logprobs.Values(1)[..SamplingParams.MaxLogprobs].ToArray());
    }

    static void AssertLogprob(double expected, float actual)
    {
        if (double.IsNegativeInfinity(expected)) Assert.Equal(float.NegativeInfinity, actual);
        else Assert.Equal(expected, actual, 1e-4);
    }

    /// <summary>Bias (-100 bans), the repetition penalty over the whole history, presence and frequency over the
    /// generated tokens.</summary>
    static double[] Penalised(float[] raw, SamplingParams p, int[] history, int numPrompt)
    {
        var l = raw.Select(v => (double)v).ToArray();
        foreach (var (t, b) in p.LogitBias ?? new Dictionary<int, float>())
            l[t] = b <= -100 ? double.NegativeInfinity : l[t] + b;
        foreach (int t in history.Distinct())
            l[t] = l[t] > 0 ? l[t] / p.RepetitionPenalty : l[t] * p.RepetitionPenalty;
        foreach (var g in history.Skip(numPrompt).GroupBy(t => t))
            l[g.Key] -= p.FrequencyPenalty * g.Count() + p.PresencePenalty;
        return l;
    }

    static double[] LogSoftmax(IReadOnlyList<double> l)
    {
        double max = l.Max(), lse = max + Math.Log(l.Sum(v => Math.Exp(v - max)));
        return [.. l.Select(v => v - lse)];
    }

    /// <summary>The processed logits (logit / T, and -inf where top-k, then min-p over the softmax, then top-p over
    /// what min-p kept remove a token), log-softmaxed.</summary>
    static double[] Drawn(double[] penalised, SamplingParams p)
    {
        var order = penalised.Select((l, id) => (l, id)).OrderByDescending(t => t.l).ThenBy(t => t.id)
            .Select(t => t.id).ToArray();
        int n = p.TopK > 0 ? p.TopK : order.Length;
        double max = penalised[order[0]];
        var probs = order.Take(n).Select(id => Math.Exp((penalised[id] - max) / p.Temperature)).ToArray();
        double sum = probs.Sum();
        if (p.MinP > 0) n = probs.TakeWhile(q => q / sum >= probs[0] / sum * p.MinP).Count();
        if (p.TopP < 1)
        {
            double target = p.TopP * probs.Take(n).Sum() / sum, cum = 0;
            int keep = 0;
            while (keep < n && cum < target) cum += probs[keep++] / sum;
            n = Math.Max(1, keep);
        }
        var processed = Enumerable.Repeat(double.NegativeInfinity, penalised.Length).ToArray();
        for (int i = 0; i < n; i++) processed[order[i]] = penalised[order[i]] / p.Temperature;
        return LogSoftmax(processed);
    }
}
