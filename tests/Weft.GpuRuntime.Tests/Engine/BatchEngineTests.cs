using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>
/// The tick loop in two halves: the next forward pass starts before the previous tick's tokens are delivered, and a
/// stop flagged meanwhile takes effect a tick later without leaving anything behind.
/// </summary>
public sealed class BatchEngineTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    BatchEngine Create() => BatchEngine.Create(InferenceEngine.Load(models.Write(TestModelFiles.Tiny), new EngineOptions
    {
        BlockSize = 4,
        KvBlocks = 64,
        MaxNumSeqs = 4,
        MaxNumBatchedTokens = 64,
        Threads = 2,
    }), new SchedulerOptions { MaxModelLen = 512, MaxNumSeqs = 4, MaxNumBatchedTokens = 64 }, new HashSet<int>());

    static Sequence[] Add(BatchEngine batch, int maxTokens)
    {
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true };
        var sequences = new[]
        {
            new Sequence(1, [1, 17, 29, 301, 5], sampling),
            new Sequence(2, [1, 400, 22], sampling),
            new Sequence(3, [1, 9, 9, 9, 9, 9, 9, 12], sampling),
        };
        foreach (var s in sequences) batch.Scheduler.Add(s);
        return sequences;
    }

    [Fact]
    public async Task Ticks_started_before_the_previous_tokens_are_read_give_the_tokens_of_ticks_run_one_by_one()
    {
        var oneByOne = Create();
        var expected = Add(oneByOne, 12);
        var received = expected.ToDictionary(s => s.Id, _ => new List<int>());
        while (oneByOne.Scheduler.HasWork)
            foreach (var (seq, token, _) in (await oneByOne.TickAsync()).Sampled) received[seq.Id].Add(token);

        var overlapped = Create();
        var sequences = Add(overlapped, 12);
        var delivered = sequences.ToDictionary(s => s.Id, _ => new List<int>());
        var next = overlapped.Start();
        while (true)
        {
            var tick = await overlapped.FinishAsync(next);
            bool more = overlapped.Scheduler.HasWork;
            if (more) next = overlapped.Start();
            // read while the next forward pass (which reuses the engine's token buffer) may be running
            foreach (var (seq, token, _) in tick.Sampled) delivered[seq.Id].Add(token);
            if (!more) break;
        }

        foreach (var s in expected)
        {
            Assert.Equal(12, received[s.Id].Count);
            Assert.Equal(received[s.Id], delivered[s.Id]);
        }
        oneByOne.Engine.Dispose();
        overlapped.Engine.Dispose();
    }

    [Fact]
    public async Task A_stop_flagged_while_the_next_tick_runs_finishes_the_sequence_a_tick_later_and_frees_its_blocks()
    {
        var batch = Create();
        var sequences = Add(batch, 32);
        // prefill, then one decode
        for (int i = 0; i < 2; i++) await batch.TickAsync();
        var stopped = sequences[1];
        int tokensAtStop = stopped.NumCompletionTokens;

        var running = batch.Start();
        batch.Scheduler.Stop(stopped);
        var tick = await batch.FinishAsync(running);
        // the tick already under way computed its token, which no one is meant to receive
        Assert.Contains(tick.Sampled, t => t.Sequence == stopped);
        Assert.Equal(tokensAtStop + 1, stopped.NumCompletionTokens);

        tick = await batch.TickAsync();
        Assert.Contains(stopped, tick.Finished);
        Assert.Equal(FinishReason.Stop, stopped.FinishReason);
        Assert.DoesNotContain(tick.Sampled, t => t.Sequence == stopped);
        while (batch.Scheduler.HasWork) await batch.TickAsync();
        Assert.Equal(0, batch.Scheduler.KvCacheUsage);
        batch.Engine.Dispose();
    }
}
