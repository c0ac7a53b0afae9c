using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>gemma's sliding-window layers in their own KV pool: sized for every sequence's window, the rest of the
/// budget to the global layers, and the same replies as keeping every token's K/V.</summary>
public sealed class WindowPoolTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    // gemma3's pattern: five sliding layers, then a global one
    static readonly Models.DemoModelShape Gemma3 = TestModelFiles.Tiny with
    {
        Name = "tiny-gemma3-window",
        Layers = 6,
        Architecture = "gemma3",
        SlidingWindow = 8,
    };

    static readonly int[] PromptLengths = [60, 21, 5];

    static EngineOptions Options(int? windowBlocks = null) => new()
    {
        Engine = EngineKind.Cpu,
        BlockSize = 4,
        KvCacheMemoryMiB = 1,
        KvWindowBlocks = windowBlocks,
        MaxNumSeqs = 4,
        MaxNumBatchedTokens = 16,
        Threads = 2,
    };

    [Fact]
    public void The_window_pool_holds_every_sequence_s_window_and_the_global_layers_get_the_rest_of_the_budget()
    {
        string path = models.Write(Gemma3);
        using var windowed = InferenceEngine.Load(path, Options());
        using var shared = InferenceEngine.Load(path, Options(windowBlocks: 0));

        // per sequence, a window of 8 before a chunk of 16 spans ceil(23 / 4) + 1 = 7 blocks; and the zero block
        Assert.Equal(4 * 7 + 1, windowed.NumKvWindowBlocks);
        long layerBlockBytes = 2L * windowed.Config.KvDim * 4 * 2;
        Assert.Equal((1 << 20) / (6 * layerBlockBytes), shared.NumKvBlocks);
        Assert.Equal(((1 << 20) - 29 * 5 * layerBlockBytes) / layerBlockBytes, windowed.NumKvBlocks);
        Assert.InRange(windowed.KvCacheBytes, (1 << 20) - layerBlockBytes, 1 << 20);
        Assert.Equal(0, shared.NumKvWindowBlocks);
    }

    [Fact]
    public void Replies_through_the_window_pool_equal_those_that_keep_every_token_s_K_V()
    {
        string path = models.Write(Gemma3);
        var windowed = Generate(path, Options(), out int mostLive);
        var shared = Generate(path, Options(windowBlocks: 0), out _);

        Assert.Equal(shared, windowed);
        // 7 at most (see above); the prompts and replies run to 92 tokens, 23 blocks
        Assert.InRange(mostLive, 3, 7);
    }

    static List<int[]> Generate(string path, EngineOptions options, out int mostLive)
    {
        var batch = BatchEngine.Create(InferenceEngine.Load(path, options), new SchedulerOptions
        {
            MaxModelLen = 256, MaxNumSeqs = 4, MaxNumBatchedTokens = 16, PrefillChunkSize = 16,
        }, new HashSet<int>());
        var sampling = new SamplingParams { Temperature = 0.8f, Seed = 3, MaxTokens = 32, IgnoreEos = true };
        var sequences = PromptLengths
            .Select((n, i) => new Sequence(i, [1, .. Enumerable.Range(0, n - 1).Select(t => 259 + (t * 37 + i) % 700)],
                sampling))
            .ToArray();
        foreach (var s in sequences) batch.Scheduler.Add(s);
        mostLive = 0;
        using (batch.Engine)
            while (batch.Scheduler.HasWork)
            {
                batch.TickAsync().GetAwaiter().GetResult();
                foreach (var s in sequences) mostLive = Math.Max(mostLive, s.WindowBlockTable.Count(b => b != 0));
            }
        return [.. sequences.Select(s => s.TokenIds.ToArray())];
    }
}
