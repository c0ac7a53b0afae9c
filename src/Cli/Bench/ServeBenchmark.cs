using System.Diagnostics;
using System.Text.Json;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Sampling;

namespace Weft.Cli.Bench;

/// <summary>Figures of one concurrency level.</summary>
public sealed record ServeLevel(
    int Concurrency, int Requests, long GeneratedTokens, double Seconds, double TokensPerSecond,
    double TtftP50Ms, double TtftP90Ms, double TtftP99Ms, double ItlP50Ms, double ItlP99Ms, double E2eP50Ms,
    double? EngineTokensPerSecond, double? MeanBatchSize);

/// <summary>
/// `weft bench serve`: closed-loop load at a sweep of concurrencies (each client sends its requests back to back),
/// reporting aggregate generated tokens/s, time to first token and inter-token latency percentiles. In process it also
/// measures the engine alone on the same workload, so the cost of Orleans and the scheduler is a ratio from one run.
/// </summary>
static class ServeBenchmark
{
    public static async Task<IReadOnlyList<ServeLevel>> RunAsync(ILoadTarget target, int[] concurrency, int prompt, int gen, int requestsPerClient,
        Func<int, double>? engineOnly, Func<Task<(long Ticks, double Batched)>>? batchStats, TextWriter output)
    {
        output.WriteLine($"closed loop: each client sends {requestsPerClient} requests back to back; {prompt}-token prompts, {gen} tokens each (ignore_eos)");
        output.WriteLine(engineOnly is null
            ? $"{"clients",7} {"tok/s",9} {"TTFT p50",9} {"p90",7} {"p99",7} {"ITL p50",8} {"p99",7} {"e2e p50",8}"
            : $"{"clients",7} {"tok/s",9} {"engine",9} {"served/engine",14} {"batch",6} {"TTFT p50",9} {"p90",7} {"p99",7} {"ITL p50",8} {"p99",7} {"e2e p50",8}");
        // one request first so start-up costs (activation, JIT) stay out of the figures
        await foreach (var _ in target.GenerateAsync(Prompt(0, prompt), 2, CancellationToken.None)) { }

        var levels = new List<ServeLevel>();
        foreach (int c in concurrency)
        {
            double? engine = engineOnly?.Invoke(c);
            var before = batchStats is null ? default : await batchStats();
            var ttft = new List<double>();
            var itl = new List<double>();
            var e2e = new List<double>();
            long tokens = 0;
            var wall = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, c).Select(async client =>
            {
                for (int r = 0; r < requestsPerClient; r++)
                {
                    var start = Stopwatch.GetTimestamp();
                    long last = 0;
                    int n = 0;
                    await foreach (int k in target.GenerateAsync(Prompt(client * 1000 + r + 1, prompt), gen, CancellationToken.None))
                    {
                        long now = Stopwatch.GetTimestamp();
                        lock (ttft)
                        {
                            if (last == 0) ttft.Add(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds);
                            else for (int i = 0; i < k; i++) itl.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds / k);
                        }
                        last = now;
                        n += k;
                    }
                    lock (ttft)
                    {
                        e2e.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                        tokens += n;
                    }
                }
            }));
            double seconds = wall.Elapsed.TotalSeconds;
            double? meanBatch = null;
            if (batchStats is not null)
            {
                var after = await batchStats();
                long ticks = after.Ticks - before.Ticks;
                meanBatch = ticks == 0 ? 0 : (after.Batched - before.Batched) / ticks;
            }
            var level = new ServeLevel(c, c * requestsPerClient, tokens, seconds, tokens / seconds,
                Percentile(ttft, 50), Percentile(ttft, 90), Percentile(ttft, 99), Percentile(itl, 50), Percentile(itl, 99), Percentile(e2e, 50),
                engine, meanBatch);
            levels.Add(level);
            output.WriteLine(engine is null
                ? $"{c,7} {level.TokensPerSecond,9:F1} {level.TtftP50Ms,7:F0}ms {level.TtftP90Ms,5:F0}ms {level.TtftP99Ms,5:F0}ms {level.ItlP50Ms,6:F1}ms {level.ItlP99Ms,5:F1}ms {level.E2eP50Ms,6:F0}ms"
                : $"{c,7} {level.TokensPerSecond,9:F1} {engine,9:F1} {level.TokensPerSecond / engine,14:P1} {meanBatch,6:F1} {level.TtftP50Ms,7:F0}ms {level.TtftP90Ms,5:F0}ms {level.TtftP99Ms,5:F0}ms {level.ItlP50Ms,6:F1}ms {level.ItlP99Ms,5:F1}ms {level.E2eP50Ms,6:F0}ms");
        }
        return levels;
    }

    /// <summary>Distinct prompts per request, so no request is served from another's prefix cache.</summary>
    public static int[] Prompt(int salt, int length) =>
        [1, .. Enumerable.Range(0, length - 1).Select(i => 259 + (int)((uint)(salt * 7919 + i * 104729 + salt * i * 31) % 1000))];

    /// <summary>
    /// The engine alone on the same workload as one level: every client's requests, <paramref name="concurrency"/> at a
    /// time, each a prefill then <paramref name="gen"/> batched decode steps. Generated tokens per second.
    /// </summary>
    public static double EngineOnly(InferenceEngine engine, int concurrency, int prompt, int gen, int requestsPerClient)
    {
        int bs = engine.BlockSize, blocksPerSeq = (prompt + gen + bs) / bs + 1;
        var tables = Enumerable.Range(0, concurrency).Select(s => Enumerable.Range(s * blocksPerSeq, blocksPerSeq).ToList()).ToArray();
        var sampling = SamplingParams.Greedy(gen);
        var sw = Stopwatch.StartNew();
        for (int round = 0; round < requestsPerClient; round++)
        {
            var seqs = Enumerable.Range(0, concurrency).Select(s => new List<int>(Prompt(s * 1000 + round + 1, prompt))).ToArray();
            var computed = new int[concurrency];
            var active = new List<int>(concurrency);
            while (true)
            {
                engine.Inputs.Clear();
                active.Clear();
                int budget = engine.Inputs.MaxTokens;
                for (int s = 0; s < concurrency && budget > 0; s++)
                {
                    if (seqs[s].Count - prompt >= gen) continue;
                    int n = Math.Min(seqs[s].Count - computed[s], budget);
                    budget -= n;
                    engine.Inputs.Add(new StepItem(seqs[s], computed[s], n, tables[s], computed[s] + n == seqs[s].Count, sampling, 0, prompt));
                    active.Add(s);
                }
                if (active.Count == 0) break;
                var next = engine.Step();
                int i = 0;
                for (int a = 0; a < active.Count; a++)
                {
                    var item = engine.Inputs.Items[a];
                    computed[active[a]] += item.Count;
                    if (item.NeedsToken) seqs[active[a]].Add(next[i++]);
                }
            }
        }
        return (double)concurrency * requestsPerClient * gen / sw.Elapsed.TotalSeconds;
    }

    static double Percentile(List<double> xs, double p)
    {
        if (xs.Count == 0) return 0;
        xs.Sort();
        double rank = p / 100 * (xs.Count - 1);
        int lo = (int)rank;
        return lo + 1 < xs.Count ? xs[lo] + (rank - lo) * (xs[lo + 1] - xs[lo]) : xs[lo];
    }

    public static void WriteJson(string path, object report) =>
        File.WriteAllText(path, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
}
