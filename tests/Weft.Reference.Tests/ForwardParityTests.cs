using Weft.GpuRuntime.Engine;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.Reference.Tests;

/// <summary>
/// Greedy generation of Weft's cpu backend against llama.cpp on the same generated GGUF files: token for token, from
/// the same token-id prompt, long enough to cross several KV blocks.
/// </summary>
public sealed class ForwardParityTests : IClassFixture<TempDirectory>
{
    const int Generate = 56;
    readonly TempDirectory _dir;

    public ForwardParityTests(TempDirectory dir) => _dir = dir;

    public static TheoryData<string, DemoModelShape, KvCacheType> Models => new()
    {
        // name, shape (type, heads vs kv heads, head size), KV cache type used on both sides
        { "f32 gqa hd32", new DemoModelShape("p1", 128, 2, 4, 2, 352, 1024, 512, GgmlType.F32), KvCacheType.F32 },
        { "f32 mha hd16", new DemoModelShape("p2", 64, 3, 4, 4, 192, 700, 512, GgmlType.F32), KvCacheType.F16 },
        { "f16 gqa hd64", new DemoModelShape("p3", 256, 2, 4, 1, 704, 2048, 512, GgmlType.F16, RopeFreqBase: 500000f),
            KvCacheType.F16 },
        { "f16 mha hd32", new DemoModelShape("p4", 128, 2, 4, 4, 384, 1024, 512, GgmlType.F16), KvCacheType.F16 },
        { "q8_0 gqa hd32", new DemoModelShape("p5", 256, 2, 8, 2, 768, 1024, 512, GgmlType.Q8_0), KvCacheType.F32 },
        // Llama 3.1-style RoPE frequency factors (rope_freqs.weight)
        { "f32 gqa hd32 rope_freqs", new DemoModelShape("p6", 128, 2, 4, 2, 352, 1024, 512, GgmlType.F32,
            RopeFreqBase: 500000f, RopeFreqFactors: true), KvCacheType.F32 },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Greedy_matches_llama_cpp(string name, DemoModelShape shape, KvCacheType kv)
    {
        string path = _dir.File($"{shape.Name}.gguf");
        DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        int[] prompt = [1, .. Enumerable.Range(0, 20).Select(i => 259 + (i * 37) % (shape.VocabSize - 259))];

        int[] ours = GreedyWeft(path, prompt, Generate, kv);
        using var llama = new LlamaCppModel(path, contextSize: 256, f16Cache: kv == KvCacheType.F16);
        int[] theirs = llama.Greedy(prompt, Generate);

        Assert.True(ours.SequenceEqual(theirs), $"{name}: diverged at token {FirstDifference(ours, theirs)}\n" +
            $"weft:      {string.Join(",", ours)}\n" +
            $"llama.cpp: {string.Join(",", theirs)}");
        Assert.True(ours.Distinct().Count() > Generate / 4,
            $"{name}: output too repetitive to be a meaningful comparison: {string.Join(",", ours)}");
    }

    /// <summary>
    /// bf16 keeps 8 mantissa bits, so one activation rounded the other way between two correct implementations moves a
    /// logit by ~0.02, and free-running greedy output can part at a near-tie. Teacher-forced instead: along llama.cpp's
    /// own greedy output, our argmax must pick its token at every step unless the two are within 0.05 of each other.
    /// </summary>
    [Fact]
    public void Bf16_follows_llama_cpp_except_at_near_ties()
    {
        var shape = new DemoModelShape("bf16", 128, 2, 4, 2, 384, 1024, 512, GgmlType.BF16);
        string path = _dir.File("bf16.gguf");
        DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        int[] prompt = [1, .. Enumerable.Range(0, 20).Select(i => 300 + i * 29)];
        using var llama = new LlamaCppModel(path, contextSize: 256);
        int[] theirs = llama.Greedy(prompt, Generate);

        using var engine = InferenceEngine.Load(path, new EngineOptions
        {
            Engine = EngineKind.Cpu,
            KvBlocks = 16,
            MaxNumSeqs = 4,
            MaxNumBatchedTokens = 64,
        });
        var tokens = new List<int>(prompt);
        var blocks = Enumerable.Range(0, 16).ToList();
        int agreed = 0;
        for (int i = 0; i < Generate; i++)
        {
            engine.Inputs.Clear();
            engine.Inputs.Add(new StepItem(tokens, i == 0 ? 0 : tokens.Count - 1, i == 0 ? tokens.Count : 1, blocks,
                true, SamplingParams.Greedy(Generate), 0, prompt.Length));
            int ours = engine.Step()[0];
            var logits = engine.GetLogits(0);
            if (ours == theirs[i]) agreed++;
            else Assert.True(logits[ours] - logits[theirs[i]] < 0.05f,
                $"step {i}: weft picks {ours} ({logits[ours]}), llama.cpp {theirs[i]} ({logits[theirs[i]]})");
            tokens.Add(theirs[i]);
        }
        Assert.True(agreed >= Generate - 2, $"only {agreed} of {Generate} steps agree");
    }

    internal static int FirstDifference(int[] a, int[] b)
    {
        int i = 0;
        while (i < Math.Min(a.Length, b.Length) && a[i] == b[i]) i++;
        return i;
    }

    /// <summary>Greedy tokens through the scheduler and the batch engine, as the server runs them: gemma's sliding
    /// layers in their own pool, which gives back the blocks a sequence slides past.</summary>
    /// <param name="maxModelLen">The engine's longest sequence (0: the file's context), which picks LongRoPE's
    /// factors as llama.cpp's context size does.</param>
    internal static int[] GreedyWeft(string path, int[] prompt, int count, KvCacheType kv,
        EngineKind engineKind = EngineKind.Cpu, int maxModelLen = 0)
    {
        using var engine = InferenceEngine.Load(path, new EngineOptions
        {
            Engine = engineKind,
            KvBlocks = 16,
            KvCacheType = kv,
            MaxNumSeqs = 4,
            MaxNumBatchedTokens = Math.Max(64, prompt.Length),
            MaxModelLen = maxModelLen,
        });
        var batch = BatchEngine.Create(engine, new SchedulerOptions
        {
            MaxModelLen = engine.MaxModelLen,
            MaxNumSeqs = 4,
            MaxNumBatchedTokens = Math.Max(64, prompt.Length),
            KvWatermark = 0,
        }, new HashSet<int>());
        var sequence = new Sequence(1, prompt, SamplingParams.Greedy(count) with { IgnoreEos = true });
        batch.Scheduler.Add(sequence);
        while (batch.Scheduler.HasWork) batch.TickAsync().GetAwaiter().GetResult();
        Assert.Equal(FinishReason.Length, sequence.FinishReason);
        return sequence.TokenIds.Skip(prompt.Length).ToArray();
    }
}
