namespace Weft.Scheduling.Tests;

/// <summary>
/// A deterministic stand-in for the forward pass over a simulated paged KV pool. The "K/V" of position p is a hash of
/// tokens[0..p], written into the slot the block table names; every chunk first checks that the slots of the positions
/// it attends to (the computed ones) hold exactly that, and that it writes only blocks it owns alone. The next token is
/// a function of the whole token history, so a correct scheduler gives the same output however it batches, chunks,
/// preempts or reuses cached blocks.
/// </summary>
sealed class FakeEngine(BlockManager blocks, int vocabSize = 64)
{
    readonly ulong[] _kv = new ulong[blocks.NumBlocks * blocks.BlockSize];

    public int VocabSize => vocabSize;

    public int[] Run(ScheduleOutput output)
    {
        int bs = blocks.BlockSize;
        foreach (var (source, destination) in output.BlockCopies)
        {
            if (blocks.RefCount(destination) != 1)
                Assert.Fail($"a block copy writes block {destination}, shared by {blocks.RefCount(destination)}");
            Array.Copy(_kv, source * bs, _kv, destination * bs, bs);
        }
        var sampled = new List<int>();
        foreach (var (s, n, needsToken) in output.Scheduled)
        {
            int start = s.NumComputedTokens;
            Assert.True(n >= 1, $"seq {s.Id} scheduled for {n} tokens");
            Assert.True(start + n <= s.NumTokens, $"seq {s.Id} scheduled past its tokens");
            Assert.True(s.BlockTable.Count * bs >= start + n, $"seq {s.Id}: block table too short for the chunk");
            Assert.Equal(start + n == s.NumTokens, needsToken);
            ulong h = 0;
            for (int p = 0; p < start + n; p++)
            {
                h = Extend(h, s.TokenIds[p]);
                int block = s.BlockTable[p / bs];
                int slot = block * bs + p % bs;
                if (p < start)
                {
                    if (_kv[slot] != h)
                        Assert.Fail($"seq {s.Id}: cached K/V at position {p} (block {block}) is not this sequence's");
                }
                else
                {
                    if (blocks.RefCount(block) != 1)
                        Assert.Fail($"seq {s.Id} writes position {p} into block {block}, shared by " +
                            $"{blocks.RefCount(block)}");
                    _kv[slot] = h;
                }
            }
            if (needsToken) sampled.Add(NextToken(h));
        }
        return [.. sampled];
    }

    /// <summary>One tick: schedule, run, update. Returns the output and the sequences that finished in the
    /// update.</summary>
    public (ScheduleOutput Output, IReadOnlyList<Sequence> Finished) Step(Scheduler scheduler)
    {
        var output = scheduler.Schedule();
        return (output, scheduler.Update(output, Run(output)));
    }

    /// <summary>The completion an unconstrained, one-sequence run produces for <paramref name="prompt"/>.</summary>
    public List<int> Reference(IReadOnlyList<int> prompt, SamplingParams sampling, IReadOnlySet<int> eos,
        int maxModelLen)
    {
        var tokens = new List<int>(prompt);
        var completion = new List<int>();
        while (true)
        {
            ulong h = 0;
            foreach (int t in tokens) h = Extend(h, t);
            int next = NextToken(h);
            tokens.Add(next);
            completion.Add(next);
            if (sampling.StopTokenIds.Contains(next) || (!sampling.IgnoreEos && eos.Contains(next))) return completion;
            if (completion.Count >= sampling.MaxTokens || tokens.Count >= maxModelLen) return completion;
        }
    }

    int NextToken(ulong h) => (int)(h % (ulong)vocabSize);

    internal static ulong Extend(ulong h, int token)
    {
        ulong z = h ^ ((ulong)(uint)token * 0x9E3779B97F4A7C15) ^ 0xD1B54A32D192ED03;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }
}
