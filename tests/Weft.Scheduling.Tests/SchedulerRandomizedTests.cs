namespace Weft.Scheduling.Tests;

/// <summary>
/// Thousands of random admissions, forks, cancellations, new turns and releases against a small KV pool, so that
/// chunking, prefix hits, forks, parking, eviction and preemption all interleave; the block bookkeeping is checked
/// after every tick and every finished sequence's output against an unconstrained run.
/// </summary>
public class SchedulerRandomizedTests
{
    static readonly HashSet<int> Eos = [0];

    [Theory]
    [InlineData(1, null)]
    [InlineData(2, 7)]
    [InlineData(3, null)]
    [InlineData(4, 3)]
    public void Random_operations_keep_the_block_bookkeeping_exact(int seed, int? prefillChunkSize)
    {
        var rng = new Random(seed);
        var options = new SchedulerOptions
        {
            MaxModelLen = 48, MaxNumSeqs = 6, MaxNumBatchedTokens = 20,
            MaxWaiting = 12, AgingTicks = 7, KvWatermark = 0.05, PrefillChunkSize = prefillChunkSize
        };
        var blocks = new BlockManager(numBlocks: 24, blockSize: 4);
        var scheduler = new Scheduler(options, blocks, Eos);
        var engine = new FakeEngine(blocks, vocabSize: 24);
        int[][] systemPrompts = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12, 13],
            [14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 1, 2]];
        var tracked = new List<Sequence>(); // every sequence that is queued, running, or may hold blocks
        long nextId = 0;
        int operations = 0, finishedChecked = 0, cachedTokens = 0, turnsAfterEviction = 0, blockCopies = 0;

        List<int> RandomTokens(int count) => [.. Enumerable.Range(0, count).Select(_ => rng.Next(1, engine.VocabSize))];
        SamplingParams RandomSampling() => SamplingParams.Greedy(rng.Next(1, 13)) with { IgnoreEos = rng.Next(3) == 0 };

        for (int tick = 0; tick < 2500; tick++)
        {
            for (int op = rng.Next(3); op > 0; op--, operations++)
            {
                var active = tracked.Where(s => !s.IsFinished).ToList();
                var kept = tracked.Where(s => s.IsFinished && s.KeepCache).ToList();
                switch (rng.Next(10))
                {
                    case < 4:
                        {
                            List<int> prompt =
                                [.. systemPrompts[rng.Next(systemPrompts.Length)], .. RandomTokens(rng.Next(7))];
                            var s = new Sequence(++nextId, prompt, RandomSampling(), rng.Next(4),
                                keepCache: rng.Next(2) == 0);
                            bool full = scheduler.NumWaiting >= options.MaxWaiting;
                            try
                            {
                                scheduler.Add(s);
                                Assert.False(full);
                                tracked.Add(s);
                            }
                            catch (SchedulerException e)
                            {
                                Assert.True(full && e.Retryable);
                            }
                            break;
                        }
                    case 4 when active.Count > 0:
                        {
                            var victim = active[rng.Next(active.Count)];
                            if (rng.Next(2) == 0) Assert.True(scheduler.Cancel(victim.Id));
                            else scheduler.Cancel(victim);
                            break;
                        }
                    case 5 or 6 when kept.Count > 0 && scheduler.NumWaiting < options.MaxWaiting:
                        {
                            var s = kept[rng.Next(kept.Count)];
                            // Mostly the next message after the whole history; sometimes an edit of an earlier point.
                            int keep = rng.Next(4) == 0 ? rng.Next(1, s.NumTokens) : s.NumTokens;
                            List<int> tokens = [.. s.TokenIds.Take(keep), .. RandomTokens(rng.Next(1, 6))];
                            var sampling = RandomSampling();
                            if (tokens.Count + sampling.MaxTokens > options.MaxModelLen)
                            {
                                scheduler.Release(s);
                                tracked.Remove(s);
                                break;
                            }
                            if (s.BlockTable.Count == 0) turnsAfterEviction++;
                            scheduler.StartTurn(s, tokens, sampling, s.Priority, s.KeepCache);
                            scheduler.Add(s);
                            break;
                        }
                    case 7 when kept.Count > 0:
                        {
                            var s = kept[rng.Next(kept.Count)];
                            scheduler.Release(s);
                            Assert.Empty(s.BlockTable);
                            tracked.Remove(s);
                            break;
                        }
                    case 9 when tracked.Count > 0 && scheduler.NumWaiting < options.MaxWaiting:
                        {
                            // another choice of a sequence's prompt: mostly a running one's, as the grain does, but
                            // the parent may be in any state by admission
                            var running = tracked.Where(t => t.Status == SequenceStatus.Running).ToList();
                            var parents = running.Count > 0 && rng.Next(4) > 0 ? running : tracked;
                            var parent = parents[rng.Next(parents.Count)];
                            var s = new Sequence(++nextId, [.. parent.TokenIds.Take(parent.NumPromptTokens)],
                                RandomSampling(), rng.Next(4), keepCache: rng.Next(2) == 0);
                            if (s.NumTokens + s.Sampling.MaxTokens > options.MaxModelLen) break;
                            scheduler.AddFork(s, parent);
                            tracked.Add(s);
                            break;
                        }
                    case 8:
                        {
                            var error = Assert.Throws<SchedulerException>(
                                () => scheduler.Add(new Sequence(-1, RandomTokens(40), SamplingParams.Greedy(9))));
                            Assert.False(error.Retryable);
                            break;
                        }
                }
            }

            var runningBefore = tracked.Where(s => s.Status == SequenceStatus.Running).ToList();
            var output = scheduler.Schedule();
            CheckTick(options, output, runningBefore);
            blockCopies += output.BlockCopies.Count;
            foreach (var s in scheduler.Update(output, engine.Run(output)))
            {
                var expected = engine.Reference([.. s.TokenIds.Take(s.NumPromptTokens)], s.Sampling, Eos,
                    options.MaxModelLen);
                Assert.Equal(expected, s.TokenIds.Skip(s.NumPromptTokens));
                finishedChecked++;
                cachedTokens += s.NumCachedTokens;
            }
            CheckBlocks(blocks, scheduler, tracked);
            tracked.RemoveAll(s => s.IsFinished && !s.KeepCache);
        }

        // Drain: everything still queued finishes, and releasing the parked conversations returns every block.
        for (int tick = 0; scheduler.HasWork; tick++)
        {
            Assert.True(tick < 5000, "the scheduler made no progress");
            engine.Step(scheduler);
            CheckBlocks(blocks, scheduler, tracked);
        }
        foreach (var s in tracked) scheduler.Release(s);
        Assert.Equal(0, scheduler.NumParked);
        Assert.Equal(blocks.NumBlocks, blocks.NumFreeBlocks);
        Assert.All(Enumerable.Range(0, blocks.NumBlocks), b => Assert.Equal(0, blocks.RefCount(b)));
        Assert.All(tracked, s => Assert.Empty(s.BlockTable));

        // The run must have exercised what it claims to check.
        Assert.True(operations > 2000, $"{operations} operations");
        Assert.True(finishedChecked > 500, $"{finishedChecked} outputs checked");
        Assert.True(scheduler.TotalPreemptions > 10, $"{scheduler.TotalPreemptions} preemptions");
        Assert.True(cachedTokens > 1000, $"{cachedTokens} cached tokens\n");
        Assert.True(blockCopies > 50, $"{blockCopies} block copies");
    }

    static void CheckTick(SchedulerOptions options, ScheduleOutput output, List<Sequence> runningBefore)
    {
        Assert.True(output.Scheduled.Count <= options.MaxNumSeqs);
        Assert.True(output.NumBatchedTokens <= options.MaxNumBatchedTokens);
        var batch = output.Scheduled.Select(e => e.Sequence).ToList();
        Assert.Equal(batch.Count, batch.Distinct().Count());
        Assert.All(output.Finished, s => Assert.Equal(FinishReason.Cancelled, s.FinishReason));
        // A running sequence leaves a tick only by being preempted or cancelled.
        foreach (var s in runningBefore)
            Assert.True(batch.Contains(s) || output.Preempted.Contains(s) || output.Finished.Contains(s),
                $"{s} was dropped from the tick");
        if (output.Preempted.Count > 0)
            Assert.All(batch, s => Assert.Contains(s, runningBefore)); // never preempt to admit
    }

    static void CheckBlocks(BlockManager blocks, Scheduler scheduler, List<Sequence> tracked)
    {
        var refs = new int[blocks.NumBlocks];
        foreach (var s in tracked)
        {
            Assert.Equal(blocks.BlocksFor(s.NumComputedTokens), s.BlockTable.Count);
            foreach (int b in s.BlockTable) refs[b]++;
        }
        var free = blocks.FreeList().ToList();
        Assert.Equal(blocks.NumFreeBlocks, free.Count);
        Assert.Equal(Enumerable.Range(0, blocks.NumBlocks).Where(b => refs[b] == 0), free.Order());
        for (int b = 0; b < blocks.NumBlocks; b++)
            if (refs[b] != blocks.RefCount(b))
                Assert.Fail($"block {b}: ref count {blocks.RefCount(b)}, held by {refs[b]} tables");
        // A shared block is full and computed for every holder, so nobody writes into it.
        foreach (var s in tracked)
            for (int i = 0; i < s.BlockTable.Count; i++)
                if (refs[s.BlockTable[i]] > 1)
                    Assert.True((i + 1) * blocks.BlockSize <= s.NumComputedTokens,
                        $"{s} shares a block it still fills");
        Assert.Equal(tracked.Count(s => s.IsFinished && s.BlockTable.Count > 0), scheduler.NumParked);
        Assert.Equal(tracked.Count(s => s.Status == SequenceStatus.Running), scheduler.NumRunning);
        Assert.Equal(tracked.Count(s => s.Status == SequenceStatus.Waiting), scheduler.NumWaiting);
    }
}
