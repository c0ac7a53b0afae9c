namespace Weft.Scheduling.Tests;

/// <summary>The sliding-window pool: blocks leave a sequence as its computed tokens leave the window, never while a
/// query can still see them, and both pools are given back together.</summary>
public class WindowSchedulingTests
{
    static readonly HashSet<int> Eos = [0];
    long _nextId;

    Sequence Seq(int promptLength, int maxTokens, int firstToken = 1, bool keepCache = false) =>
        new(++_nextId, [.. Enumerable.Range(firstToken, promptLength)],
            SamplingParams.Greedy(maxTokens) with { IgnoreEos = true }, keepCache: keepCache);

    /// <summary>
    /// Schedule, check the window pool, run, update. The window pool is simulated like <see cref="FakeEngine"/>'s: the
    /// K/V of position p is a hash of tokens[0..p]; a chunk must find its window's keys in its window blocks, and
    /// write only blocks no other sequence holds, never the zero block.
    /// </summary>
    sealed class WindowRun(Scheduler scheduler, BlockManager blocks, WindowBlockManager window)
    {
        readonly FakeEngine _engine = new(blocks);
        readonly ulong[] _kv = new ulong[window.NumBlocks * window.BlockSize];
        public readonly List<Sequence> Known = [];
        public int MostLive;

        public IReadOnlyList<Sequence> Step()
        {
            var output = scheduler.Schedule();
            int bs = window.BlockSize;
            foreach (var (s, n, _) in output.Scheduled)
            {
                if (!Known.Contains(s)) Known.Add(s);
                MostLive = Math.Max(MostLive, WindowBlockManager.LiveBlocks(s));
                int start = s.NumComputedTokens;
                ulong h = 0;
                for (int p = 0; p < start + n; p++)
                {
                    h = FakeEngine.Extend(h, s.TokenIds[p]);
                    if (p < start - window.Window + 1) continue;
                    int block = s.WindowBlockTable[p / bs], slot = block * bs + p % bs;
                    Assert.NotEqual(WindowBlockManager.ZeroBlock, block);
                    if (p < start)
                        Assert.True(_kv[slot] == h, $"seq {s.Id}: window K/V at position {p} is not its own");
                    else
                    {
                        Assert.DoesNotContain(Known, o => o != s && o.WindowBlockTable.Contains(block));
                        _kv[slot] = h;
                    }
                }
            }
            return scheduler.Update(output, _engine.Run(output));
        }

        public List<Sequence> RunToCompletion()
        {
            var finished = new List<Sequence>();
            for (int tick = 0; scheduler.HasWork; tick++)
            {
                Assert.True(tick < 10_000, "the scheduler made no progress");
                finished.AddRange(Step());
            }
            return finished;
        }

        public void AssertMatchesReference(Sequence s, int numPromptTokens, int maxModelLen) =>
            Assert.Equal(_engine.Reference([.. s.TokenIds.Take(numPromptTokens)], s.Sampling, Eos, maxModelLen),
                s.TokenIds.Skip(numPromptTokens));

        /// <summary>Blocks held, counted from the tables, equal blocks missing from the free lists.</summary>
        public void AssertAccounted()
        {
            Assert.Equal(blocks.NumBlocks - blocks.NumFreeBlocks, Known.Sum(s => s.BlockTable.Count));
            Assert.Equal(window.NumBlocks - 1 - window.NumFreeBlocks, Known.Sum(WindowBlockManager.LiveBlocks));
        }
    }

    static (Scheduler, BlockManager, WindowBlockManager, WindowRun) Create(SchedulerOptions options, int numBlocks,
        int windowBlocks, int blockSize, int window)
    {
        var blocks = new BlockManager(numBlocks, blockSize);
        var windowPool = new WindowBlockManager(windowBlocks, blockSize, window);
        var scheduler = new Scheduler(options, blocks, Eos, windowPool);
        return (scheduler, blocks, windowPool, new WindowRun(scheduler, blocks, windowPool));
    }

    [Fact]
    public void A_block_is_released_once_no_later_query_sees_it()
    {
        var window = new WindowBlockManager(numBlocks: 8, blockSize: 4, window: 6);
        var blocks = new BlockManager(8, 4);
        var s = Seq(16, maxTokens: 1);
        window.Allocate(s, 16);
        blocks.Allocate(s, 16);
        Assert.Equal([1, 2, 3, 4], s.WindowBlockTable);

        // a query at 10 sees 5..10: block 0 (0..3) is out, block 1 (4..7) still in
        s.NumComputedTokens = 10;
        window.ReleaseOutOfWindow(s);
        Assert.Equal([0, 2, 3, 4], s.WindowBlockTable);
        s.NumComputedTokens = 12;
        window.ReleaseOutOfWindow(s);
        Assert.Equal([0, 2, 3, 4], s.WindowBlockTable);
        s.NumComputedTokens = 13;
        window.ReleaseOutOfWindow(s);
        Assert.Equal([0, 0, 3, 4], s.WindowBlockTable);
        Assert.Equal(5, window.NumFreeBlocks);

        Assert.True(window.Covers(s, 13));  // sees 8..13
        Assert.False(window.Covers(s, 12)); // sees 7..12, and 7 is gone
        window.Free(s);
        Assert.Equal((7, 0), (window.NumFreeBlocks, s.WindowBlockTable.Count));
    }

    [Fact]
    public void A_2000_token_sequence_holds_at_most_six_window_blocks_and_gives_both_pools_back_when_done()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 4096, MaxNumSeqs = 4, MaxNumBatchedTokens = 256, PrefillChunkSize = 64,
        };
        var (scheduler, blocks, window, run) = Create(options, numBlocks: 160, windowBlocks: 7, blockSize: 16,
            window: 16);
        Assert.Equal(6, window.MaxLiveBlocks(64));
        var s = Seq(2000, maxTokens: 40);
        scheduler.Add(s);

        while (scheduler.HasWork)
        {
            run.Step();
            Assert.True(WindowBlockManager.LiveBlocks(s) <= 6);
            run.AssertAccounted();
        }

        // chunks start at multiples of 64: the window before a chunk and the chunk span 5 blocks, never the 6th
        Assert.Equal(5, run.MostLive);
        run.AssertMatchesReference(s, 2000, options.MaxModelLen);
        Assert.Equal((blocks.NumBlocks, window.NumBlocks - 1), (blocks.NumFreeBlocks, window.NumFreeBlocks));
        Assert.Empty(s.WindowBlockTable);
    }

    [Fact]
    public void A_window_pool_too_small_for_two_preempts_one_and_both_still_match_the_reference()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 512, MaxNumSeqs = 4, MaxNumBatchedTokens = 64, PrefillChunkSize = 4, KvWatermark = 0,
        };
        // four usable window blocks: one sequence's most (window 6 and chunks of 4: 4 blocks), not two
        var (scheduler, blocks, window, run) = Create(options, numBlocks: 64, windowBlocks: 5, blockSize: 4,
            window: 6);
        Assert.Equal(4, window.MaxLiveBlocks(4));
        var a = Seq(40, maxTokens: 12, firstToken: 1);
        var b = Seq(40, maxTokens: 12, firstToken: 100);
        scheduler.Add(a);
        scheduler.Add(b);

        run.RunToCompletion();

        Assert.True(scheduler.TotalPreemptions > 0);
        run.AssertMatchesReference(a, 40, options.MaxModelLen);
        run.AssertMatchesReference(b, 40, options.MaxModelLen);
        Assert.Equal((blocks.NumBlocks, window.NumBlocks - 1), (blocks.NumFreeBlocks, window.NumFreeBlocks));
    }

    [Fact]
    public void A_parked_turn_keeps_its_cache_when_the_next_turn_appends_and_recomputes_when_it_edits_the_past()
    {
        var options = new SchedulerOptions { MaxModelLen = 256, MaxNumSeqs = 2, MaxNumBatchedTokens = 32 };
        var (scheduler, blocks, window, run) = Create(options, numBlocks: 64, windowBlocks: 16, blockSize: 4,
            window: 16);
        var chat = Seq(40, maxTokens: 5, keepCache: true);
        scheduler.Add(chat);
        run.RunToCompletion();
        Assert.Equal((1, 44), (scheduler.NumParked, chat.NumComputedTokens));

        // the next turn appends to the whole conversation: all 44 computed tokens are kept
        var appended = chat.TokenIds.Concat([7, 8, 9]).ToList();
        var greedy = SamplingParams.Greedy(4) with { IgnoreEos = true };
        Assert.Equal(44, scheduler.StartTurn(chat, appended, greedy, 0, true));
        scheduler.Add(chat);
        Assert.Equal(44, chat.NumComputedTokens);
        run.RunToCompletion();
        Assert.Equal(44, chat.NumCachedTokens);
        run.AssertMatchesReference(chat, appended.Count, options.MaxModelLen);

        // an edit at position 10 keeps 10 tokens whose window the pool gave back long ago: computed again from 0
        var edited = chat.TokenIds.ToList();
        edited[10] = 63;
        Assert.Equal(10, scheduler.StartTurn(chat, edited, greedy, 0, true));
        scheduler.Add(chat);
        Assert.Equal((0, 0, 0), (chat.NumComputedTokens, chat.BlockTable.Count, chat.WindowBlockTable.Count));
        run.RunToCompletion();
        run.AssertMatchesReference(chat, edited.Count, options.MaxModelLen);
        run.AssertAccounted();

        scheduler.Release(chat);
        Assert.Equal((blocks.NumBlocks, window.NumBlocks - 1), (blocks.NumFreeBlocks, window.NumFreeBlocks));
    }

    [Fact]
    public void Sequences_share_no_prefix_while_a_window_pool_exists()
    {
        var options = new SchedulerOptions { MaxModelLen = 256, MaxNumSeqs = 2, MaxNumBatchedTokens = 64 };
        var (scheduler, _, _, run) = Create(options, numBlocks: 64, windowBlocks: 16, blockSize: 4, window: 8);
        var first = Seq(32, maxTokens: 2);
        scheduler.Add(first);
        run.RunToCompletion();
        var second = Seq(32, maxTokens: 2);
        scheduler.Add(second);
        run.RunToCompletion();

        Assert.Equal(0, second.NumCachedTokens);
        Assert.Equal(first.TokenIds, second.TokenIds);
    }

    [Fact]
    public void A_sequence_whose_window_cannot_fit_the_pool_is_refused_for_good()
    {
        var options = new SchedulerOptions { MaxModelLen = 256, MaxNumSeqs = 2, MaxNumBatchedTokens = 32 };
        var (scheduler, _, _, _) = Create(options, numBlocks: 64, windowBlocks: 4, blockSize: 4, window: 16);

        var e = Assert.Throws<SchedulerException>(() => scheduler.Add(Seq(40, maxTokens: 4)));
        Assert.False(e.Retryable);
        Assert.Contains("sliding-window KV blocks", e.Message);
        Assert.Throws<ArgumentException>(() =>
            new Scheduler(options, new BlockManager(8, 4), Eos, new WindowBlockManager(8, 8, 16)));
    }
}
