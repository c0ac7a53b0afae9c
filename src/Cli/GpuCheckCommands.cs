using System.CommandLine;
using System.Diagnostics;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Gguf;
using Weft.GpuRuntime.Models;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Tokenization;

namespace Weft.Cli;

/// <summary>
/// `weft gpu-check`: runs an ILGPU engine (CUDA by default) beside the cpu backend on small generated models and checks
/// that they agree: the first step's logits within a tolerance, and every token of a batch of greedy and sampled
/// generations (prefill long enough for the tiled matmul, decodes crossing KV blocks). Exit code 1 on any mismatch.
/// </summary>
static class GpuCheckCommands
{
    public static Command Create()
    {
        var engine = new Option<string>("--engine") { Description = "cuda or ilgpu-cpu", DefaultValueFactory = _ => "cuda" };
        var tokens = new Option<int>("--tokens") { Description = "tokens generated per sequence", DefaultValueFactory = _ => 48 };
        var preset = new Option<string>("--preset") { Description = "shape of the generated models (tiny, small, 300m, 1b)", DefaultValueFactory = _ => "small" };
        var cmd = new Command("gpu-check", "check an ILGPU engine's kernels against the cpu backend on generated models (logits, greedy and sampled tokens)")
            { engine, tokens, preset };
        cmd.SetAction(r => Run(EngineKinds.Parse(r.GetValue(engine)!), r.GetValue(tokens), DemoModelShape.Preset(r.GetValue(preset)!), Console.Out));
        cmd.Subcommands.Add(DemoModelCommand());
        return cmd;
    }

    // TODO(lead): once `weft model create` lands, scripts/gpu-check.sh can use it and this subcommand can go.
    static Command DemoModelCommand()
    {
        var preset = new Option<string>("--preset") { Description = "tiny, small, 300m or 1b", DefaultValueFactory = _ => "1b" };
        var type = new Option<string>("--type") { Description = "f32, f16, bf16 or q8_0", DefaultValueFactory = _ => "f16" };
        var output = new Option<string>("--out") { Description = "GGUF file to write", Required = true };
        var cmd = new Command("demo-model", "write a generated random-weight model (for benchmarks on a host without model files)") { preset, type, output };
        cmd.SetAction(r =>
        {
            var shape = DemoModelShape.Preset(r.GetValue(preset)!) with { Type = ParseType(r.GetValue(type)!) };
            DemoModel.Write(r.GetValue(output)!, shape, Vocabulary(shape.VocabSize));
            Console.WriteLine($"wrote {r.GetValue(output)}: {shape.Name}, {shape.Type}");
            return 0;
        });
        return cmd;
    }

    static GgmlType ParseType(string s) => s.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        _ => throw new ArgumentException($"unknown type '{s}' (expected f32, f16, bf16 or q8_0)"),
    };

    /// <summary>Byte tokens and placeholder words: enough for generated models, which are driven by token ids.</summary>
    static VocabularySpec Vocabulary(int size)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add((int)TokenType.Byte); }
        for (int i = 0; tokens.Count < size; i++) { tokens.Add("▁w" + i); types.Add((int)TokenType.Normal); }
        return new VocabularySpec("llama", [.. tokens], [.. types], tokens.Select((_, j) => -(float)j).ToArray(), null, null, 1, 2, 0, null, true, true, null);
    }

    public static int Run(EngineKind kind, int count, DemoModelShape shape, TextWriter output)
    {
        if (kind is not (EngineKind.Cuda or EngineKind.IlgpuCpu)) throw new ArgumentException("gpu-check compares an ILGPU engine (cuda or ilgpu-cpu) with the cpu backend");
        var dir = Directory.CreateTempSubdirectory("weft-gpu-check-");
        bool ok = true;
        try
        {
            foreach (var (type, kv) in new[] { (GgmlType.F32, KvCacheType.F32), (GgmlType.F16, KvCacheType.F16), (GgmlType.BF16, KvCacheType.F16), (GgmlType.Q8_0, KvCacheType.F16) })
            {
                string path = Path.Combine(dir.FullName, $"{shape.Name}-{type}.gguf");
                DemoModel.Write(path, shape with { Type = type }, Vocabulary(shape.VocabSize));
                var options = new EngineOptions { BlockSize = 16, KvBlocks = 256, KvCacheType = kv, MaxNumSeqs = 8, MaxNumBatchedTokens = 256 };
                using var cpu = InferenceEngine.Load(path, options with { Engine = EngineKind.Cpu });
                using var dev = InferenceEngine.Load(path, options with { Engine = kind });
                var expected = Generate(cpu, count, out var cpuLogits, out _);
                var actual = Generate(dev, count, out var devLogits, out double stepMs);
                float maxDiff = cpuLogits.Zip(devLogits).Max(p => MathF.Abs(p.First - p.Second));
                int mismatches = expected.Zip(actual).Count(p => !p.First.SequenceEqual(p.Second));
                // f16 inputs round differently when sums are ordered differently (see the ILGPU tests), hence the looser bound
                bool pass = mismatches == 0 && maxDiff < (type is GgmlType.F16 or GgmlType.BF16 ? 2e-2f : 2e-3f);
                ok &= pass;
                output.WriteLine($"{(pass ? "ok  " : "FAIL")} {shape.Name} {type,-5} kv {kv}: logits max |diff| {maxDiff:E2}, {expected.Length - mismatches}/{expected.Length} sequences identical, " +
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

    /// <summary>Four sequences in one batch: two greedy, two sampled (one with penalties); a 40-token prompt prefilled in one step.</summary>
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
        var seqs = Enumerable.Range(0, 4).Select(s => Enumerable.Range(0, 40).Select(i => 3 + (i * 131 + s * 977) % (vocab - 3)).ToList()).ToArray();
        var tables = Enumerable.Range(0, 4).Select(s => Enumerable.Range(0, 64).Select(b => (b * 4 + s) % 256).ToList()).ToArray();
        var computed = new int[4];
        firstLogits = [];
        var sw = new Stopwatch();
        for (int step = 0; step <= count - 1; step++)
        {
            engine.Inputs.Clear();
            for (int s = 0; s < 4; s++)
                engine.Inputs.Add(new StepItem(seqs[s], computed[s], seqs[s].Count - computed[s], tables[s], true, settings[s], settings[s].Seed ?? 0, 40));
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
