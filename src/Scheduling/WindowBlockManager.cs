namespace Weft.Scheduling;

/// <summary>
/// The KV blocks of a model's sliding-window layers (gemma2/gemma3's local layers): a query at position p attends to
/// keys (p − <see cref="Window"/>, p] only, so the blocks wholly before the window of a sequence's next query are
/// given back as soon as its computed tokens pass them, and a long sequence holds a bounded number of them. Each block
/// has one owner: no prefix sharing. Block 0 is never handed out; it stays all zeros, and a released entry of
/// <see cref="Sequence.WindowBlockTable"/> points at it, so a kernel that reads a whole prefix and weighs the keys
/// before the window 0 reads finite zeros there (0 · a stale value could be NaN).
/// </summary>
/// <remarks>
/// A sequence's window table is indexed like its <see cref="Sequence.BlockTable"/> (position / block size); the
/// released entries are always a prefix of it. With chunks of at most c tokens a sequence holds at most
/// <see cref="MaxLiveBlocks"/>(c) blocks during a tick.
/// </remarks>
public sealed class WindowBlockManager
{
    /// <summary>The all-zero block that released entries point at.</summary>
    public const int ZeroBlock = 0;

    readonly int[] _free;

    public WindowBlockManager(int numBlocks, int blockSize, int window)
    {
        if (numBlocks < 2)
            throw new ArgumentOutOfRangeException(nameof(numBlocks), numBlocks,
                "The window pool needs its zero block and at least one more.");
        if (blockSize < 1)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "A KV block holds at least one token.");
        if (window < 1)
            throw new ArgumentOutOfRangeException(nameof(window), window, "A sliding window holds at least one token.");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        Window = window;
        _free = new int[numBlocks - 1];
        // handed out from the end: block 1 first
        for (int i = 0; i < _free.Length; i++) _free[i] = numBlocks - 1 - i;
        NumFreeBlocks = _free.Length;
    }

    public int NumBlocks { get; }
    public int BlockSize { get; }
    /// <summary>Tokens a query sees on a sliding-window layer, itself included.</summary>
    public int Window { get; }
    public int NumFreeBlocks { get; private set; }

    public int BlocksFor(int numTokens) => (numTokens + BlockSize - 1) / BlockSize;

    /// <summary>The most blocks a sequence holds during a tick whose chunks have at most <paramref name="chunk"/>
    /// tokens: those of the window before the chunk's first token, the chunk's own, and one more where they straddle
    /// block boundaries.</summary>
    public int MaxLiveBlocks(int chunk) => BlocksFor(Window - 1 + chunk) + 1;

    /// <summary>Blocks that must be added to <paramref name="s"/>'s window table to hold
    /// <paramref name="numNewTokens"/> more tokens.</summary>
    public int BlocksNeeded(Sequence s, int numNewTokens) =>
        Math.Max(0, BlocksFor(s.NumComputedTokens + numNewTokens) - s.WindowBlocks.Count);

    public bool CanAllocate(Sequence s, int numNewTokens) => BlocksNeeded(s, numNewTokens) <= NumFreeBlocks;

    /// <summary>Blocks <paramref name="s"/> holds (its entries other than the zero block).</summary>
    public static int LiveBlocks(Sequence s)
    {
        int live = 0;
        foreach (int b in s.WindowBlocks)
            if (b != ZeroBlock) live++;
        return live;
    }

    /// <summary>Extends <paramref name="s"/>'s window table to hold <paramref name="numNewTokens"/> more tokens with
    /// fresh blocks.</summary>
    public void Allocate(Sequence s, int numNewTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numNewTokens);
        int needed = BlocksNeeded(s, numNewTokens);
        if (needed > NumFreeBlocks)
            throw new InvalidOperationException(
                $"Sequence {s.Id} needs {needed} window KV blocks but only {NumFreeBlocks} are free.");
        for (int i = 0; i < needed; i++) s.WindowBlocks.Add(_free[--NumFreeBlocks]);
    }

    /// <summary>
    /// Gives back the blocks of <paramref name="s"/> that no later query can see: block i holds positions
    /// [i·B, (i+1)·B) and the next query, at <see cref="Sequence.NumComputedTokens"/> or later, sees from
    /// NumComputedTokens − Window + 1 on. Call after each tick's NumComputedTokens advance.
    /// </summary>
    public void ReleaseOutOfWindow(Sequence s)
    {
        var table = s.WindowBlocks;
        int unseen = Math.Min(Math.Max(0, s.NumComputedTokens - Window + 1) / BlockSize, table.Count);
        // the released entries are a prefix: walk back from the newest unseen block to the first released one
        for (int i = unseen - 1; i >= 0 && table[i] != ZeroBlock; i--)
        {
            _free[NumFreeBlocks++] = table[i];
            table[i] = ZeroBlock;
        }
    }

    /// <summary>Whether <paramref name="s"/> still holds the window that a query at position
    /// <paramref name="numTokens"/> sees, so its K/V of the first numTokens tokens can be kept.</summary>
    public bool Covers(Sequence s, int numTokens)
    {
        if (numTokens == 0) return true;
        var table = s.WindowBlocks;
        int last = (numTokens - 1) / BlockSize;
        if (last >= table.Count) return false;
        for (int i = Math.Max(0, numTokens - Window + 1) / BlockSize; i <= last; i++)
            if (table[i] == ZeroBlock) return false;
        return true;
    }

    /// <summary>Keeps the entries of <paramref name="s"/> for its first <paramref name="numTokens"/> tokens and gives
    /// back the blocks past them (see <see cref="Covers"/> for whether that keeps their window).</summary>
    public void TruncateTo(Sequence s, int numTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        Release(s.WindowBlocks, Math.Min(BlocksFor(numTokens), s.WindowBlocks.Count));
    }

    /// <summary>Gives back every block of <paramref name="s"/>.</summary>
    public void Free(Sequence s) => Release(s.WindowBlocks, 0);

    void Release(List<int> table, int keep)
    {
        for (int i = table.Count - 1; i >= keep; i--)
            if (table[i] != ZeroBlock) _free[NumFreeBlocks++] = table[i];
        table.RemoveRange(keep, table.Count - keep);
    }
}
