using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>
/// The cpu backend splits attention into tasks by the step's mix and its cores: a lone sequence's long context over
/// its keys and output dimensions, in waves when their scores are large, a full batch not at all. Every split must sum
/// in the one order, so the logits are the same bits however the work was cut.
/// </summary>
public sealed class SplitAttentionTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    const int PromptLength = 1200, Steps = 4;

    [Theory]
    [InlineData(KvCacheType.F16, 16)]
    [InlineData(KvCacheType.F32, 16)]
    [InlineData(KvCacheType.F16, 4)]
    public void A_long_context_split_over_cores_gives_the_logits_of_the_unsplit_batch(KvCacheType kv, int blockSize)
    {
        // f32 weights: no rounding of the attention output to a weight type that could hide a difference
        string path =
            models.Write(TestModelFiles.Tiny with { Dim = 512, Heads = 8, KvHeads = 2, ContextLength = 2048 });
        int[][] prompts = [.. Enumerable.Range(0, 4).Select(Prompt)];

        // alone on four workers: two items a decode step (one per KV head, head size 64), cut into tasks of one key
        // tile and of four dimensions; the prompt in chunks of 240 rows, 30 items of 64 query rows whose scores take
        // two waves once past position 500
        var alone = Generate(path, kv, blockSize, threads: 4, [prompts[0]], chunk: 240)[0];
        // four sequences on one worker: eight items a decode step, each whole in one task, the prompts in chunks of 64
        var batched = Generate(path, kv, blockSize, threads: 1, prompts, chunk: 64)[0];

        Assert.Equal(Steps, alone.Count);
        for (int t = 0; t < Steps; t++)
            Assert.True(alone[t].AsSpan().SequenceEqual(batched[t]), $"logits of token {t} differ");
    }

    /// <summary>The block size only places keys in memory: tiles of keys and groups of 16 values span blocks of 4
    /// and lie within blocks of 16, and the sums are the same bits. With AVX-512, a decode row in blocks of 16 reads
    /// the cache in place, up to four queries of a GQA group at a time (here 4, 4 + 1, 4 + 2, 3 and 4 + 4, with heads
    /// of 64 and 128), and blocks of 4 gather it first.</summary>
    [Theory]
    [InlineData(512, 8)]
    [InlineData(640, 10)]
    [InlineData(768, 12)]
    [InlineData(768, 6)]
    [InlineData(1024, 16)]
    public void A_cache_in_blocks_of_16_tokens_gives_the_logits_of_blocks_of_4(int dim, int heads)
    {
        string path =
            models.Write(TestModelFiles.Tiny with { Dim = dim, Heads = heads, KvHeads = 2, ContextLength = 2048 });
        int[][] prompts = [Prompt(0), Prompt(1)];
        var sixteen = Generate(path, KvCacheType.F16, 16, threads: 2, prompts, chunk: 240);
        var four = Generate(path, KvCacheType.F16, 4, threads: 2, prompts, chunk: 240);
        for (int s = 0; s < prompts.Length; s++)
            for (int t = 0; t < Steps; t++)
                Assert.True(sixteen[s][t].AsSpan().SequenceEqual(four[s][t]), $"logits of token {t} differ");
    }

    static int[] Prompt(int salt) =>
        [1, .. Enumerable.Range(0, PromptLength - 1).Select(i => 259 + (i * 31 + salt * 17) % 700)];

    /// <summary>Greedy decoding of every prompt together; each sequence's logits per generated token.</summary>
    static List<float[]>[] Generate(string path, KvCacheType kv, int blockSize, int threads, int[][] prompts,
        int chunk)
    {
        int blocksPerSeq = (PromptLength + Steps + blockSize - 1) / blockSize;
        using var engine = InferenceEngine.Load(path, new EngineOptions
        {
            Engine = EngineKind.Cpu,
            BlockSize = blockSize,
            KvBlocks = prompts.Length * blocksPerSeq,
            KvCacheType = kv,
            MaxNumSeqs = prompts.Length,
            MaxNumBatchedTokens = 2048,
            Threads = threads,
        });
        var tokens = prompts.Select(p => new List<int>(p)).ToArray();
        var tables = prompts.Select((_, i) => Enumerable.Range(i * blocksPerSeq, blocksPerSeq).ToList()).ToArray();
        var logits = prompts.Select(_ => new List<float[]>()).ToArray();
        var computed = new int[prompts.Length];
        var greedy = SamplingParams.Greedy(Steps);
        while (logits[0].Count < Steps)
        {
            engine.Inputs.Clear();
            for (int i = 0; i < prompts.Length; i++)
            {
                int count = Math.Min(chunk, tokens[i].Count - computed[i]);
                engine.Inputs.Add(new StepItem(tokens[i], computed[i], count, tables[i],
                    computed[i] + count == tokens[i].Count, greedy, 0, PromptLength));
                computed[i] += count;
            }
            var sampled = engine.Step().ToArray();
            // prompts of one length reach their last chunk together: every sequence or none needs a token
            for (int i = 0; i < sampled.Length; i++)
            {
                logits[i].Add(engine.GetLogits(i));
                tokens[i].Add(sampled[i]);
            }
        }
        return logits;
    }
}
