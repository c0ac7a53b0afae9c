using System.Diagnostics;
using System.Text.Json;
using Weft.Abstractions;
using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.Cli.Bench;

/// <summary>Figures of one concurrency level.</summary>
public sealed record ServeLevel(
    int Concurrency, int Requests, long GeneratedTokens, double Seconds, double TokensPerSecond,
    double TtftP50Ms, double TtftP90Ms, double TtftP99Ms, double ItlP50Ms, double ItlP99Ms, double E2eP50Ms,
    double? EngineTokensPerSecond, double? MeanBatchSize, double? MeanTickMs, double? MeanForwardMs,
    double? DeviceIdleFraction = null, TtftSplit? Ttft = null, int Refused = 0, int Failed = 0,
    string? FirstError = null, double? PeerTokensPerSecond = null);

/// <summary>The mean time to first token in three parts: queueing (admission to the start of the forward pass of the
/// prompt's first chunk), prefill (from there to the end of the forward pass that sampled the first token), and the
/// rest (delivery, and the request's way in).</summary>
public sealed record TtftSplit(double MeanMs, double QueueMs, double PrefillMs, double DeliveryMs);

/// <summary>
/// `weft bench serve`: closed-loop load at a sweep of concurrencies (each client sends its requests back to back),
/// reporting aggregate generated tokens/s, time to first token and inter-token latency percentiles. In process it also
/// measures the engine alone on the same workload, so the cost of Orleans and the scheduler is a ratio from one run.
/// </summary>
static class ServeBenchmark
{
    public static async Task<IReadOnlyList<ServeLevel>> RunAsync(ILoadTarget target, int[] concurrency, int prompt,
        int gen, int requestsPerClient, Func<int, double>? engineOnly, Func<Task<BatchStats>>? batchStats,
        TextWriter output, Func<int, double>? peer = null)
    {
        output.WriteLine($"closed loop: each client sends {requestsPerClient} requests back to back; {prompt}-token " +
            $"prompts, {gen} tokens each (ignore_eos)");
        output.WriteLine(engineOnly is null
            ? $"{"clients",7} {"tok/s",9} {"TTFT p50",9} {"p90",7} {"p99",7} {"ITL p50",8} {"p99",7} {"e2e p50",8}" +
                (peer is null ? "" : $" {"llama.cpp",10} {"served/llama.cpp",17}")
            : $"{"clients",7} {"tok/s",9} {"engine",9} {"served/engine",14} {"batch",6} {"tick ms",8} {"fwd ms",7} " +
                $"{"TTFT p50",9} {"p90",7} {"p99",7} {"ITL p50",8} {"p99",7} {"e2e p50",8} {"idle",6} " +
                $"{"TTFT mean = queue + prefill + delivery",39}" +
            (peer is null ? "" : $" {"llama.cpp",10} {"served/llama.cpp",17}"));
        // Every level once first, one request per client, as the engine-alone figures are warmed: a single short
        // request left the first level paying for JIT tiering of the served path (84 % of the engine at one client
        // first, 101 % and 106 % at the same level run twice more, 300m f16 cpu).
        int round = 0;
        await CliProgress.RunAsync("warming up", async report =>
        {
            for (int i = 0; i < concurrency.Length; i++)
            {
                await LoadAsync(target, ++round, concurrency[i], 1, prompt, gen, _ => { });
                report((i + 1.0) / concurrency.Length);
            }
            return round;
        });

        var levels = new List<ServeLevel>();
        foreach (int c in concurrency)
        {
            double? engine = engineOnly?.Invoke(c), peerTokensPerSecond = peer?.Invoke(c);
            var before = batchStats is null ? null : await batchStats();
            var load = await CliProgress.RunAsync($"{c} clients",
                report => LoadAsync(target, ++round, c, requestsPerClient, prompt, gen, report));
            var (ttft, itl, e2e, tokens, seconds) = (load.Ttft, load.Itl, load.E2e, load.Tokens, load.Seconds);
            double? meanBatch = null, tickMs = null, forwardMs = null, idle = null;
            TtftSplit? split = null;
            if (batchStats is not null && before is not null)
            {
                // the grain reports means since activation: turn them into this level's means
                var after = await batchStats();
                long ticks = after.Ticks - before.Ticks;
                double Delta(Func<BatchStats, double> mean) =>
                    ticks == 0 ? 0 : (mean(after) * after.Ticks - mean(before) * before.Ticks) / ticks;
                meanBatch = Delta(s => s.MeanBatchSize);
                tickMs = Delta(s => s.MeanTickMs);
                forwardMs = Delta(s => s.MeanForwardMs);
                double cycle = after.DeviceCycleMs - before.DeviceCycleMs;
                idle = cycle == 0 ? 0 : (after.DeviceIdleMs - before.DeviceIdleMs) / cycle;
                long first = after.FirstTokens - before.FirstTokens;
                if (first > 0 && ttft.Count > 0)
                {
                    double queue = (after.QueueMs - before.QueueMs) / first,
                        prefill = (after.PrefillMs - before.PrefillMs) / first,
                        mean = ttft.Average();
                    split = new TtftSplit(mean, queue, prefill, mean - queue - prefill);
                }
            }
            var level = new ServeLevel(c, c * requestsPerClient, tokens, seconds, tokens / seconds,
                Percentile(ttft, 50), Percentile(ttft, 90), Percentile(ttft, 99), Percentile(itl, 50),
                Percentile(itl, 99), Percentile(e2e, 50), engine, meanBatch, tickMs, forwardMs, idle, split,
                load.Refused, load.Failed, load.FirstError, peerTokensPerSecond);
            levels.Add(level);
            string versusPeer = peerTokensPerSecond is { } p
                ? $" {p,10:F1} {level.TokensPerSecond / p,16:F2}x"
                : "";
            output.WriteLine(engine is null
                ? $"{c,7} {level.TokensPerSecond,9:F1} {level.TtftP50Ms,7:F0}ms {level.TtftP90Ms,5:F0}ms " +
                    $"{level.TtftP99Ms,5:F0}ms {level.ItlP50Ms,6:F1}ms {level.ItlP99Ms,5:F1}ms " +
                    $"{level.E2eP50Ms,6:F0}ms{versusPeer}"
                : $"{c,7} {level.TokensPerSecond,9:F1} {engine,9:F1} {level.TokensPerSecond / engine,14:P1} " +
                    $"{meanBatch,6:F1} {tickMs,8:F1} {forwardMs,7:F1} {level.TtftP50Ms,7:F0}ms " +
                    $"{level.TtftP90Ms,5:F0}ms {level.TtftP99Ms,5:F0}ms {level.ItlP50Ms,6:F1}ms " +
                    $"{level.ItlP99Ms,5:F1}ms {level.E2eP50Ms,6:F0}ms {idle,6:P1} " +
                    $"{split?.MeanMs,9:F1} = {split?.QueueMs,6:F1} + {split?.PrefillMs,7:F1} + " +
                    $"{split?.DeliveryMs,8:F1} ms{versusPeer}");
            if (level.Refused + level.Failed > 0)
                output.WriteLine($"{"",7} {level.Refused} of {level.Requests} requests refused (429), " +
                    $"{level.Failed} failed{(level.FirstError is { } error ? $" (first: {error})" : "")}");
        }
        return levels;
    }

    /// <summary>What one closed-loop run measured. Latencies in ms; refused and failed requests count apart and add no
    /// latency.</summary>
    internal sealed record Load(List<double> Ttft, List<double> Itl, List<double> E2e, long Tokens, double Seconds,
        int Refused, int Failed, string? FirstError);

    /// <summary>One closed-loop run. Each <paramref name="round"/> has prompts of its own, so none is served from an
    /// earlier round's prefix cache. A refused or failed request is counted and its client goes on with the next, as
    /// a load test must see how a server behaves past its capacity rather than stop there.</summary>
    internal static async Task<Load> LoadAsync(ILoadTarget target, int round, int clients, int requestsPerClient,
        int prompt, int gen, Action<double> report)
    {
        var ttft = new List<double>();
        var itl = new List<double>();
        var e2e = new List<double>();
        long tokens = 0;
        int refused = 0, failed = 0, done = 0;
        string? firstError = null;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async client =>
        {
            for (int r = 0; r < requestsPerClient; r++)
            {
                var start = Stopwatch.GetTimestamp();
                long last = 0;
                int n = 0;
                var mine = (Ttft: new List<double>(), Itl: new List<double>());
                try
                {
                    await foreach (int k in target.GenerateAsync(
                        Prompt(round * 100_000 + client * 1000 + r + 1, prompt), gen, CancellationToken.None))
                    {
                        long now = Stopwatch.GetTimestamp();
                        if (last == 0) mine.Ttft.Add(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds);
                        else for (int i = 0; i < k; i++)
                            mine.Itl.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds / k);
                        last = now;
                        n += k;
                    }
                }
                catch (Exception e) when (e is RefusedException
                    or WeftException { Code: WeftErrorCode.QueueFull or WeftErrorCode.TenantLimit })
                {
                    Interlocked.Increment(ref refused);
                    continue;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Interlocked.CompareExchange(ref firstError, e.Message.ReplaceLineEndings(" "), null);
                    Interlocked.Increment(ref failed);
                    continue;
                }
                finally
                {
                    report((double)Interlocked.Increment(ref done) / (clients * requestsPerClient));
                }
                lock (ttft)
                {
                    ttft.AddRange(mine.Ttft);
                    itl.AddRange(mine.Itl);
                    e2e.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    tokens += n;
                }
            }
        }));
        return new Load(ttft, itl, e2e, tokens, wall.Elapsed.TotalSeconds, refused, failed, firstError);
    }

    /// <summary>Distinct prompts per request, so no request is served from another's prefix cache.</summary>
    public static int[] Prompt(int salt, int length) =>
        [1, .. Enumerable.Range(0, length - 1)
            .Select(i => 259 + (int)((uint)(salt * 7919 + i * 104729 + salt * i * 31) % 1000))];

    /// <summary>
    /// The same closed-loop workload as one level without Orleans: the scheduler and the engine driven directly
    /// (<see cref="BatchEngine"/>), each client's next request admitted as soon as its previous one finishes. What the
    /// served figure loses against this is the cost of grains, streaming and messaging. Generated tokens per second.
    /// </summary>
    public static double EngineOnly(InferenceEngine engine, int concurrency, int prompt, int gen, int requestsPerClient)
    {
        var batch = BatchEngine.Create(engine, new SchedulerOptions
        {
            MaxModelLen = engine.MaxModelLen,
            MaxNumSeqs = engine.Options.MaxNumSeqs,
            MaxNumBatchedTokens = engine.Options.MaxNumBatchedTokens,
        }, new HashSet<int>());
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = gen, IgnoreEos = true };
        var sent = new int[concurrency];
        long id = 0;
        void Send(int client) =>
            batch.Scheduler.Add(new Sequence(++id, Prompt(client * 1000 + ++sent[client], prompt), sampling));
        var clientOf = new Dictionary<long, int>();
        for (int c = 0; c < concurrency; c++)
        {
            Send(c);
            clientOf[id] = c;
        }
        long tokens = 0;
        var sw = Stopwatch.StartNew();
        while (batch.Scheduler.HasWork)
        {
            var tick = batch.TickAsync().GetAwaiter().GetResult();
            tokens += tick.Sampled.Count;
            foreach (var done in tick.Finished)
            {
                int client = clientOf[done.Id];
                if (sent[client] < requestsPerClient)
                {
                    Send(client);
                    clientOf[id] = client;
                }
            }
        }
        return tokens / sw.Elapsed.TotalSeconds;
    }

    internal static double Percentile(List<double> xs, double p)
    {
        if (xs.Count == 0) return 0;
        xs.Sort();
        double rank = p / 100 * (xs.Count - 1);
        int lo = (int)rank;
        return lo + 1 < xs.Count ? xs[lo] + (rank - lo) * (xs[lo + 1] - xs[lo]) : xs[lo];
    }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static void WriteJson(string path, object report) =>
        File.WriteAllText(path, JsonSerializer.Serialize(report, Indented));
}
