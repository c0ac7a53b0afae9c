using Weft.GpuRuntime.Engine;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>
/// Sequences share a step but nothing else: a batch mixing prefill chunks and decodes at different positions, over
/// scattered KV blocks, yields exactly the tokens each sequence yields alone.
/// </summary>
public sealed class BatchedEqualsSoloTests : IClassFixture<TestModelFiles>
{
    readonly TestModelFiles _models;

    public BatchedEqualsSoloTests(TestModelFiles models) => _models = models;

    sealed class Run(int id, int[] prompt, SamplingParams sampling, int startTick)
    {
        public readonly int Id = id;
        public readonly List<int> Tokens = [.. prompt];
        public readonly int PromptLength = prompt.Length;
        public readonly SamplingParams Sampling = sampling;
        public readonly int StartTick = startTick;
        public readonly List<int> Blocks = [];
        public readonly List<int> WindowBlocks = [];
        public int Computed;
        public int ReusedWindowBlocks;
        public int Generated => Tokens.Count - PromptLength;
        /// <summary>The logits each sampled token came from, in order.</summary>
        public readonly List<float[]> Logits = [];
    }

    /// <param name="together">All prompts whole in the first step (72 rows: the blocked large-batch kernels) rather
    /// than arriving over several ticks in chunks of 5.</param>
    [Theory]
    [InlineData(GgmlType.F32, KvCacheType.F32, false)]
    [InlineData(GgmlType.F16, KvCacheType.F16, false)]
    [InlineData(GgmlType.Q8_0, KvCacheType.F16, false)]
    [InlineData(GgmlType.F16, KvCacheType.F16, true)]
    [InlineData(GgmlType.Q8_0, KvCacheType.F16, true)]
    public void Batched_run_matches_solo_runs(GgmlType type, KvCacheType kv, bool together) =>
        AssertBatchedMatchesSolo(_models.Write(TestModelFiles.Tiny with { Type = type }), kv, together);

    /// <summary>Each family's own steps (q/k norms, post-norms, GeGLU, soft-capping, a window of 8 keys that every
    /// sequence slides past on gemma's sliding layers, phi3's split tensors) keep a sequence's logits its
    /// own.</summary>
    [Theory]
    [InlineData("qwen3", GgmlType.F32, KvCacheType.F32)]
    [InlineData("qwen3", GgmlType.Q8_0, KvCacheType.F16)]
    [InlineData("gemma2", GgmlType.F32, KvCacheType.F32)]
    [InlineData("gemma2", GgmlType.Q8_0, KvCacheType.F16)]
    [InlineData("gemma3", GgmlType.F32, KvCacheType.F32)]
    [InlineData("gemma3", GgmlType.Q8_0, KvCacheType.F16)]
    [InlineData("phi3", GgmlType.F32, KvCacheType.F32)]
    [InlineData("phi3", GgmlType.Q8_0, KvCacheType.F16)]
    public void Batched_run_matches_solo_runs_for_each_architecture(string arch, GgmlType type, KvCacheType kv) =>
        AssertBatchedMatchesSolo(_models.Write(TestModelFiles.Tiny with
        {
            Name = $"tiny-{arch}",
            Type = type,
            Layers = 3,
            Architecture = arch,
            SlidingWindow = 8,
        }), kv, together: false);

    /// <summary>
    /// gemma's sliding layers in their own pool of 25 blocks, handed out again as sequences slide past them (six
    /// sequences of 54 tokens would hold 84 blocks of 4 otherwise): the same bits as solo runs that keep every
    /// token's K/V in the main pool.
    /// </summary>
    [Theory]
    [InlineData("gemma2", GgmlType.F32, KvCacheType.F32, EngineKind.Cpu)]
    [InlineData("gemma3", GgmlType.F32, KvCacheType.F32, EngineKind.Cpu)]
    [InlineData("gemma3", GgmlType.Q8_0, KvCacheType.F16, EngineKind.Cpu)]
    [InlineData("gemma3", GgmlType.Q8_0, KvCacheType.F16, EngineKind.IlgpuCpu)]
    public void Batched_run_over_a_small_window_pool_matches_solo_runs_without_one(string arch, GgmlType type,
        KvCacheType kv, EngineKind engine)
    {
        string path = _models.Write(TestModelFiles.Tiny with
        {
            Name = $"tiny-{arch}",
            Type = type,
            Layers = 3,
            Architecture = arch,
            SlidingWindow = 8,
        });
        var solo = MakeRuns().Select(r => Generate(path, kv, [r], int.MaxValue, startTicks: false, engine)[0])
            .ToArray();
        var batched = MakeRuns();
        int reused = Generate(path, kv, batched, prefillChunk: 5, startTicks: true, engine, windowBlocks: 25)
            .Sum(r => r.ReusedWindowBlocks);

        Assert.True(reused > 0, "no window block went to another sequence");
        for (int i = 0; i < solo.Length; i++)
        {
            Assert.Equal(solo[i].Tokens, batched[i].Tokens);
            for (int t = 0; t < solo[i].Logits.Count; t++)
                Assert.True(solo[i].Logits[t].AsSpan().SequenceEqual(batched[i].Logits[t]),
                    $"sequence {i}: logits of token {t} differ");
        }
    }

    static void AssertBatchedMatchesSolo(string path, KvCacheType kv, bool together)
    {
        var runs = MakeRuns();

        var solo = runs.Select(r => Generate(path, kv, [r], prefillChunk: int.MaxValue, startTicks: false)[0])
            .ToArray();
        // block size 4 and prefill chunks of 5 make every sequence cross many blocks and chunk boundaries mid-block
        var batched = MakeRuns();
        Generate(path, kv, batched, prefillChunk: together ? int.MaxValue : 5, startTicks: !together);

        for (int i = 0; i < runs.Length; i++)
        {
            Assert.Equal(solo[i].Tokens, batched[i].Tokens);
            // not just the same tokens: the same bits, whatever the batch's size and mix (one decode row alone,
            // several, or long prefill chunks take different kernels, which must sum in the same order)
            for (int t = 0; t < solo[i].Logits.Count; t++)
                Assert.True(solo[i].Logits[t].AsSpan().SequenceEqual(batched[i].Logits[t]),
                    $"sequence {i}: logits of token {t} differ");
        }
    }

    static Run[] MakeRuns()
    {
        var greedy = SamplingParams.Greedy(24);
        var sampled = new SamplingParams { Temperature = 0.9f, TopP = 0.9f, TopK = 50, Seed = 7, MaxTokens = 24 };
        var penalised = new SamplingParams
        {
            Temperature = 0.7f,
            MinP = 0.05f,
            Seed = 11,
            MaxTokens = 24,
            RepetitionPenalty = 1.3f,
            PresencePenalty = 0.5f,
            FrequencyPenalty = 0.3f,
        };
        int[] Prompt(int n, int salt) =>
            [1, .. Enumerable.Range(0, n - 1).Select(i => 259 + (i * 31 + salt * 17) % 700)];
        return
        [
            new Run(0, Prompt(3, 0), greedy, 0),
            new Run(1, Prompt(17, 1), sampled, 0),
            new Run(2, Prompt(9, 2), penalised, 2),
            new Run(3, Prompt(30, 3), greedy, 3),
            new Run(4, Prompt(1, 4), sampled, 5),
            new Run(5, Prompt(12, 5), greedy with { RepetitionPenalty = 1.2f }, 6),
        ];
    }

    /// <summary>Drives the engine like a scheduler would: each tick, every started sequence contributes a decode token
    /// or its next prefill chunk. With <paramref name="windowBlocks"/>, the sliding layers' blocks a sequence has slid
    /// past go back to the window pool's free list (as <see cref="WindowBlockManager"/> does) and their entries to
    /// the zero block.</summary>
    static Run[] Generate(string path, KvCacheType kv, Run[] runs, int prefillChunk, bool startTicks,
        EngineKind kind = EngineKind.Cpu, int windowBlocks = 0)
    {
        const int blockSize = 4, maxNew = 24;
        using var engine = InferenceEngine.Load(path, new EngineOptions
        {
            Engine = kind,
            BlockSize = blockSize,
            KvBlocks = 128,
            KvWindowBlocks = windowBlocks,
            KvCacheType = kv,
            MaxNumSeqs = 8,
            MaxNumBatchedTokens = 128,
        });
        Assert.Equal(windowBlocks, engine.NumKvWindowBlocks);
        int window = engine.Config.SlidingWindow;
        // hand out blocks in a scrambled order so no sequence's blocks are contiguous
        var free = new Queue<int>(Enumerable.Range(0, 128).OrderBy(b => (b * 53) % 128));
        var freeWindow = new Queue<int>(Enumerable.Range(1, Math.Max(0, windowBlocks - 1)));
        var released = new HashSet<int>();
        for (int tick = 0; runs.Any(r => r.Generated < maxNew); tick++)
        {
            engine.Inputs.Clear();
            var stepRuns = new List<Run>();
            foreach (var r in runs)
            {
                if ((startTicks && tick < r.StartTick) || r.Generated >= maxNew) continue;
                int count = Math.Min(prefillChunk, r.Tokens.Count - r.Computed);
                while (r.Blocks.Count * blockSize < r.Computed + count) r.Blocks.Add(free.Dequeue());
                while (windowBlocks > 0 && r.WindowBlocks.Count * blockSize < r.Computed + count)
                {
                    int b = freeWindow.Dequeue();
                    if (released.Contains(b)) r.ReusedWindowBlocks++;
                    r.WindowBlocks.Add(b);
                }
                bool needsToken = r.Computed + count == r.Tokens.Count;
                engine.Inputs.Add(new StepItem(r.Tokens, r.Computed, count, r.Blocks, needsToken, r.Sampling,
                    r.Sampling.Seed ?? 0, r.PromptLength, windowBlocks > 0 ? r.WindowBlocks : null));
                r.Computed += count;
                if (needsToken) stepRuns.Add(r);
            }
            var sampled = engine.Step().ToArray();
            for (int i = 0; i < stepRuns.Count; i++)
            {
                stepRuns[i].Logits.Add(engine.GetLogits(i));
                stepRuns[i].Tokens.Add(sampled[i]);
            }
            foreach (var r in runs)
                for (int i = 0; i < r.WindowBlocks.Count; i++)
                {
                    bool done = r.Generated >= maxNew, slidPast = (i + 1) * blockSize <= r.Computed - window + 1;
                    if (r.WindowBlocks[i] == 0 || !(done || slidPast)) continue;
                    released.Add(r.WindowBlocks[i]);
                    freeWindow.Enqueue(r.WindowBlocks[i]);
                    r.WindowBlocks[i] = 0;
                }
        }
        return runs;
    }
}
