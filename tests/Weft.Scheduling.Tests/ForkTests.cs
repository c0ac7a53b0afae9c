namespace Weft.Scheduling.Tests;

/// <summary>
/// <see cref="Scheduler.AddFork"/>: another choice of a running sequence's prompt shares its full blocks, copies its
/// partial one and computes only the prompt's last token. The <see cref="FakeEngine"/> checks every position a fork
/// attends to holds its own tokens' K/V and that nothing writes a shared block.
/// </summary>
public class ForkTests
{
    static readonly HashSet<int> Eos = [0];
    const int BlockSize = 4;
    long _nextId;

    Sequence Seq(int[] prompt, int maxTokens, bool keepCache = false) =>
        new(++_nextId, prompt, SamplingParams.Greedy(maxTokens) with { IgnoreEos = true }, keepCache: keepCache);

    static int[] Prompt(int length) => [.. Enumerable.Range(1, length)];

    static (Scheduler Scheduler, BlockManager Blocks, FakeEngine Engine) Create(int numBlocks = 32,
        int maxNumSeqs = 8)
    {
        var blocks = new BlockManager(numBlocks, BlockSize);
        var options = new SchedulerOptions { MaxModelLen = 128, MaxNumSeqs = maxNumSeqs, KvWatermark = 0 };
        return (new Scheduler(options, blocks, Eos), blocks, new FakeEngine(blocks));
    }

    /// <summary>Runs ticks until <paramref name="s"/> has its first token.</summary>
    static void RunUntilFirstToken(Scheduler scheduler, FakeEngine engine, Sequence s)
    {
        for (int tick = 0; s.NumCompletionTokens == 0; tick++)
        {
            Assert.True(tick < 100, "the sequence never got a token");
            engine.Step(scheduler);
        }
    }

    static void RunToCompletion(Scheduler scheduler, FakeEngine engine)
    {
        for (int tick = 0; scheduler.HasWork; tick++)
        {
            Assert.True(tick < 1000, "the scheduler made no progress");
            engine.Step(scheduler);
        }
    }

    static void AssertMatchesReference(FakeEngine engine, Sequence s) =>
        Assert.Equal(engine.Reference([.. s.TokenIds.Take(s.NumPromptTokens)], s.Sampling, Eos, 128),
            s.TokenIds.Skip(s.NumPromptTokens));

    [Fact]
    public void A_fork_shares_the_full_blocks_copies_the_partial_one_and_computes_only_the_last_prompt_token()
    {
        var (scheduler, blocks, engine) = Create();
        var parent = Seq(Prompt(10), maxTokens: 6);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(10), maxTokens: 6);

        scheduler.AddFork(fork, parent);
        var output = scheduler.Schedule();

        var forked = Assert.Single(output.Scheduled, e => e.Sequence == fork);
        Assert.Equal((1, true), (forked.NumNewTokens, forked.NeedsToken));
        Assert.Equal(9, fork.NumComputedTokens);
        Assert.Equal(9, fork.NumCachedTokens);
        // positions 0..7 in the parent's two full blocks, 8 (and the last prompt token's slot) in a copy of its third
        Assert.Equal(parent.BlockTable.Take(2), fork.BlockTable.Take(2));
        Assert.All(fork.BlockTable.Take(2), b => Assert.Equal(2, blocks.RefCount(b)));
        Assert.Equal(3, fork.BlockTable.Count);
        Assert.NotEqual(parent.BlockTable[2], fork.BlockTable[2]);
        Assert.Equal([new BlockCopy(parent.BlockTable[2], fork.BlockTable[2])], output.BlockCopies);

        scheduler.Update(output, engine.Run(output));
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, parent);
        AssertMatchesReference(engine, fork);
        Assert.Equal(parent.TokenIds, fork.TokenIds);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void A_prompt_whose_last_token_starts_a_block_is_forked_without_a_copy()
    {
        var (scheduler, blocks, engine) = Create();
        var parent = Seq(Prompt(9), maxTokens: 3);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(9), maxTokens: 3);

        scheduler.AddFork(fork, parent);
        var output = scheduler.Schedule();

        Assert.Empty(output.BlockCopies);
        Assert.Equal(1, Assert.Single(output.Scheduled, e => e.Sequence == fork).NumNewTokens);
        Assert.Equal(parent.BlockTable.Take(2), fork.BlockTable.Take(2));
        scheduler.Update(output, engine.Run(output));
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, fork);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    public enum Ending { ParentFinishesFirst, ForkFinishesFirst, ParentCancelled, ForkCancelled, ParentParked }

    [Theory]
    [InlineData(Ending.ParentFinishesFirst)]
    [InlineData(Ending.ForkFinishesFirst)]
    [InlineData(Ending.ParentCancelled)]
    [InlineData(Ending.ForkCancelled)]
    [InlineData(Ending.ParentParked)]
    public void Shared_blocks_are_freed_once_both_are_done_whichever_ends_first(Ending ending)
    {
        var (scheduler, blocks, engine) = Create();
        bool forkFirst = ending is Ending.ForkFinishesFirst or Ending.ForkCancelled;
        var parent = Seq(Prompt(10), maxTokens: forkFirst ? 12 : 3, keepCache: ending == Ending.ParentParked);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(10), maxTokens: forkFirst ? 3 : 12);
        scheduler.AddFork(fork, parent);
        engine.Step(scheduler);
        var shared = fork.BlockTable.Take(2).ToArray();
        Assert.Equal(parent.BlockTable.Take(2), shared);

        if (ending == Ending.ParentCancelled) scheduler.Cancel(parent);
        if (ending == Ending.ForkCancelled) scheduler.Cancel(fork);
        var (first, second) = forkFirst ? (fork, parent) : (parent, fork);
        for (int tick = 0; !first.IsFinished; tick++)
        {
            Assert.True(tick < 100, "the first never finished");
            engine.Step(scheduler);
        }

        Assert.False(second.IsFinished);
        // the survivor still holds the shared blocks, now alone (a parked parent holds them too)
        int holders = ending == Ending.ParentParked ? 2 : 1;
        Assert.All(shared, b => Assert.Equal(holders, blocks.RefCount(b)));
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, second);
        if (ending == Ending.ParentParked)
        {
            Assert.Equal(parent.BlockTable.Count, blocks.NumBlocks - blocks.NumFreeBlocks);
            scheduler.Release(parent);
        }
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
        Assert.All(Enumerable.Range(0, blocks.NumBlocks), b => Assert.Equal(0, blocks.RefCount(b)));
    }

    [Fact]
    public void A_fork_whose_parent_was_cancelled_before_admission_computes_its_prompt_like_any_sequence()
    {
        var (scheduler, blocks, engine) = Create();
        var parent = Seq(Prompt(10), maxTokens: 8);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(10), maxTokens: 4);
        scheduler.AddFork(fork, parent);
        scheduler.Cancel(parent);

        var output = scheduler.Schedule();

        Assert.Empty(output.BlockCopies);
        // the parent's full blocks from the prefix cache, the rest computed
        Assert.Equal(2, Assert.Single(output.Scheduled).NumNewTokens);
        scheduler.Update(output, engine.Run(output));
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, fork);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void A_preempted_fork_resumes_from_the_prefix_cache_with_the_same_output()
    {
        // 6 blocks: the parent's 3 and a fork's 1 fit, and the parent's 4 and the fork's 2, but not the parent's 5
        // (17 computed tokens) with them
        var (scheduler, blocks, engine) = Create(numBlocks: 6);
        var parent = Seq(Prompt(10), maxTokens: 8);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(10), maxTokens: 8);
        scheduler.AddFork(fork, parent);

        RunToCompletion(scheduler, engine);

        Assert.True(fork.NumPreemptions > 0, "the fork was never preempted");
        AssertMatchesReference(engine, parent);
        AssertMatchesReference(engine, fork);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void With_a_window_pool_a_fork_computes_its_whole_prompt()
    {
        var blocks = new BlockManager(32, BlockSize);
        var window = new WindowBlockManager(16, BlockSize, window: 6);
        var scheduler = new Scheduler(new SchedulerOptions { MaxModelLen = 128, KvWatermark = 0 }, blocks, Eos,
            window);
        var engine = new FakeEngine(blocks);
        var parent = Seq(Prompt(10), maxTokens: 4);
        scheduler.Add(parent);
        RunUntilFirstToken(scheduler, engine, parent);
        var fork = Seq(Prompt(10), maxTokens: 4);

        scheduler.AddFork(fork, parent);
        var output = scheduler.Schedule();

        Assert.Empty(output.BlockCopies);
        Assert.Equal(10, Assert.Single(output.Scheduled, e => e.Sequence == fork).NumNewTokens);
        scheduler.Update(output, engine.Run(output));
        RunToCompletion(scheduler, engine);
        Assert.Equal(parent.TokenIds, fork.TokenIds);
    }

    [Fact]
    public void Forks_of_an_n_choice_request_compute_the_prompt_once_and_one_token_each()
    {
        var (scheduler, blocks, engine) = Create();
        var prompt = Prompt(23);
        var parent = Seq(prompt, maxTokens: 5);
        int computed = 0;
        scheduler.Add(parent);
        while (parent.NumCompletionTokens == 0) computed += Step();
        var forks = Enumerable.Range(0, 3).Select(_ => Seq(prompt, maxTokens: 5)).ToArray();
        foreach (var f in forks) scheduler.AddFork(f, parent);
        while (scheduler.HasWork) computed += Step();

        Assert.Equal(prompt.Length + forks.Length, computed);
        Assert.All(forks, f => Assert.Equal(parent.TokenIds, f.TokenIds));
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);

        // the prompt tokens each scheduled chunk computes
        int Step()
        {
            var output = scheduler.Schedule();
            int n = output.Scheduled.Sum(e =>
                Math.Max(0, Math.Min(e.Sequence.NumComputedTokens + e.NumNewTokens, e.Sequence.NumPromptTokens)
                    - e.Sequence.NumComputedTokens));
            scheduler.Update(output, engine.Run(output));
            return n;
        }
    }
}
