using System.Text.Json;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Ilgpu;

/// <summary>
/// The ILGPU engine on ILGPU's CPU accelerator (the same kernels CUDA runs) against the cpu backend: whole generations,
/// batched against solo, sampling, and the fused launch count.
/// </summary>
public sealed class IlgpuEngineTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    const int BlockSize = 4;

    /// <summary>The tiny engine these tests and <see cref="Weft.GpuRuntime.Tests.Engine.ForkedChoicesTests"/> run:
    /// blocks of four tokens, so that short prompts span several.</summary>
    internal static InferenceEngine Load(string path, EngineKind kind, KvCacheType kv) =>
        InferenceEngine.Load(path, new EngineOptions
        {
            Engine = kind,
            BlockSize = BlockSize,
            KvBlocks = 64,
            KvCacheType = kv,
            MaxNumSeqs = 8,
            MaxNumBatchedTokens = 64,
            Threads = 2,
        });

    /// <summary>Prefills the prompt in one step and decodes greedily; returns the tokens and the logits of the first
    /// step.</summary>
    /// <param name="chunk">Prefill at most this many tokens a step; the steps before the last chunk need no
    /// logits.</param>
    static (List<int> Tokens, float[] FirstLogits) Generate(InferenceEngine engine, int[] prompt, int count,
        SamplingParams sampling, int chunk = int.MaxValue)
    {
        var tokens = new List<int>(prompt);
        var blocks = Enumerable.Range(0, 64).Select(b => (b * 37) % 64).ToList(); // scattered blocks
        float[]? first = null;
        int computed = 0;
        while (tokens.Count < prompt.Length + count)
        {
            engine.Inputs.Clear();
            int n = Math.Min(chunk, tokens.Count - computed);
            bool needsLogits = computed + n == tokens.Count;
            engine.Inputs.Add(new StepItem(tokens, computed, n, blocks, needsLogits, sampling, sampling.Seed ?? 0,
                prompt.Length));
            computed += n;
            var next = engine.Step();
            if (!needsLogits) continue;
            first ??= engine.GetLogits(0);
            tokens.Add(next[0]);
        }
        return (tokens.Skip(prompt.Length).ToList(), first!);
    }

    [Theory]
    [InlineData(GgmlType.F32, KvCacheType.F32)]
    [InlineData(GgmlType.F16, KvCacheType.F16)]
    [InlineData(GgmlType.Q8_0, KvCacheType.F16)]
    [InlineData(GgmlType.Q4_0, KvCacheType.F32)]
    public void Greedy_generation_matches_the_cpu_backend(GgmlType type, KvCacheType kv)
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = type });
        int[] prompt = [1, 300, 301, 302, 700, 5, 6];
        var sampling = SamplingParams.Greedy(40);
        using var cpu = Load(path, EngineKind.Cpu, kv);
        using var ilgpu = Load(path, EngineKind.IlgpuCpu, kv);
        var (expected, cpuLogits) = Generate(cpu, prompt, 40, sampling);
        var (actual, ilgpuLogits) = Generate(ilgpu, prompt, 40, sampling);

        Assert.Equal(expected, actual);
        // the prompt's logits (standard deviation about 4) agree to float rounding; with f16 weights a differently
        // ordered sum now and then flips the f16 rounding of a matmul input, which moves logits by up to ~1e-3
        float tolerance = type == GgmlType.F16 ? 1e-2f : 1e-4f;
        Assert.All(cpuLogits.Zip(ilgpuLogits), p => Assert.Equal(p.First, p.Second, tolerance));
        Assert.StartsWith("ilgpu-cpu", ilgpu.Description);
        Assert.Contains("KV pool 64 blocks", ilgpu.Description);
    }

    [Fact]
    public void Rope_frequency_factors_match_the_cpu_backend()
    {
        string path = models.Write(TestModelFiles.Tiny with
        {
            Type = GgmlType.F32,
            RopeFreqFactors = true,
            RopeFreqBase = 500000f,
        });
        int[] prompt = [1, 300, 301, 302, 700, 5, 6];
        using var cpu = Load(path, EngineKind.Cpu, KvCacheType.F32);
        using var ilgpu = Load(path, EngineKind.IlgpuCpu, KvCacheType.F32);
        Assert.NotNull(cpu.Config.RopeFreqFactors);
        Assert.Equal(Generate(cpu, prompt, 24, SamplingParams.Greedy(24)).Tokens,
            Generate(ilgpu, prompt, 24, SamplingParams.Greedy(24)).Tokens);
    }

    [Fact]
    public void A_prompt_prefilled_in_chunks_matches_the_cpu_backend()
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = GgmlType.F32 });
        int[] prompt = [1, .. Enumerable.Range(300, 29)];
        using var cpu = Load(path, EngineKind.Cpu, KvCacheType.F32);
        using var ilgpu = Load(path, EngineKind.IlgpuCpu, KvCacheType.F32);
        var whole = Generate(cpu, prompt, 12, SamplingParams.Greedy(12)).Tokens;
        // chunks of 7: four steps with no logits rows before the one that samples
        Assert.Equal(whole, Generate(cpu, prompt, 12, SamplingParams.Greedy(12), chunk: 7).Tokens);
        Assert.Equal(whole, Generate(ilgpu, prompt, 12, SamplingParams.Greedy(12), chunk: 7).Tokens);
    }

    [Fact]
    public void Sampling_on_the_device_matches_the_cpu_sampler()
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = GgmlType.F32 });
        using var cpu = Load(path, EngineKind.Cpu, KvCacheType.F32);
        using var ilgpu = Load(path, EngineKind.IlgpuCpu, KvCacheType.F32);
        int[] prompt = [1, 400, 401, 402];
        SamplingParams[] settings =
        [
            new() { Temperature = 1.3f, Seed = 3 },
            new() { Temperature = 0.8f, TopK = 20, Seed = 5 },
            new() { Temperature = 1f, TopP = 0.7f, Seed = 7 },
            new() { Temperature = 0.9f, MinP = 0.1f, TopK = 40, TopP = 0.95f, Seed = 9 },
            new()
            {
                Temperature = 1.1f,
                RepetitionPenalty = 1.4f,
                PresencePenalty = 0.6f,
                FrequencyPenalty = 0.4f,
                Seed = 11,
            },
            new() { Temperature = 0, RepetitionPenalty = 1.3f, FrequencyPenalty = 1f },
        ];
        foreach (var s in settings)
            Assert.Equal(Generate(cpu, prompt, 24, s).Tokens, Generate(ilgpu, prompt, 24, s).Tokens);
    }

    [Fact]
    public void Biased_and_schema_constrained_rows_sample_on_the_device_as_the_cpu_backend_does()
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = GgmlType.F32 });
        using var cpu = Load(path, EngineKind.Cpu, KvCacheType.F32);
        using var ilgpu = Load(path, EngineKind.IlgpuCpu, KvCacheType.F32);
        Tokenizer tokenizer;
        using (var file = GgufFile.Open(path)) tokenizer = Tokenizer.FromGguf(file);
        var trie = TokenTrie.Build(tokenizer);
        using var schema = JsonDocument.Parse(
            """{"type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string","maxLength":4}}}""");
        var grammar = JsonGrammar.FromSchema(schema.RootElement);
        int[] prompt = [1, 400, 401, 402];
        var biased = new SamplingParams
        {
            Temperature = 1.2f,
            Seed = 13,
            LogitBias = new Dictionary<int, float> { [300] = 5, [301] = -100 },
        };
        var expected = Generate(cpu, prompt, 20, biased).Tokens;
        Assert.Equal(expected, Generate(ilgpu, prompt, 20, biased).Tokens);
        Assert.DoesNotContain(301, expected);

        // each run its own constraint: it follows its sequence's tokens
        SamplingParams Constrained() => new() { Temperature = 1, Seed = 17, Constraint = grammar.Start(trie, []) };
        var json = Generate(cpu, prompt, 12, Constrained()).Tokens;
        Assert.Equal(json, Generate(ilgpu, prompt, 12, Constrained()).Tokens);
        Assert.StartsWith("{", tokenizer.Decode(json));
    }

    [Fact]
    public void Batched_run_matches_solo_runs_and_launches_stay_fused()
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = GgmlType.Q8_0 });
        var greedy = SamplingParams.Greedy(16);
        var sampled = new SamplingParams { Temperature = 0.9f, TopP = 0.9f, TopK = 50, Seed = 7 };
        var penalised = new SamplingParams
        {
            Temperature = 0.7f,
            MinP = 0.05f,
            Seed = 11,
            RepetitionPenalty = 1.3f,
            PresencePenalty = 0.5f,
        };
        int[][] prompts = [[1, 260, 261], [1, 270, 271, 272, 273, 274, 275, 276, 277, 278, 279], [1, 290]];
        SamplingParams[] settings = [greedy, sampled, penalised];

        using var engine = Load(path, EngineKind.IlgpuCpu, KvCacheType.F16);
        var solo = prompts.Select((p, i) => Generate(engine, p, 16, settings[i]).Tokens).ToArray();

        // all three at once, each with its own blocks, prefilling in chunks of 3 while the others decode
        var tokens = prompts.Select(p => new List<int>(p)).ToArray();
        var tables = Enumerable.Range(0, 3)
            .Select(s => Enumerable.Range(0, 20).Select(b => 63 - (b * 3 + s)).ToList()).ToArray();
        var computed = new int[3];
        while (tokens.Select((t, i) => t.Count - prompts[i].Length).Any(g => g < 16))
        {
            engine.Inputs.Clear();
            var needing = new List<int>();
            for (int s = 0; s < 3; s++)
            {
                if (tokens[s].Count - prompts[s].Length >= 16) continue;
                int n = Math.Min(3, tokens[s].Count - computed[s]);
                bool needs = computed[s] + n == tokens[s].Count;
                engine.Inputs.Add(new StepItem(tokens[s], computed[s], n, tables[s], needs, settings[s],
                    settings[s].Seed ?? 0, prompts[s].Length));
                computed[s] += n;
                if (needs) needing.Add(s);
            }
            var next = engine.Step();
            for (int i = 0; i < needing.Count; i++) tokens[needing[i]].Add(next[i]);
        }
        for (int s = 0; s < 3; s++) Assert.Equal(solo[s], tokens[s].Skip(prompts[s].Length).ToList());

        // per layer: norm+rounding, Q/K/V, RoPE+store, attention, rounding, Wo+residual, norm+rounding, gate/up+SwiGLU,
        // rounding, down+residual (q8_0 inputs are quantized by the norm or a separate launch); then embed,
        // gather+norm, lm head, sample
        Assert.Equal(2 * 10 + 4, engine.LaunchesPerStep);
    }

    /// <summary>The profiler wraps the device's backend: it times each named operation, changes no token, and the
    /// launch count (a capability of the backend under it) still reaches the engine.</summary>
    [Fact]
    public void The_profiler_times_each_named_operation_and_the_launch_count_still_reaches_the_engine()
    {
        string path = models.Write(TestModelFiles.Tiny with { Type = GgmlType.F16 });
        int[] prompt = [1, 260, 261, 262];
        using var plain = Load(path, EngineKind.IlgpuCpu, KvCacheType.F16);
        using var profiled = InferenceEngine.Load(path, new EngineOptions
        {
            Engine = EngineKind.IlgpuCpu, BlockSize = BlockSize, KvBlocks = 64, MaxNumSeqs = 8,
            MaxNumBatchedTokens = 64, Profile = true,
        });

        var greedy = SamplingParams.Greedy(3);
        Assert.Equal(Generate(plain, prompt, 3, greedy).Tokens, Generate(profiled, prompt, 3, greedy).Tokens);
        Assert.Equal(2 * 10 + 4, profiled.LaunchesPerStep);
        var times = profiled.Profiler!.Times;
        string[] perLayer =
            ["matmul qkv", "rope + store kv", "attention", "matmul gate/up + swiglu", "matmul ffn_down + residual"];
        foreach (var op in perLayer)
            Assert.Equal(3 * 2, times[op].Calls); // three steps, two layers
        Assert.Equal(3, times["gather + rmsnorm"].Calls);
        using var cpu = Load(path, EngineKind.Cpu, KvCacheType.F16);
        Assert.Null(cpu.LaunchesPerStep);
    }

    /// <summary>On a CUDA host: the kernels as PTX against the cpu backend. Different summation orders round the f16
    /// inputs of dot products differently now and then, so only f32 must give the same tokens; f16's logits stay within
    /// the bound `weft gpu-check` uses.</summary>
    [Theory]
    [Trait("Device", "cuda")]
    [InlineData(GgmlType.F32, KvCacheType.F32)]
    [InlineData(GgmlType.F16, KvCacheType.F16)]
    [InlineData(GgmlType.Q8_0, KvCacheType.F16)]
    public void Cuda_matches_the_cpu_backend(GgmlType type, KvCacheType kv)
    {
        Assert.SkipUnless(IlgpuBackend.CudaDeviceCount() > 0,
            "no CUDA device on this host (scripts/gpu-check.sh runs these checks on a GPU host)");
        string path = models.Write(TestModelFiles.Tiny with { Type = type });
        int[] prompt = [1, 300, 301, 302, 700, 5, 6];
        using var cpu = Load(path, EngineKind.Cpu, kv);
        using var cuda = Load(path, EngineKind.Cuda, kv);
        var (expected, cpuLogits) = Generate(cpu, prompt, 40, SamplingParams.Greedy(40));
        var (actual, cudaLogits) = Generate(cuda, prompt, 40, SamplingParams.Greedy(40));

        if (type == GgmlType.F32) Assert.Equal(expected, actual);
        float tolerance = type == GgmlType.F32 ? 2e-3f : 5e-2f;
        Assert.All(cpuLogits.Zip(cudaLogits), p => Assert.Equal(p.First, p.Second, tolerance));
        Assert.StartsWith("cuda", cuda.Description);
    }

    [Fact]
    public void Cuda_without_a_device_fails_with_one_line()
    {
        Assert.SkipWhen(IlgpuBackend.CudaDeviceCount() > 0, "a CUDA device is present");
        var e = Assert.Throws<NotSupportedException>(() => new IlgpuBackend(EngineKind.Cuda));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("cuda", e.Message);
    }
    /// <summary>
    /// Log-probabilities, whatever else the row asks for (greedy, a temperature with top-k, penalties and a bias, whose
    /// raw logits the ILGPU kernel keeps in their entries, none), are the log-softmax of the raw logits: the step is
    /// run first without them to read those logits, then again as asked.
    /// </summary>
    [Theory]
    [InlineData(EngineKind.Cpu)]
    [InlineData(EngineKind.IlgpuCpu)]
    public void Logprobs_are_the_log_softmax_of_the_raw_logits(EngineKind kind) => AssertLogprobsOfRawLogits(kind);

    [Fact]
    [Trait("Device", "cuda")]
    public void Cuda_logprobs_are_the_log_softmax_of_the_raw_logits()
    {
        Assert.SkipUnless(IlgpuBackend.CudaDeviceCount() > 0,
            "no CUDA device on this host (scripts/gpu-check.sh runs these checks on a GPU host)");
        AssertLogprobsOfRawLogits(EngineKind.Cuda);
    }

    void AssertLogprobsOfRawLogits(EngineKind kind)
    {
        using var engine = Load(models.Write(TestModelFiles.Tiny), kind, KvCacheType.F32);
        int[][] prompts = [[1, 300, 301], [1, 5, 6, 7, 8], [1, 700, 9, 300, 10, 11], [1, 42]];
        SamplingParams[] asked =
        [
            new() { Temperature = 0, Logprobs = 5 },
            new() { Temperature = 0.8f, TopK = 50, Seed = 3, Logprobs = SamplingParams.MaxLogprobs },
            new()
            {
                Temperature = 0.7f, Seed = 9, RepetitionPenalty = 1.3f,
                LogitBias = new Dictionary<int, float> { [7] = 5 }, Logprobs = 3,
            },
            SamplingParams.Greedy(1),
        ];
        void Fill(Func<int, SamplingParams> sampling)
        {
            engine.Inputs.Clear();
            for (int i = 0; i < prompts.Length; i++)
                engine.Inputs.Add(new StepItem(prompts[i], 0, prompts[i].Length,
                    [.. Enumerable.Range(i * 4, 4)], true, sampling(i), sampling(i).Seed ?? 0, prompts[i].Length));
        }
        Fill(_ => SamplingParams.Greedy(1));
        engine.Step();
        var raw = Enumerable.Range(0, prompts.Length).Select(engine.GetLogits).ToArray();
        Fill(i => asked[i]);
        var tokens = engine.Step().ToArray();

        for (int i = 0; i < 3; i++)
        {
            double max = raw[i].Max();
            double lse = max + Math.Log(raw[i].Sum(l => Math.Exp(l - max)));
            int k = asked[i].Logprobs!.Value;
            var expectedTop = raw[i].Select((l, id) => (l, id)).OrderByDescending(p => p.l).ThenBy(p => p.id).Take(k)
                .ToArray();
            Assert.Equal(expectedTop.Select(p => p.id), engine.Logprobs.Ids(i)[..k].ToArray());
            for (int j = 0; j < k; j++)
                Assert.Equal(expectedTop[j].l - lse, engine.Logprobs.Values(i)[j], 1e-5);
            Assert.Equal(raw[i][tokens[i]] - lse, engine.Logprobs.Sampled[i], 1e-5);
        }
        // the penalised, biased row drew from changed logits; its log-probability is still of the raw ones
        Assert.True(engine.Logprobs.Sampled[2] < 0);
    }
}
