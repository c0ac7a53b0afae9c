using System.Diagnostics;
using System.Text;
using Weft.GpuRuntime.Sampling;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>Replies drawn through a constraint's masks from random logits, for the grammar and mask tests.</summary>
static class ConstrainedSampling
{
    /// <summary>Samples from logits uniform in [0, 8) (plus <paramref name="endBoost"/> on the end tokens, so that a
    /// reply that may end soon does) until an end token; the reply's bytes. With <paramref name="forwardMs"/> above 0
    /// each next mask is computed while a forward pass of that long is simulated. <paramref name="applied"/> gets
    /// each step's time in Apply, in microseconds, and <paramref name="sampled"/> each token drawn, the end token
    /// included.</summary>
    public static byte[] Sample(ITokenConstraint constraint, Tokenizer tokenizer, ulong seed, int forwardMs,
        float endBoost = 0, Action<double>? applied = null, List<int>? sampled = null)
    {
        var sampler = new Sampler(tokenizer.VocabSize);
        var p = new SamplingParams { Seed = seed };
        var rng = new Random((int)seed);
        var tokens = new List<int> { tokenizer.BosId };
        var logits = new float[tokenizer.VocabSize];
        var bytes = new List<byte>();
        for (int step = 0; step < 2000; step++)
        {
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 8);
            foreach (int end in tokenizer.EndOfGenerationIds) logits[end] += endBoost;
            long start = Stopwatch.GetTimestamp();
            constraint.Apply(logits, tokens, 1);
            applied?.Invoke(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
            int token = sampler.Sample(logits, p, seed, tokens, 1);
            sampled?.Add(token);
            if (tokenizer.EndOfGenerationIds.Contains(token)) return [.. bytes];
            if (forwardMs > 0) constraint.Accepted(token);
            tokens.Add(token);
            bytes.AddRange(tokenizer.DecodeToken(token));
            if (forwardMs > 0) Thread.Sleep(forwardMs);
        }
        throw new Xunit.Sdk.XunitException("no end token in 2000 steps: " + Encoding.UTF8.GetString([.. bytes]));
    }
}
