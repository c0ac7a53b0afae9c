namespace Weft.Scheduling.Tests;

public class BlockManagerTests
{
    static Sequence Seq(long id, params int[] tokens) => new(id, tokens, SamplingParams.Greedy(8));

    /// <summary>Allocates and "computes" the next <paramref name="n"/> tokens, as one tick of the scheduler
    /// would.</summary>
    static void Compute(BlockManager blocks, Sequence s, int n)
    {
        blocks.Allocate(s, n);
        s.NumComputedTokens += n;
        blocks.CommitComputed(s);
    }

    [Fact]
    public void Allocate_counts_blocks_by_slots_and_refuses_when_short()
    {
        var blocks = new BlockManager(numBlocks: 4, blockSize: 4);
        var s = Seq(1, [.. Enumerable.Range(0, 10)]);
        Assert.Equal(3, blocks.BlocksNeeded(s, 10));
        Assert.Equal(3, blocks.BlocksNeeded(s, 9));
        Compute(blocks, s, 6);
        Assert.Equal(2, s.BlockTable.Count);
        Assert.Equal(0, blocks.BlocksNeeded(s, 2));
        Assert.Equal(1, blocks.BlocksNeeded(s, 3));
        Assert.Equal(2, blocks.NumFreeBlocks);
        Assert.True(blocks.CanAllocate(s, 4, reserve: 1));
        Assert.False(blocks.CanAllocate(s, 4, reserve: 2));

        var other = Seq(2, [.. Enumerable.Range(100, 20)]);
        var error = Assert.Throws<InvalidOperationException>(() => blocks.Allocate(other, 12));
        Assert.Contains("needs 3 KV blocks but only 2 are free", error.Message);
        Assert.Empty(other.BlockTable);
        Assert.Equal(2, blocks.NumFreeBlocks);
    }

    [Fact]
    public void Shared_prefix_reuses_full_blocks_with_ref_counts()
    {
        var blocks = new BlockManager(numBlocks: 8, blockSize: 4);
        int[] system = [.. Enumerable.Range(1, 8)];
        var a = Seq(1, [.. system, 50, 51, 52]);
        Compute(blocks, a, a.NumTokens);
        Assert.Equal(2, blocks.NumCachedBlocks); // the third block is only partly filled

        var b = Seq(2, [.. system, 60]);
        Assert.Equal(8, blocks.AllocatePrefix(b));
        Assert.Equal(8, b.NumComputedTokens);
        Assert.Equal(a.BlockTable.Take(2), b.BlockTable);
        Assert.Equal(2, blocks.RefCount(a.BlockTable[0]));
        Assert.Equal(2, blocks.RefCount(a.BlockTable[1]));
        Assert.Equal(1, blocks.RefCount(a.BlockTable[2]));
        Assert.Equal(5, blocks.NumFreeBlocks);

        // Freeing one holder leaves the shared blocks with the other.
        blocks.Free(a);
        Assert.Empty(a.BlockTable);
        Assert.Equal(0, a.NumComputedTokens);
        Assert.Equal(1, blocks.RefCount(b.BlockTable[0]));
        Assert.Equal(6, blocks.NumFreeBlocks);
        blocks.Free(b);
        Assert.Equal(8, blocks.NumFreeBlocks);
    }

    [Fact]
    public void Sequences_with_different_cache_salts_never_share_a_block()
    {
        var blocks = new BlockManager(numBlocks: 8, blockSize: 4);
        int[] prompt = [.. Enumerable.Range(1, 9)];
        var tenantA = new Sequence(1, prompt, SamplingParams.Greedy(8)) { CacheSalt = 11 };
        Compute(blocks, tenantA, tenantA.NumTokens);

        var tenantB = new Sequence(2, prompt, SamplingParams.Greedy(8)) { CacheSalt = 22 };
        Assert.Equal(0, blocks.AllocatePrefix(tenantB));
        var unsalted = Seq(3, prompt);
        Assert.Equal(0, blocks.AllocatePrefix(unsalted));
        var tenantAgain = new Sequence(4, prompt, SamplingParams.Greedy(8)) { CacheSalt = 11 };
        Assert.Equal(8, blocks.AllocatePrefix(tenantAgain));
        Assert.Equal(tenantA.BlockTable.Take(2), tenantAgain.BlockTable);
    }

    [Fact]
    public void Prefix_never_includes_the_last_token_and_stops_at_the_first_difference()
    {
        var blocks = new BlockManager(numBlocks: 8, blockSize: 4);
        var a = Seq(1, [.. Enumerable.Range(1, 12)]);
        Compute(blocks, a, 12);
        Assert.Equal(3, blocks.NumCachedBlocks);

        // Same 12 tokens: the third block holds the last token, which must be computed to get logits.
        var same = Seq(2, [.. Enumerable.Range(1, 12)]);
        Assert.Equal(8, blocks.AllocatePrefix(same));

        // Differs inside the second block: only the first is reused.
        var diverging = Seq(3, [1, 2, 3, 4, 5, 6, 99, 8, 9, 10, 11, 12, 13]);
        Assert.Equal(4, blocks.AllocatePrefix(diverging));

        // Same second block's tokens after a different first block: the chained hash does not match.
        var shifted = Seq(4, [0, 0, 0, 0, 5, 6, 7, 8, 9]);
        Assert.Equal(0, blocks.AllocatePrefix(shifted));
        Assert.Empty(shifted.BlockTable);
    }

    [Fact]
    public void Freed_blocks_stay_findable_until_handed_out_least_recently_freed_first()
    {
        var blocks = new BlockManager(numBlocks: 6, blockSize: 2);
        var a = Seq(1, 1, 2, 3, 4, 5);
        Compute(blocks, a, 5); // blocks: [1,2] [3,4] cached, [5] partial
        var aBlocks = a.BlockTable.ToArray();
        blocks.Free(a);
        Assert.Equal(6, blocks.NumFreeBlocks);
        Assert.Equal(2, blocks.NumCachedBlocks);

        // Blocks with no cached content are handed out before cached ones, and a's leading block goes last.
        var free = blocks.FreeList().ToList();
        Assert.Equal([aBlocks[1], aBlocks[0]], free[^2..]);

        var filler = Seq(2, [.. Enumerable.Range(100, 8)]);
        blocks.Allocate(filler, 8);
        Assert.DoesNotContain(aBlocks[0], filler.BlockTable);
        Assert.DoesNotContain(aBlocks[1], filler.BlockTable);

        // A later conversation with the same start finds a's blocks again, taking them off the free list.
        var again = Seq(3, 1, 2, 3, 4, 9);
        Assert.Equal(4, blocks.AllocatePrefix(again));
        Assert.Equal(aBlocks[..2], again.BlockTable);
        Assert.Equal(0, blocks.NumFreeBlocks);

        // Once a cached block is handed out for new content, its old content is no longer found.
        blocks.Free(again);
        blocks.Free(filler);
        var hog = Seq(4, [.. Enumerable.Range(200, 12)]);
        blocks.Allocate(hog, 12);
        Assert.Equal(0, blocks.AllocatePrefix(Seq(5, 1, 2, 3, 4, 9)));
        Assert.Equal(0, blocks.NumCachedBlocks);
    }

    [Fact]
    public void Truncate_keeps_an_exclusive_partial_block_but_drops_a_shared_one()
    {
        var blocks = new BlockManager(numBlocks: 8, blockSize: 4);
        var a = Seq(1, [.. Enumerable.Range(1, 10)]);
        Compute(blocks, a, 10);
        var table = a.BlockTable.ToArray();

        // Keep 6 tokens: the second block is a's alone, so it stays, no longer findable by its old content.
        Assert.Equal(6, blocks.TruncateTo(a, 6));
        Assert.Equal(6, a.NumComputedTokens);
        Assert.Equal(table[..2], a.BlockTable);
        Assert.False(blocks.IsCached(table[1]));
        Assert.True(blocks.IsCached(table[0]));
        Assert.Equal(6, blocks.NumFreeBlocks);

        // A shared partial block must not be written again: it is released and its tokens will be recomputed.
        var b = Seq(2, [.. Enumerable.Range(1, 9)]);
        Compute(blocks, b, 9);
        var c = Seq(3, [.. Enumerable.Range(1, 9)]);
        Assert.Equal(8, blocks.AllocatePrefix(c));
        Assert.Equal(2, blocks.RefCount(c.BlockTable[1]));
        Assert.Equal(4, blocks.TruncateTo(c, 6));
        Assert.Single(c.BlockTable);
        Assert.Equal(1, blocks.RefCount(b.BlockTable[1]));
        Assert.True(blocks.IsCached(b.BlockTable[1]));

        // Never keeps more than was computed.
        Assert.Equal(4, blocks.TruncateTo(c, 100));
    }

    [Fact]
    public void Bad_sizes_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockManager(0, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockManager(16, 0));
    }
}
