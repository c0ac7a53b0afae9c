namespace Weft.Scheduling.Tests;

public class SchedulerTests
{
    static readonly HashSet<int> Eos = [0];
    long _nextId;

    Sequence Seq(int promptLength, int maxTokens, int priority = 0, bool ignoreEos = true, int firstToken = 1,
        bool keepCache = false) =>
        new(++_nextId, [.. Enumerable.Range(firstToken, promptLength)],
            SamplingParams.Greedy(maxTokens) with { IgnoreEos = ignoreEos }, priority, keepCache);

    static (Scheduler Scheduler, BlockManager Blocks, FakeEngine Engine) Create(SchedulerOptions options, int numBlocks,
        int blockSize = 4)
    {
        var blocks = new BlockManager(numBlocks, blockSize);
        return (new Scheduler(options, blocks, Eos), blocks, new FakeEngine(blocks));
    }

    static List<Sequence> RunToCompletion(Scheduler scheduler, FakeEngine engine, int maxTicks = 10_000)
    {
        var finished = new List<Sequence>();
        for (int tick = 0; scheduler.HasWork; tick++)
        {
            Assert.True(tick < maxTicks, "the scheduler made no progress");
            finished.AddRange(engine.Step(scheduler).Finished);
        }
        return finished;
    }

    static void AssertMatchesReference(FakeEngine engine, Sequence s, int maxModelLen, int numPromptTokens)
    {
        var expected = engine.Reference([.. s.TokenIds.Take(numPromptTokens)], s.Sampling, Eos, maxModelLen);
        Assert.Equal(expected, s.TokenIds.Skip(numPromptTokens));
    }

    [Fact]
    public void Options_are_validated_with_clear_messages()
    {
        var ok = new SchedulerOptions { MaxModelLen = 128 };
        Assert.Null(ok.Validate());
        Assert.Contains("MaxNumBatchedTokens (8) must be at least MaxNumSeqs (16)",
            (ok with { MaxNumBatchedTokens = 8, MaxNumSeqs = 16 }).Validate());
        Assert.Contains("KvWatermark", (ok with { KvWatermark = 1 }).Validate());
        Assert.Contains("AgingTicks", (ok with { AgingTicks = 0 }).Validate());
        Assert.Contains("PrefillChunkSize", (ok with { PrefillChunkSize = 0 }).Validate());
        Assert.Contains("MaxWaiting", (ok with { MaxWaiting = 0 }).Validate());
        var error = Assert.Throws<ArgumentException>(
            () => new Scheduler(ok with { MaxModelLen = 1 }, new BlockManager(4, 4), Eos));
        Assert.Contains("MaxModelLen must be at least 2", error.Message);
    }

    [Fact]
    public void Every_tick_honours_the_limits_runs_decodes_first_and_never_drops_a_running_sequence()
    {
        var options = new SchedulerOptions { MaxModelLen = 128, MaxNumSeqs = 4, MaxNumBatchedTokens = 24 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 64);
        var all = new List<Sequence>();
        for (int i = 0; i < 20; i++)
        {
            var s = Seq(promptLength: 5 + 7 * i % 40, maxTokens: 3 + i % 9, ignoreEos: i % 2 == 0, firstToken: i * 50);
            all.Add(s);
            scheduler.Add(s);
        }

        while (scheduler.HasWork)
        {
            var runningBefore = all.Where(s => s.Status == SequenceStatus.Running).ToList();
            var output = scheduler.Schedule();
            Assert.True(output.Scheduled.Count <= options.MaxNumSeqs);
            Assert.True(output.NumBatchedTokens <= options.MaxNumBatchedTokens);
            Assert.Equal(output.Scheduled.Sum(e => e.NumNewTokens), output.NumBatchedTokens);
            Assert.True(scheduler.NumRunning <= options.MaxNumSeqs);
            var batch = output.Scheduled.Select(e => e.Sequence).ToList();
            // Everything that was running is in the batch (nothing was short of blocks here), ahead of admissions.
            Assert.Empty(output.Preempted);
            Assert.Equal(runningBefore.ToHashSet(), batch.Take(runningBefore.Count).ToHashSet());
            foreach (var e in output.Scheduled.Take(runningBefore.Count)
                .Where(e => e.Sequence.NumComputedTokens + 1 >= e.Sequence.NumTokens))
                Assert.Equal(1, e.NumNewTokens);
            scheduler.Update(output, engine.Run(output));
        }

        foreach (var s in all)
        {
            Assert.True(s.IsFinished);
            AssertMatchesReference(engine, s, options.MaxModelLen, s.NumPromptTokens);
            Assert.Empty(s.BlockTable);
        }
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void A_long_prompt_is_chunked_while_running_decodes_get_a_token_every_tick()
    {
        var options = new SchedulerOptions { MaxModelLen = 256, MaxNumSeqs = 8, MaxNumBatchedTokens = 16 };
        var (scheduler, _, engine) = Create(options, numBlocks: 64);
        var decoders = Enumerable.Range(0, 3).Select(i => Seq(4, maxTokens: 40, firstToken: 10 * i)).ToList();
        decoders.ForEach(scheduler.Add);
        engine.Step(scheduler); // all three prefill in one tick
        var longOne = Seq(100, maxTokens: 2, firstToken: 500);
        scheduler.Add(longOne);

        var chunks = new List<int>();
        while (longOne.NumCompletionTokens == 0)
        {
            var output = scheduler.Schedule();
            Assert.Equal(decoders, output.Scheduled.Take(3).Select(e => e.Sequence));
            Assert.All(output.Scheduled.Take(3), e => Assert.Equal((1, true), (e.NumNewTokens, e.NeedsToken)));
            var chunk = Assert.Single(output.Scheduled, e => e.Sequence == longOne);
            Assert.Equal(longOne.NumComputedTokens + chunk.NumNewTokens == 100, chunk.NeedsToken);
            chunks.Add(chunk.NumNewTokens);
            scheduler.Update(output, engine.Run(output));
        }
        Assert.Equal([13, 13, 13, 13, 13, 13, 13, 9], chunks);
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, longOne, options.MaxModelLen, 100);
        decoders.ForEach(s => AssertMatchesReference(engine, s, options.MaxModelLen, 4));
    }

    [Fact]
    public void Prefill_chunk_size_caps_one_sequence_per_tick()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 64, MaxNumSeqs = 4, MaxNumBatchedTokens = 32, PrefillChunkSize = 5
        };
        var (scheduler, _, engine) = Create(options, numBlocks: 16);
        var a = Seq(12, maxTokens: 1);
        var b = Seq(7, maxTokens: 1, firstToken: 100);
        scheduler.Add(a);
        scheduler.Add(b);
        var tick1 = engine.Step(scheduler).Output;
        Assert.Equal([(a, 5, false), (b, 5, false)],
            tick1.Scheduled.Select(e => (e.Sequence, e.NumNewTokens, e.NeedsToken)));
        var tick2 = engine.Step(scheduler).Output;
        Assert.Equal([(a, 5, false), (b, 2, true)],
            tick2.Scheduled.Select(e => (e.Sequence, e.NumNewTokens, e.NeedsToken)));
        var tick3 = engine.Step(scheduler).Output;
        Assert.Equal([(a, 2, true)], tick3.Scheduled.Select(e => (e.Sequence, e.NumNewTokens, e.NeedsToken)));
        Assert.False(scheduler.HasWork);
    }

    [Fact]
    public void Preemption_and_resumption_give_the_same_outputs_as_an_unconstrained_run()
    {
        // 10 blocks of 4 slots; each sequence grows to 26-30 tokens (7-8 blocks), so they must take turns.
        var options = new SchedulerOptions
        {
            MaxModelLen = 64, MaxNumSeqs = 6, MaxNumBatchedTokens = 32, KvWatermark = 0
        };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 10);
        var all = Enumerable.Range(0, 6).Select(i => Seq(6 + i % 5, maxTokens: 20, firstToken: 100 * i)).ToList();
        all.ForEach(scheduler.Add);

        var finished = RunToCompletion(scheduler, engine);

        Assert.Equal(all.ToHashSet(), finished.ToHashSet());
        Assert.True(scheduler.TotalPreemptions > 0);
        Assert.Equal(scheduler.TotalPreemptions, all.Sum(s => s.NumPreemptions));
        foreach (var s in all)
        {
            // Nothing was cached when they were admitted; what a resumption finds again is not reported as cached.
            Assert.Equal(0, s.NumCachedTokens);
            Assert.Equal(FinishReason.Length, s.FinishReason);
            AssertMatchesReference(engine, s, options.MaxModelLen, s.NumPromptTokens);
        }
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void Preemption_takes_the_lowest_priority_then_the_newest_and_requeues_it_first()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 12, MaxNumSeqs = 4, MaxNumBatchedTokens = 16, KvWatermark = 0
        };
        var (scheduler, _, engine) = Create(options, numBlocks: 6, blockSize: 2);
        var high = Seq(2, maxTokens: 10, priority: 0, firstToken: 10);
        var low = Seq(2, maxTokens: 10, priority: 2, firstToken: 20);
        var mid = Seq(2, maxTokens: 10, priority: 1, firstToken: 30);
        var midNewer = Seq(2, maxTokens: 10, priority: 1, firstToken: 40);
        foreach (var s in new[] { high, low, mid }) scheduler.Add(s);
        engine.Step(scheduler); // 3 blocks
        engine.Step(scheduler); // position 2: 3 more blocks, pool full
        engine.Step(scheduler); // position 3 fits
        scheduler.Add(midNewer);

        // Position 4 needs a new block for each: only the lowest priority goes, and nothing is admitted.
        var output = engine.Step(scheduler).Output;
        Assert.Equal([low], output.Preempted);
        Assert.Equal([high, mid], output.Scheduled.Select(e => e.Sequence));
        Assert.Equal((SequenceStatus.Waiting, 0, 0, 1),
            (low.Status, low.NumComputedTokens, low.BlockTable.Count, low.NumPreemptions));
        Assert.Equal(1, scheduler.TotalPreemptions);

        // Among equal priorities the newest goes first; a preempted sequence waits ahead of a newer request.
        var (scheduler2, _, engine2) = Create(options, numBlocks: 6, blockSize: 2);
        var first = Seq(2, maxTokens: 10, firstToken: 10);
        var second = Seq(2, maxTokens: 10, firstToken: 20);
        var third = Seq(2, maxTokens: 10, firstToken: 30);
        foreach (var s in new[] { first, second, third }) scheduler2.Add(s);
        for (int i = 0; i < 3; i++) engine2.Step(scheduler2);
        var late = Seq(2, maxTokens: 10, firstToken: 50);
        scheduler2.Add(late);
        Assert.Equal([third], engine2.Step(scheduler2).Output.Preempted);
        var finished = RunToCompletion(scheduler2, engine2);
        Assert.True(finished.IndexOf(third) < finished.IndexOf(late));
        foreach (var s in new[] { first, second, third, late })
            AssertMatchesReference(engine2, s, options.MaxModelLen, 2);
    }

    [Fact]
    public void Higher_priority_is_admitted_first_and_aging_prevents_starvation()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 64, MaxNumSeqs = 2, MaxNumBatchedTokens = 16, AgingTicks = 5
        };
        var (scheduler, _, engine) = Create(options, numBlocks: 64);
        var starved = Seq(4, maxTokens: 6, priority: 3, firstToken: 1000);
        scheduler.Add(starved);
        var all = new List<Sequence> { starved };
        int starvedFinishedAt = -1;
        // Sustained load: a new high-priority request every tick, more than two slots can serve.
        for (int tick = 0; tick < 300; tick++)
        {
            var s = Seq(4, maxTokens: 6, priority: 0, firstToken: tick * 10);
            all.Add(s);
            scheduler.Add(s);
            if (engine.Step(scheduler).Finished.Contains(starved)) starvedFinishedAt = tick;
        }
        Assert.True(scheduler.NumWaiting > 100, "the load was not sustained");
        Assert.InRange(starvedFinishedAt, 0, 100);

        RunToCompletion(scheduler, engine);
        Assert.All(all, s => AssertMatchesReference(engine, s, options.MaxModelLen, 4));
    }

    [Fact]
    public void Waiting_order_is_priority_then_arrival()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 1, MaxNumBatchedTokens = 16 };
        var (scheduler, _, engine) = Create(options, numBlocks: 64);
        var a = Seq(3, maxTokens: 1, priority: 1);
        var b = Seq(3, maxTokens: 1, priority: 0, firstToken: 10);
        var c = Seq(3, maxTokens: 1, priority: 1, firstToken: 20);
        var d = Seq(3, maxTokens: 1, priority: -1, firstToken: 30);
        foreach (var s in new[] { a, b, c, d }) scheduler.Add(s);
        Assert.Equal([d, b, a, c], RunToCompletion(scheduler, engine));
    }

    [Fact]
    public void Cancellation_finishes_and_frees_within_one_tick()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 1, MaxNumBatchedTokens = 16 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 16);
        var running = Seq(10, maxTokens: 20);
        var waiting = Seq(10, maxTokens: 20, firstToken: 50);
        scheduler.Add(running);
        scheduler.Add(waiting);
        engine.Step(scheduler);
        engine.Step(scheduler);
        Assert.Equal((1, 1), (scheduler.NumRunning, scheduler.NumWaiting));
        Assert.True(blocks.NumFreeBlocks < blocks.NumBlocks);

        Assert.True(scheduler.Cancel(running.Id));
        scheduler.Cancel(waiting);
        Assert.False(scheduler.Cancel(12345));
        var output = scheduler.Schedule();

        Assert.True(output.IsEmpty);
        Assert.Equal([running, waiting], output.Finished);
        Assert.All(output.Finished,
            s => Assert.Equal((SequenceStatus.Finished, FinishReason.Cancelled), (s.Status, s.FinishReason)));
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
        Assert.Empty(running.BlockTable);
        Assert.False(scheduler.HasWork);
    }

    [Fact]
    public async Task A_cancellation_from_another_thread_is_seen_at_the_next_tick()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 1, MaxNumBatchedTokens = 16 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 16);
        var s = Seq(10, maxTokens: 20);
        scheduler.Add(s);
        engine.Step(scheduler);

        await Task.Run(() => scheduler.Cancel(s), TestContext.Current.CancellationToken);
        var output = scheduler.Schedule();

        Assert.Equal([s], output.Finished);
        Assert.Equal(FinishReason.Cancelled, s.FinishReason);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void A_stopped_turn_finishes_as_stopped_at_the_next_tick_and_keeps_its_cache()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 2, MaxNumBatchedTokens = 16 };
        var (scheduler, _, engine) = Create(options, numBlocks: 16);
        var s = Seq(10, maxTokens: 20, keepCache: true);
        scheduler.Add(s);
        engine.Step(scheduler);
        engine.Step(scheduler);

        scheduler.Stop(s);
        var output = scheduler.Schedule();

        Assert.Equal([s], output.Finished);
        Assert.Equal((FinishReason.Stop, 2), (s.FinishReason, s.NumCompletionTokens));
        Assert.Equal((1, 3), (scheduler.NumParked, s.BlockTable.Count));
    }

    [Fact]
    public void Releasing_a_running_kept_turn_frees_its_blocks_when_it_finishes_instead_of_parking_them()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 2, MaxNumBatchedTokens = 16 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 16);
        var s = Seq(10, maxTokens: 3, keepCache: true);
        scheduler.Add(s);
        engine.Step(scheduler);

        scheduler.Release(s);
        Assert.Equal(SequenceStatus.Running, s.Status);
        RunToCompletion(scheduler, engine);

        Assert.Equal((FinishReason.Length, 0), (s.FinishReason, scheduler.NumParked));
        Assert.Empty(s.BlockTable);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
    }

    [Fact]
    public void A_full_queue_refuses_retryably_and_accepts_again_once_drained()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 64, MaxNumSeqs = 4, MaxNumBatchedTokens = 16, MaxWaiting = 2
        };
        var (scheduler, _, engine) = Create(options, numBlocks: 16);
        scheduler.Add(Seq(3, 2));
        scheduler.Add(Seq(3, 2));
        var refused = Seq(3, 2);
        var error = Assert.Throws<SchedulerException>(() => scheduler.Add(refused));
        Assert.True(error.Retryable);
        Assert.Contains("queue is full", error.Message);
        Assert.Equal(2, scheduler.NumWaiting);
        Assert.Equal(SequenceStatus.Waiting, refused.Status);

        engine.Step(scheduler);
        scheduler.Add(refused);
        Assert.Equal(1, scheduler.NumWaiting);
    }

    [Fact]
    public void Requests_that_can_never_fit_are_refused_without_retry()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 32, MaxNumSeqs = 4, MaxNumBatchedTokens = 16, KvWatermark = 0.25
        };
        var (scheduler, _, _) = Create(options, numBlocks: 8, blockSize: 4);

        var tooLong = Assert.Throws<SchedulerException>(() => scheduler.Add(Seq(20, maxTokens: 13)));
        Assert.False(tooLong.Retryable);
        Assert.Contains("prompt (20 tokens) plus max_tokens (13) exceeds the context length (32)", tooLong.Message);

        // 28 tokens need 7 blocks, but a sequence must leave the 2-block watermark free when admitted.
        var tooBig = Assert.Throws<SchedulerException>(() => scheduler.Add(Seq(20, maxTokens: 8)));
        Assert.False(tooBig.Retryable);
        Assert.Contains("needs 7 KV blocks", tooBig.Message);

        var empty = new Sequence(99, [], SamplingParams.Greedy(4));
        Assert.False(Assert.Throws<SchedulerException>(() => scheduler.Add(empty)).Retryable);
        Assert.Equal(0, scheduler.NumWaiting);

        var s = Seq(4, 4);
        scheduler.Add(s);
        Assert.Throws<InvalidOperationException>(() => scheduler.Add(s));
    }

    [Fact]
    public void Stops_on_eos_unless_ignored_and_on_stop_tokens()
    {
        var options = new SchedulerOptions { MaxModelLen = 512, MaxNumSeqs = 8, MaxNumBatchedTokens = 64 };
        var (scheduler, _, engine) = Create(options, numBlocks: 256);
        var prompt = Enumerable.Range(1, 5).ToArray();
        var free = engine.Reference(prompt, SamplingParams.Greedy(200) with { IgnoreEos = true }, Eos, 512);
        int stopToken = free[3];
        var withEos = new Sequence(1, prompt, SamplingParams.Greedy(200));
        var ignoring = new Sequence(2, prompt, SamplingParams.Greedy(200) with { IgnoreEos = true });
        var withStop = new Sequence(3, prompt,
            SamplingParams.Greedy(200) with { IgnoreEos = true, StopTokenIds = [stopToken] });
        foreach (var s in new[] { withEos, ignoring, withStop }) scheduler.Add(s);
        RunToCompletion(scheduler, engine);

        int firstEos = free.IndexOf(0);
        Assert.True(firstEos >= 0 && firstEos < 199, "the fake model never produced EOS in 200 tokens");
        Assert.Equal((FinishReason.Stop, firstEos + 1), (withEos.FinishReason, withEos.NumCompletionTokens));
        Assert.Equal(FinishReason.Length, ignoring.FinishReason);
        Assert.Equal(free, ignoring.TokenIds.Skip(5));
        Assert.Equal((FinishReason.Stop, free.IndexOf(stopToken) + 1),
            (withStop.FinishReason, withStop.NumCompletionTokens));
    }

    [Fact]
    public void A_shared_prefix_is_computed_once_and_counted_as_cached()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 4, MaxNumBatchedTokens = 64 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 32);
        int[] system = [.. Enumerable.Range(1, 10)]; // two full blocks of 4, then a partial one
        var a = new Sequence(1, [.. system, 20, 21], SamplingParams.Greedy(6) with { IgnoreEos = true });
        scheduler.Add(a);
        engine.Step(scheduler);
        Assert.Equal(0, a.NumCachedTokens);

        // While a runs, b shares its two full blocks.
        var b = new Sequence(2, [.. system, 30, 31, 32], SamplingParams.Greedy(6) with { IgnoreEos = true });
        scheduler.Add(b);
        var output = engine.Step(scheduler).Output;
        Assert.Equal(8, b.NumCachedTokens);
        Assert.Equal(13 - 8, output.Scheduled.Single(e => e.Sequence == b).NumNewTokens);
        Assert.Equal(a.BlockTable.Take(2), b.BlockTable.Take(2));
        Assert.Equal(2, blocks.RefCount(a.BlockTable[0]));

        RunToCompletion(scheduler, engine);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);

        // After both finished and freed their blocks, a new request with a's start still finds a's three full blocks.
        var c = new Sequence(3, [.. system, 20, 21, 5, 6, 7], SamplingParams.Greedy(3) with { IgnoreEos = true });
        scheduler.Add(c);
        RunToCompletion(scheduler, engine);
        Assert.Equal(12, c.NumCachedTokens);
        foreach (var s in new[] { a, b, c }) AssertMatchesReference(engine, s, options.MaxModelLen, s.NumPromptTokens);
    }

    [Fact]
    public void A_kept_conversation_computes_only_the_new_tokens_of_its_next_turn()
    {
        var options = new SchedulerOptions { MaxModelLen = 128, MaxNumSeqs = 4, MaxNumBatchedTokens = 64 };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 32, blockSize: 4);
        var chat = Seq(9, maxTokens: 5, keepCache: true);
        scheduler.Add(chat);
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, chat, options.MaxModelLen, 9);
        Assert.Equal(1, scheduler.NumParked);
        Assert.Equal(13, chat.NumComputedTokens); // the last sampled token was never fed back
        Assert.Equal(4, chat.BlockTable.Count);
        Assert.Equal(0.125, scheduler.KvCacheUsage);

        // Turn 2 appends the user's next message to the whole history.
        List<int> turn2 = [.. chat.TokenIds, 70, 71, 72, 73, 74];
        Assert.Equal(13, scheduler.StartTurn(chat, turn2, SamplingParams.Greedy(4) with { IgnoreEos = true }, 0, true));
        scheduler.Add(chat);
        Assert.Equal(0, scheduler.NumParked);
        var output = engine.Step(scheduler).Output;
        Assert.Equal(19 - 13, output.Scheduled.Single().NumNewTokens);
        Assert.Equal(13, chat.NumCachedTokens);
        Assert.Throws<InvalidOperationException>(
            () => scheduler.StartTurn(chat, turn2, SamplingParams.Greedy(4), priority: 0, keepCache: true));
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, chat, options.MaxModelLen, 19);

        // Turn 3 diverges inside the fourth block (an edited message): the kept part of that block is reused.
        List<int> turn3 = [.. chat.TokenIds.Take(14), 90, 91];
        Assert.Equal(14, scheduler.StartTurn(chat, turn3, SamplingParams.Greedy(4) with { IgnoreEos = true }, 0, true));
        scheduler.Add(chat);
        Assert.Equal(4, chat.BlockTable.Count);
        RunToCompletion(scheduler, engine);
        Assert.Equal(14, chat.NumCachedTokens);
        AssertMatchesReference(engine, chat, options.MaxModelLen, 16);

        scheduler.Release(chat);
        Assert.Equal(0, scheduler.NumParked);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
        scheduler.Release(chat); // nothing left to free
    }

    [Fact]
    public void Parked_conversations_are_evicted_least_recently_used_first_before_any_preemption()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 40, MaxNumSeqs = 4, MaxNumBatchedTokens = 64, KvWatermark = 0
        };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 10, blockSize: 4);
        var older = Seq(8, maxTokens: 1, firstToken: 100, keepCache: true);
        var newer = Seq(8, maxTokens: 1, firstToken: 200, keepCache: true);
        scheduler.Add(older);
        RunToCompletion(scheduler, engine);
        scheduler.Add(newer);
        RunToCompletion(scheduler, engine);
        Assert.Equal((2, 2, 2), (scheduler.NumParked, older.BlockTable.Count, newer.BlockTable.Count));
        Assert.Equal(6, blocks.NumFreeBlocks);

        // 33 computed tokens need 9 blocks: the older conversation goes first, then the newer one, and nobody is
        // preempted.
        var big = Seq(20, maxTokens: 14, firstToken: 300);
        scheduler.Add(big);
        engine.Step(scheduler); // the prompt takes 5 blocks
        Assert.Equal((2, 2), (older.BlockTable.Count, newer.BlockTable.Count));
        for (int tick = 0; older.BlockTable.Count > 0; tick++)
        {
            Assert.True(tick < 10, "the parked conversation was never evicted");
            engine.Step(scheduler);
        }
        Assert.Equal((2, 25), (newer.BlockTable.Count, big.NumComputedTokens)); // position 24 needed a seventh block
        RunToCompletion(scheduler, engine);
        Assert.Empty(newer.BlockTable);
        Assert.Equal((0, 0L), (scheduler.NumParked, scheduler.TotalPreemptions));
        AssertMatchesReference(engine, big, options.MaxModelLen, 20);

        // An evicted conversation's next turn simply recomputes; its freed full blocks may still be found.
        List<int> next = [.. older.TokenIds, 1, 2, 3];
        Assert.Equal(0, scheduler.StartTurn(older, next, SamplingParams.Greedy(2) with { IgnoreEos = true }, 0, true));
        scheduler.Add(older);
        RunToCompletion(scheduler, engine);
        AssertMatchesReference(engine, older, options.MaxModelLen, next.Count);
    }

    [Fact]
    public void A_parked_cache_is_not_evicted_for_a_queued_sequence_that_still_would_not_fit()
    {
        var options = new SchedulerOptions
        {
            MaxModelLen = 40, MaxNumSeqs = 4, MaxNumBatchedTokens = 64, KvWatermark = 0
        };
        var (scheduler, blocks, engine) = Create(options, numBlocks: 10, blockSize: 4);
        var parked = Seq(8, maxTokens: 1, firstToken: 100, keepCache: true);
        scheduler.Add(parked);
        RunToCompletion(scheduler, engine);
        var runner = Seq(20, maxTokens: 8, firstToken: 200);
        scheduler.Add(runner);
        engine.Step(scheduler); // 5 blocks: 3 left free, 2 parked
        var head = Seq(24, maxTokens: 4, firstToken: 300); // 6 blocks: more than the free and parked ones together
        scheduler.Add(head);

        while (runner.Status == SequenceStatus.Running)
        {
            engine.Step(scheduler);
            if (runner.Status == SequenceStatus.Running) Assert.Equal(SequenceStatus.Waiting, head.Status);
            Assert.Equal((1, 2), (scheduler.NumParked, parked.BlockTable.Count));
        }
        RunToCompletion(scheduler, engine);
        // the head fitted without it once the runner left
        Assert.Equal((1, 2), (scheduler.NumParked, parked.BlockTable.Count));
        AssertMatchesReference(engine, head, options.MaxModelLen, 24);
    }

    [Fact]
    public void Update_and_schedule_enforce_one_update_per_tick()
    {
        var options = new SchedulerOptions { MaxModelLen = 64, MaxNumSeqs = 4, MaxNumBatchedTokens = 16 };
        var (scheduler, _, engine) = Create(options, numBlocks: 16);
        var s = Seq(3, 4);
        scheduler.Add(s);
        var output = scheduler.Schedule();
        Assert.Throws<InvalidOperationException>(() => scheduler.Schedule());
        Assert.Throws<ArgumentException>(() => scheduler.Update(output, []));
        scheduler.Update(output, engine.Run(output));
        Assert.Throws<InvalidOperationException>(() => scheduler.Update(output, [5]));

        var failing = scheduler.Schedule();
        Assert.Equal([s], scheduler.Fail(failing, "device lost"));
        Assert.Equal((FinishReason.Error, "device lost"), (s.FinishReason, s.Error));
        Assert.False(scheduler.HasWork);
        Assert.Equal(0, scheduler.KvCacheUsage);
    }
}
