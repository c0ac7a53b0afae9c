using System.CommandLine;
using System.Diagnostics;
using Weft.GpuRuntime.Engine;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.Cli;

/// <summary>
/// `weft gpu-check`: runs an ILGPU engine (CUDA by default) beside the cpu backend on small generated models and checks
/// that they agree: the first step's logits within a bound per weight type, and for f32 every token of a batch of
/// greedy and sampled generations (prefill long enough for the tiled matmul, decodes crossing KV blocks). Exit code 1
/// on any failure.
/// </summary>
static class GpuCheckCommands
{
    public static Command Create()
    {
        var engine = new Option<string>("--engine")
        {
            Description = "cuda or ilgpu-cpu",
            DefaultValueFactory = _ => "cuda"
        };
        var tokens = new Option<int>("--tokens")
        {
            Description = "tokens generated per sequence",
            DefaultValueFactory = _ => 48
        };
        var preset = new Option<string>("--preset")
        {
            Description = "shape of the generated models (tiny, small, 300m, 1b)",
            DefaultValueFactory = _ => "small"
        };
        var cmd = new Command("gpu-check",
            "check an ILGPU engine's kernels against the cpu backend on generated models " +
            "(logits, greedy and sampled tokens)")
            { engine, tokens, preset };
        cmd.SetAction(r => Run(EngineKinds.Parse(r.GetValue(engine)!), r.GetValue(tokens),
            DemoModelShape.Preset(r.GetValue(preset)!), Console.Out));
        return cmd;
    }

    public static int Run(EngineKind kind, int count, DemoModelShape shape, TextWriter output)
    {
        if (kind is not (EngineKind.Cuda or EngineKind.IlgpuCpu))
            throw new ArgumentException("gpu-check compares an ILGPU engine (cuda or ilgpu-cpu) with the cpu backend");
        if (count < 1) throw new ArgumentException("--tokens must be at least 1");
        var dir = Directory.CreateTempSubdirectory("weft-gpu-check-");
        bool ok = true;
        try
        {
            foreach (var (type, kv) in new[] { (GgmlType.F32, KvCacheType.F32), (GgmlType.F16, KvCacheType.F16),
                (GgmlType.BF16, KvCacheType.F16), (GgmlType.Q8_0, KvCacheType.F16) })
            {
                string path = Path.Combine(dir.FullName, $"{shape.Name}-{type}.gguf");
                DemoModel.Create(path, shape with { Type = type });
                var options = new EngineOptions
                {
                    BlockSize = 16,
                    KvBlocks = 256,
                    // the check hands out its own block tables: every layer in the main pool
                    KvWindowBlocks = 0,
                    KvCacheType = kv,
                    MaxNumSeqs = 8,
                    MaxNumBatchedTokens = 256
                };
                using var cpu = InferenceEngine.Load(path, options with { Engine = EngineKind.Cpu });
                using var dev = InferenceEngine.Load(path, options with { Engine = kind });
                var expected = Generate(cpu, count, out var cpuLogits, out _);
                var actual = Generate(dev, count, out var devLogits, out double stepMs);
                float maxDiff = cpuLogits.Zip(devLogits).Max(p => MathF.Abs(p.First - p.Second));
                int mismatches = expected.Zip(actual).Count(p => !p.First.SequenceEqual(p.Second));
                var agree = expected.Zip(actual, (e, a) => e.Zip(a).TakeWhile(t => t.First == t.Second).Count())
                    .ToArray();
                // Two correct engines that sum in different orders round the inputs of f16/bf16 dot products (and, far
                // more coarsely, the 8-bit activations of q8_0 ones) differently here and there, so logits move by up
                // to a few hundredths, or tenths for q8_0, and a draw near a boundary can pick another token. Only f32
                // with an f32 cache must give the very same tokens; the other types must stay within their bound.
                float bound = type switch
                {
                    GgmlType.F32 => 2e-3f,
                    GgmlType.F16 => 5e-2f,
                    GgmlType.BF16 => 0.2f,
                    _ => 0.5f,
                };
                bool pass = maxDiff < bound && (type != GgmlType.F32 || mismatches == 0);
                ok &= pass;
                output.WriteLine($"{(pass ? "ok  " : "FAIL")} {shape.Name} {type,-5} kv {kv}: " +
                    $"logits max |diff| {maxDiff:E2} (bound {bound:G2}), " +
                    $"{expected.Length - mismatches}/{expected.Length} sequences identical " +
                    $"(tokens agreeing: {string.Join(", ", agree)} of {count}), " +
                    $"{stepMs:F2} ms per decode step, {dev.LaunchesPerStep} launches per step ({dev.Description})");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
        output.WriteLine(ok ? "gpu-check passed" : "gpu-check FAILED");
        return ok ? 0 : 1;
    }

    /// <summary>Four sequences in one batch: two greedy, two sampled (one with penalties); a 40-token prompt prefilled
    /// in one step.</summary>
    static List<int>[] Generate(InferenceEngine engine, int count, out float[] firstLogits, out double decodeStepMs)
    {
        int vocab = engine.Config.VocabSize;
        SamplingParams[] settings =
        [
            SamplingParams.Greedy(count),
            new() { Temperature = 0.8f, TopK = 40, TopP = 0.9f, Seed = 17 },
            SamplingParams.Greedy(count) with { RepetitionPenalty = 1.2f },
            new() { Temperature = 1f, MinP = 0.05f, PresencePenalty = 0.5f, FrequencyPenalty = 0.3f, Seed = 23 },
        ];
        var seqs = Enumerable.Range(0, 4)
            .Select(s => Enumerable.Range(0, 40).Select(i => 3 + (i * 131 + s * 977) % (vocab - 3)).ToList()).ToArray();
        var tables = Enumerable.Range(0, 4)
            .Select(s => Enumerable.Range(0, 64).Select(b => (b * 4 + s) % 256).ToList()).ToArray();
        var computed = new int[4];
        firstLogits = [];
        var sw = new Stopwatch();
        for (int step = 0; step <= count - 1; step++)
        {
            engine.Inputs.Clear();
            for (int s = 0; s < 4; s++)
                engine.Inputs.Add(new StepItem(seqs[s], computed[s], seqs[s].Count - computed[s], tables[s], true,
                    settings[s], settings[s].Seed ?? 0, 40));
            if (step == 1) sw.Start();
            var next = engine.Step();
            if (step == 0) firstLogits = engine.GetLogits(0);
            for (int s = 0; s < 4; s++)
            {
                computed[s] = seqs[s].Count;
                seqs[s].Add(next[s]);
            }
        }
        decodeStepMs = sw.Elapsed.TotalMilliseconds / Math.Max(1, count - 1);
        return seqs.Select(q => q.Skip(40).ToList()).ToArray();
    }
}
