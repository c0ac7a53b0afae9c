using Weft.Abstractions;

namespace Weft.Grains.Tests;

/// <summary>A KV pool that holds only a few conversations at once.</summary>
public sealed class TinyKvCluster : WeftCluster
{
    protected override ModelHostOptions Options => base.Options with
    {
        Engine = base.Options.Engine with { KvBlocks = 14, MaxNumSeqs = 64, MaxNumBatchedTokens = 256 },
        MaxWaiting = 256,
    };
}

public sealed class TinyKvPoolTests(TinyKvCluster cluster) : IClassFixture<TinyKvCluster>
{
    [Fact]
    public async Task Sixty_four_conversations_over_a_pool_for_a_few_all_finish_correctly()
    {
        const int n = 64;
        TurnRequest Request(int i) => new()
        {
            PromptTokenIds = [1, .. Enumerable.Range(0, 10 + i % 17).Select(j => 300 + (i * 53 + j * 11) % 600)],
            Sampling = new SamplingOptions
            { Temperature = i % 3 == 0 ? 0 : 0.8f, Seed = (ulong)i, MaxTokens = 12 + i % 9, IgnoreEos = true },
        };
        var ct = TestContext.Current.CancellationToken;
        var alone = new TurnResult[n];
        for (int i = 0; i < n; i++)
            alone[i] = await cluster.Grains.GetGrain<IConversationGrain>($"tiny-alone-{i}").RunAsync(Request(i), ct);
        var before = await cluster.BatchGrain().GetStatsAsync();

        var together = await Task.WhenAll(Enumerable.Range(0, n)
            .Select(i => cluster.Grains.GetGrain<IConversationGrain>($"tiny-{i}").RunAsync(Request(i), ct)));

        for (int i = 0; i < n; i++) Assert.Equal(alone[i].TokenIds, together[i].TokenIds);
        var after = await cluster.BatchGrain().GetStatsAsync();
        Assert.True(after.Preemptions > before.Preemptions,
            "the pool is small enough that running sequences had to be preempted");
        Assert.Equal(0, after.Load.Running);
        Assert.Equal(0, after.Load.Waiting);
    }
}

/// <summary>Two sequences per tick and one waiting slot.</summary>
public sealed class LimitsCluster : WeftCluster
{
    protected override ModelHostOptions Options => base.Options with
    {
        Engine = base.Options.Engine with { MaxNumSeqs = 2, MaxNumBatchedTokens = 64 },
        MaxWaiting = 1,
    };
}

public sealed class LimitsTests(LimitsCluster cluster) : IClassFixture<LimitsCluster>
{
    static TurnRequest Long(int salt) => new()
    {
        // most of the test model's 1024-token context: it decodes a token in a fraction of a millisecond, so the
        // windows below are counted in ticks, not in milliseconds (900 tokens once ended inside a 200 ms window)
        PromptTokenIds = [1, 300 + salt, 301], Sampling = new() { Temperature = 0, MaxTokens = 1020, IgnoreEos = true }
    };

    [Fact]
    public async Task A_full_queue_refuses_new_turns_at_once_with_a_retryable_error_and_cancelling_frees_the_blocks()
    {
        var ct = TestContext.Current.CancellationToken;
        var idle = await cluster.BatchGrain().GetStatsAsync();
        using var cancel = new CancellationTokenSource();
        // two running (the per-tick limit), then one waiting (the queue bound); one at a time, since two arriving
        // in the same tick would both wait and the second would already be refused
        var streams = new List<Task>();
        foreach (var (running, waiting) in new[] { (1, 0), (2, 0), (2, 1) })
        {
            streams.Add(Drain(cluster.Grains.GetGrain<IConversationGrain>($"long-{streams.Count}"),
                Long(streams.Count), cancel.Token));
            await WaitUntil(async () => (await cluster.BatchGrain().GetStatsAsync()).Load is var l
                && l.Running == running && l.Waiting == waiting, ct);
        }

        var refused = await Assert.ThrowsAsync<WeftException>(() =>
            cluster.Grains.GetGrain<IConversationGrain>("one-too-many").RunAsync(Long(9), ct));
        Assert.Equal(WeftErrorCode.QueueFull, refused.Code);
        Assert.True(refused.Retryable);

        cancel.Cancel();
        foreach (var s in streams) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => s);
        // cancelled turns release their blocks within a tick: the pool is as free as before
        await WaitUntil(async () => (await cluster.BatchGrain().GetStatsAsync()).Load is { Running: 0, Waiting: 0 } l
            && l.FreeKvTokens == idle.Load.FreeKvTokens, ct);
    }

    [Fact]
    public async Task Every_tick_carries_every_running_sequence()
    {
        var ct = TestContext.Current.CancellationToken;
        using var cancel = new CancellationTokenSource();
        var streams = Enumerable.Range(0, 2)
            .Select(i => Drain(cluster.Grains.GetGrain<IConversationGrain>($"pair-{i}"), Long(20 + i), cancel.Token))
            .ToList();
        await WaitUntil(async () => (await cluster.BatchGrain().GetStatsAsync()).Load.Running == 2, ct);

        // a window of steady state: both running before and after, so every tick in it must have carried both
        var before = await cluster.BatchGrain().GetStatsAsync();
        BatchStats after = before;
        await WaitUntil(async () => (after = await cluster.BatchGrain().GetStatsAsync()).Ticks > before.Ticks + 5, ct);
        Assert.Equal(2, after.Load.Running);
        long ticks = after.Ticks - before.Ticks;
        double batched = after.MeanBatchSize * after.Ticks - before.MeanBatchSize * before.Ticks;
        Assert.Equal(2.0, batched / ticks, precision: 6);

        cancel.Cancel();
        foreach (var s in streams) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => s);
    }

    static async Task Drain(IConversationGrain c, TurnRequest r, CancellationToken ct)
    {
        await foreach (var _ in c.SendAsync(r, ct)) { }
    }

    static async Task WaitUntil(Func<Task<bool>> condition, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition not reached in 30 s");
            await Task.Delay(20, ct);
        }
    }
}
