using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.GpuRuntime.Tests.Ilgpu;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>
/// OpenAI's n as the batch grain runs it: choices after the first join once it has its first token, as forks
/// (<see cref="Scheduler.AddFork"/>) that copy its partial prompt block on the device and compute only the prompt's
/// last token, or, the path before forks, as plain sequences that find the full blocks in the prefix cache and
/// prefill the rest. Both give each choice the same tokens and log-probabilities.
/// </summary>
public sealed class ForkedChoicesTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    // 11 tokens: in the engine's blocks of four, two full blocks and a partial one holding positions 8 to 10
    static readonly int[] Prompt = [1, 17, 29, 301, 5, 88, 412, 9, 250, 31, 77];

    sealed record Choices(List<(int Token, float Logprob)>[] Replies, int PromptTokensComputed);

    async Task<Choices> Generate(EngineKind kind, KvCacheType kv, int n, SamplingParams sampling, bool fork)
    {
        using var engine = IlgpuEngineTests.Load(models.Write(TestModelFiles.Tiny with { Type = GgmlType.F16 }), kind,
            kv);
        var batch = BatchEngine.Create(engine,
            new SchedulerOptions { MaxModelLen = 256, MaxNumSeqs = 8, MaxNumBatchedTokens = 64 }, new HashSet<int>());
        var replies = Enumerable.Range(0, n).Select(_ => new List<(int, float)>()).ToArray();
        var sequences = Enumerable.Range(0, n)
            .Select(c => new Sequence(c + 1, Prompt, sampling with { Seed = sampling.Seed + (ulong)c }))
            .ToArray();
        batch.Scheduler.Add(sequences[0]);
        int computed = 0;
        var next = Start();
        while (true)
        {
            var tick = await batch.FinishAsync(next);
            bool more = batch.Scheduler.HasWork;
            if (more) next = Start();
            // as the grain does: the others join when the first's first token is delivered, its next tick under way
            foreach (var (seq, token, logprobs) in tick.Sampled)
            {
                var reply = replies[seq.Id - 1];
                reply.Add((token, logprobs!.Logprob));
                if (seq.Id != 1 || reply.Count != 1) continue;
                foreach (var other in sequences.Skip(1))
                    if (fork) batch.Scheduler.AddFork(other, seq);
                    else batch.Scheduler.Add(other);
                if (!more) (more, next) = (true, Start());
            }
            if (!more) break;
        }
        return new Choices(replies, computed);

        StartedTick Start()
        {
            var tick = batch.Start();
            foreach (var (s, count, _) in tick.Output.Scheduled)
                computed += Math.Max(0, Math.Min(s.NumComputedTokens + count, s.NumPromptTokens) - s.NumComputedTokens);
            return tick;
        }
    }

    [Theory]
    [InlineData(EngineKind.Cpu, KvCacheType.F16)]
    [InlineData(EngineKind.Cpu, KvCacheType.F32)]
    [InlineData(EngineKind.IlgpuCpu, KvCacheType.F16)]
    [InlineData(EngineKind.IlgpuCpu, KvCacheType.F32)]
    public async Task Three_forked_choices_at_temperature_0_each_equal_the_one_choice_reply(EngineKind kind,
        KvCacheType kv)
    {
        var greedy = SamplingParams.Greedy(8) with { IgnoreEos = true, Logprobs = 0 };
        var one = await Generate(kind, kv, 1, greedy, fork: true);
        var three = await Generate(kind, kv, 3, greedy, fork: true);

        // the same bits: a fork's copied block holds exactly what the first choice computed
        Assert.All(three.Replies, reply => Assert.Equal(one.Replies[0], reply));
        Assert.Equal(Prompt.Length + 2, three.PromptTokensComputed);
    }

    /// <summary>On a CUDA host: the block copy as device-to-device copies on the step's stream.</summary>
    [Theory]
    [Trait("Device", "cuda")]
    [InlineData(KvCacheType.F16)]
    [InlineData(KvCacheType.F32)]
    public async Task Cuda_forked_choices_at_temperature_0_each_equal_the_one_choice_reply(KvCacheType kv)
    {
        Assert.SkipUnless(IlgpuBackend.CudaDeviceCount() > 0,
            "no CUDA device on this host (scripts/gpu-check.sh runs these checks on a GPU host)");
        await Three_forked_choices_at_temperature_0_each_equal_the_one_choice_reply(EngineKind.Cuda, kv);
    }

    [Theory]
    [InlineData(EngineKind.Cpu, KvCacheType.F16)]
    [InlineData(EngineKind.IlgpuCpu, KvCacheType.F16)]
    [InlineData(EngineKind.IlgpuCpu, KvCacheType.F32)]
    public async Task Seeded_forked_choices_equal_choices_that_prefill_their_prompt_again(EngineKind kind,
        KvCacheType kv)
    {
        var sampled = new SamplingParams
        {
            Temperature = 1.2f, TopK = 40, Seed = 5, MaxTokens = 10, IgnoreEos = true, Logprobs = 0,
        };
        var forked = await Generate(kind, kv, 4, sampled, fork: true);
        var prefilled = await Generate(kind, kv, 4, sampled, fork: false);

        for (int c = 0; c < 4; c++) Assert.Equal(prefilled.Replies[c], forked.Replies[c]);
        Assert.True(forked.Replies.Select(r => string.Join(',', r.Select(t => t.Token))).Distinct().Count() > 1,
            "every seed drew the same reply");
        // the first choice computes the prompt, each other only its last token (not the 3 of the partial block)
        Assert.Equal(Prompt.Length + 3, forked.PromptTokensComputed);
        Assert.Equal(Prompt.Length + 3 * 3, prefilled.PromptTokensComputed);
    }
}
