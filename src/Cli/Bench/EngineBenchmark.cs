using System.Diagnostics;
using Weft.GpuRuntime.Engine;
using Weft.LlamaCpp;
using Weft.Scheduling;

namespace Weft.Cli.Bench;

/// <param name="Bandwidth">Bytes/s for the roofline instead of measuring (e.g. a GPU's datasheet figure).</param>
public sealed record EngineBenchOptions(string ModelPath, EngineKind Engine, int[] Batches, int Gen, int Prompt,
    int Prefill, bool PeerLlamaCpp, int Threads, string? JsonPath, bool Profile = false, double? Bandwidth = null);

/// <summary>One batch size's figures: aggregate decode tokens/s from the median step time.</summary>
public sealed record BatchResult(int Batch, double OursStepMs, double OursTokensPerSecond, double? PeerStepMs,
    double? PeerTokensPerSecond);

/// <summary>
/// `weft bench engine`: decode throughput of the engine alone at a sweep of batch sizes, side by side with llama.cpp on
/// the same file in the same run, plus prefill speed and the memory-bandwidth roofline (a decode step must read every
/// weight once, so step time ≥ weight bytes ÷ bandwidth).
/// </summary>
public static class EngineBenchmark
{
    public static int Run(EngineBenchOptions o, TextWriter output)
    {
        int threads = o.Threads > 0 ? o.Threads : Environment.ProcessorCount;
        int maxBatch = o.Batches.Max();
        int blockSize = new EngineOptions().BlockSize;
        int blocksPerSeq = BlocksPerSequence(o.Prompt, o.Gen, blockSize);
        var engineOptions = new EngineOptions
        {
            Engine = o.Engine,
            MaxNumSeqs = Math.Max(maxBatch, 1),
            MaxNumBatchedTokens = Math.Max(maxBatch, Math.Min(512, Math.Max(o.Prefill, o.Prompt))),
            KvBlocks = Math.Max(maxBatch * blocksPerSeq, (o.Prefill + blockSize) / blockSize + 1),
            // the benchmark hands out its own block tables: every layer in the main pool
            KvWindowBlocks = 0,
            Threads = threads,
            Profile = o.Profile,
        };
        using var engine = CliProgress.Run($"loading {Path.GetFileName(o.ModelPath)}",
            report => InferenceEngine.Load(o.ModelPath, engineOptions, progress: report));
        long weightBytes = WeightBytesPerStep(engine);
        output.WriteLine($"model      {o.ModelPath}: {engine.Config.Architecture}, {engine.Config.Layers} layers, " +
            $"dim {engine.Config.Dim}, vocab {engine.Config.VocabSize}, " +
            $"{weightBytes / 1e6:F0} MB of weights read per step");
        output.WriteLine($"engine     {engine.Description}");
        // a GPU's weights stream from its own memory, a CPU's from RAM
        double? device = o.Bandwidth is null ? engine.MeasureDeviceBandwidth() : null;
        double bandwidth = o.Bandwidth ?? device ?? MemoryBandwidth.MeasureBytesPerSecond(threads);
        string source = o.Bandwidth is not null ? "given"
            : device is not null ? "measured device copy" : "measured read";
        double rooflineMs = weightBytes / bandwidth * 1e3;
        output.WriteLine($"memory     {bandwidth / 1e9:F1} GB/s {source} bandwidth → roofline {rooflineMs:F3} ms " +
            $"per decode step ({1e3 / rooflineMs:F1} steps/s)");

        LlamaCppModel? peer = o.PeerLlamaCpp
            ? CliProgress.Run("loading llama.cpp", _ => new LlamaCppModel(o.ModelPath,
                contextSize: maxBatch * Math.Max(o.Prompt + o.Gen + 8, o.Prefill + 8), batchSize: 512,
                threads: threads, sequences: maxBatch))
            : null;
        try
        {
            var results = new List<BatchResult>();
            output.WriteLine();
            output.WriteLine(
                $"decode: {o.Gen} steps after a {o.Prompt}-token prompt per sequence; medians of step times");
            output.WriteLine(peer is null
                ? $"{"batch",5} {"step ms",9} {"tok/s",9} {"roofline %",11}"
                : $"{"batch",5} {"step ms",9} {"tok/s",9} {"llama.cpp ms",13} {"llama.cpp tok/s",16} " +
                    $"{"ours/llama.cpp",15} {"roofline %",11}");
            var profiles = new List<string>();
            foreach (int b in o.Batches)
            {
                engine.Profiler?.Reset();
                var steps = CliProgress.Run($"batch {b}",
                    report => DecodeSteps(engine, b, o.Prompt, o.Gen, report, engine.Profiler));
                if (engine.Profiler is { } profiler) profiles.Add(Profile(profiler, b, steps.Count));
                var ours = Median(steps);
                double? peerMs = null;
                if (peer is not null)
                    peerMs = Median(CliProgress.Run($"batch {b}, llama.cpp",
                        _ => peer.DecodeStepTimes(b, o.Prompt, o.Gen, WarmUpSteps, WarmUpTime))) * 1e3;
                var r = new BatchResult(b, ours * 1e3, b / ours, peerMs, peerMs is { } pm ? b / (pm / 1e3) : null);
                results.Add(r);
                if (b == o.Batches[0] && engine.LaunchesPerStep is { } launches)
                    output.WriteLine($"      (ILGPU: {launches} kernel launches per decode step)");
                output.WriteLine(peer is null
                    ? $"{b,5} {r.OursStepMs,9:F2} {r.OursTokensPerSecond,9:F1} {rooflineMs / r.OursStepMs,11:P0}"
                    : $"{b,5} {r.OursStepMs,9:F2} {r.OursTokensPerSecond,9:F1} {r.PeerStepMs,13:F2} " +
                        $"{r.PeerTokensPerSecond,16:F1} {r.OursTokensPerSecond / r.PeerTokensPerSecond,15:F2} " +
                        $"{rooflineMs / r.OursStepMs,11:P0}");
            }

            foreach (var p in profiles) output.Write(p);

            double? oursPrefill = null, peerPrefill = null;
            if (o.Prefill > 0)
            {
                Prefill(engine, Math.Min(o.Prefill, engine.Inputs.MaxTokens)); // warm-up
                engine.Profiler?.Reset();
                oursPrefill = o.Prefill / CliProgress.Run($"prefill of {o.Prefill} tokens",
                    _ => Prefill(engine, o.Prefill));
                if (engine.Profiler is { } profiler)
                    output.Write(Profile(profiler, o.Prefill, 1).Replace("at batch", "of a prompt of"));
                if (peer is not null) peerPrefill = o.Prefill / peer.PrefillSeconds(o.Prefill);
                output.WriteLine();
                output.WriteLine(peer is null
                    ? $"prefill {o.Prefill} tokens: {oursPrefill:F1} tok/s"
                    : $"prefill {o.Prefill} tokens: ours {oursPrefill:F1} tok/s, llama.cpp {peerPrefill:F1} tok/s, " +
                        $"ratio {oursPrefill / peerPrefill:F2}");
            }

            if (o.JsonPath is not null)
            {
                var json = new
                {
                    model = o.ModelPath, engine = engine.Description, weightBytes, bandwidthBytesPerSecond = bandwidth,
                    rooflineStepMs = rooflineMs, decode = results, prefillTokens = o.Prefill,
                    oursPrefillTokensPerSecond = oursPrefill, llamaCppPrefillTokensPerSecond = peerPrefill,
                };
                ServeBenchmark.WriteJson(o.JsonPath, json);
            }
            return 0;
        }
        finally
        {
            peer?.Dispose();
        }
    }

    /// <summary>Every weight matrix is read once per step; vectors are negligible and the embedding is only
    /// gathered.</summary>
    static long WeightBytesPerStep(InferenceEngine engine) =>
        engine.File.Tensors.Where(t => t.Dims.Length == 2 && t.Name != "token_embd.weight").Sum(t => t.ByteSize)
        + (engine.File.TryGetTensor("output.weight", out _) ? 0 : engine.File.GetTensor("token_embd.weight").ByteSize);

    static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count % 2 == 1 ? xs[xs.Count / 2] : (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]) / 2;
    }

    /// <summary>Where a decode step's time goes, per kind of kernel call.</summary>
    static string Profile(ProfilingBackend profiler, int batch, int steps)
    {
        var total = profiler.Times.Values.Aggregate(TimeSpan.Zero, (a, t) => a + t.Time);
        var text = new System.Text.StringBuilder(
            $"\nprofile at batch {batch}: {total.TotalMilliseconds / steps:F2} ms of kernels per step\n");
        foreach (var (name, (time, calls)) in profiler.Times.OrderByDescending(kv => kv.Value.Time))
            text.AppendLine(
                $"  {name,-30} {time.TotalMilliseconds / steps,8:F2} ms {time / total,7:P1}  ({calls / steps} calls)");
        return text.ToString();
    }

    /// <summary>
    /// Decode steps run untimed before the timed ones at each batch size: at least this many, and for at least
    /// <see cref="WarmUpTime"/>. Tiered compilation replaces the first steps' code over about a second: the median of
    /// 32 steps on the 300m Q4_K_M file read 10.9, 12.3 and 12.9 ms after two warm-up steps, against 10.1, 10.0 and
    /// 10.3 with tiering off. llama.cpp is given the same warm-up.
    /// </summary>
    public const int WarmUpSteps = 2;

    /// <inheritdoc cref="WarmUpSteps"/>
    public static readonly TimeSpan WarmUpTime = TimeSpan.FromSeconds(1);

    /// <summary>Blocks a benchmark sequence may touch: its prompt, the timed tokens (the warm-up rewinds to the
    /// prompt's end), and one to spare.</summary>
    static int BlocksPerSequence(int prompt, int gen, int blockSize) => (prompt + gen + 2 + blockSize) / blockSize + 1;

    /// <summary>Prefills <paramref name="batch"/> sequences, then times <paramref name="gen"/> decode steps of one
    /// token each.</summary>
    static List<double> DecodeSteps(InferenceEngine engine, int batch, int prompt, int gen, Action<double> report,
        ProfilingBackend? profiler = null)
    {
        int vocab = engine.Config.VocabSize, bs = engine.BlockSize;
        int blocksPerSeq = BlocksPerSequence(prompt, gen, bs);
        var seqs = Enumerable.Range(0, batch)
            .Select(s => new List<int>(Enumerable.Range(0, prompt).Select(i => (s * 7919 + i * 104729) % vocab)))
            .ToArray();
        var tables = Enumerable.Range(0, batch)
            .Select(s => Enumerable.Range(s * blocksPerSeq, blocksPerSeq).ToList()).ToArray();
        var computed = new int[batch];
        var sampling = SamplingParams.Greedy(gen);

        // prefill in chunks that fit a step
        for (int s = 0; s < batch; s++)
            while (computed[s] < prompt)
            {
                int n = Math.Min(engine.Inputs.MaxTokens, prompt - computed[s]);
                engine.Inputs.Clear();
                engine.Inputs.Add(new StepItem(seqs[s], computed[s], n, tables[s], computed[s] + n == prompt,
                    sampling, 0, prompt));
                var t = engine.Step();
                computed[s] += n;
                if (computed[s] == prompt) seqs[s].Add(t[0]);
            }

        void Decode()
        {
            engine.Inputs.Clear();
            for (int s = 0; s < batch; s++)
                engine.Inputs.Add(new StepItem(seqs[s], computed[s], 1, tables[s], true, sampling, 0, prompt));
            var next = engine.Step();
            for (int s = 0; s < batch; s++)
            {
                computed[s]++;
                seqs[s].Add(next[s]);
            }
        }
        void Rewind()
        {
            for (int s = 0; s < batch; s++)
            {
                computed[s] = prompt;
                seqs[s].RemoveRange(prompt + 1, seqs[s].Count - prompt - 1);
            }
        }

        // untimed, and rewound to the prompt's end so that the timed steps read the context they would without it
        var warm = Stopwatch.StartNew();
        for (int step = 0; step < WarmUpSteps || warm.Elapsed < WarmUpTime; step++)
        {
            if (step > 0 && step % gen == 0) Rewind();
            Decode();
        }
        Rewind();
        profiler?.Reset(); // the profile covers the timed decode steps only
        var times = new List<double>(gen);
        for (int step = 0; step < gen; step++)
        {
            var sw = Stopwatch.StartNew();
            Decode();
            times.Add(sw.Elapsed.TotalSeconds);
            report((step + 1.0) / gen);
        }
        return times;
    }

    static double Prefill(InferenceEngine engine, int tokens)
    {
        var seq = Enumerable.Range(0, tokens).Select(i => (i * 104729) % engine.Config.VocabSize).ToList();
        var table = Enumerable.Range(0, (tokens + engine.BlockSize) / engine.BlockSize + 1).ToList();
        var sw = Stopwatch.StartNew();
        for (int done = 0; done < tokens;)
        {
            int n = Math.Min(engine.Inputs.MaxTokens, tokens - done);
            engine.Inputs.Clear();
            engine.Inputs.Add(new StepItem(seq, done, n, table, done + n == tokens, SamplingParams.Greedy(1), 0,
                tokens));
            engine.Step();
            done += n;
        }
        return sw.Elapsed.TotalSeconds;
    }
}
