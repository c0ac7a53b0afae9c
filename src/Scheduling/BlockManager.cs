namespace Weft.Scheduling;

/// <summary>
/// Integer bookkeeping of a pool of fixed-size KV blocks: a free list, reference counts, and automatic prefix caching.
/// A full, computed block is identified by a hash of (hash of the previous block, its token ids); sequences whose
/// tokens start the same way share those blocks. A freed block keeps its hash and can be found again until it is handed
/// out for new content, so the free list is kept in LRU order: blocks with no cached content first, then cached blocks
/// from the least recently freed. A sequence's <see cref="Sequence.CacheSalt"/> seeds the chain (vLLM's cache_salt), so
/// sequences with different salts never share a block and a cache hit tells nothing about another salt's prompts.
/// </summary>
/// <remarks>
/// Between ticks every sequence's <see cref="Sequence.BlockTable"/> covers exactly its
/// <see cref="Sequence.NumComputedTokens"/> slots; <see cref="Allocate"/> extends it for one tick's new tokens and
/// <see cref="CommitComputed"/> publishes the blocks those tokens filled. A block is never shared before its K/V is
/// written, and never written while shared.
/// </remarks>
public sealed class BlockManager
{
    const ulong RootHash = 0x6A09E667F3BCC908;

    readonly int[] _refCount;
    readonly bool[] _hashed;
    readonly ulong[] _hash;
    // The token ids of every hashed block, so a colliding hash cannot serve a block of other tokens. (Two different
    // prefixes ending in the same tokens would need their 64-bit chained hashes to meet: negligible, not impossible.)
    readonly int[] _blockTokens;
    readonly Dictionary<ulong, int> _cached = [];
    // Free list as an intrusive doubly linked list over block ids; index NumBlocks is the sentinel.
    readonly int[] _prev;
    readonly int[] _next;

    public BlockManager(int numBlocks, int blockSize)
    {
        if (numBlocks < 1)
            throw new ArgumentOutOfRangeException(nameof(numBlocks), numBlocks,
                "The KV cache needs at least one block.");
        if (blockSize < 1)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "A KV block holds at least one token.");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _refCount = new int[numBlocks];
        _hashed = new bool[numBlocks];
        _hash = new ulong[numBlocks];
        _blockTokens = new int[checked(numBlocks * blockSize)];
        _prev = new int[numBlocks + 1];
        _next = new int[numBlocks + 1];
        _prev[Sentinel] = _next[Sentinel] = Sentinel;
        for (int b = 0; b < numBlocks; b++) PushBack(b);
    }

    public int NumBlocks { get; }
    public int BlockSize { get; }
    public int NumFreeBlocks { get; private set; }
    /// <summary>Blocks whose K/V can currently be found by prefix (in use or free).</summary>
    public int NumCachedBlocks => _cached.Count;

    int Sentinel => NumBlocks;

    public int BlocksFor(int numTokens) => (numTokens + BlockSize - 1) / BlockSize;

    /// <summary>Blocks that must be added to <paramref name="s"/>'s table to hold <paramref name="numNewTokens"/> more
    /// tokens.</summary>
    public int BlocksNeeded(Sequence s, int numNewTokens) =>
        Math.Max(0, BlocksFor(s.NumComputedTokens + numNewTokens) - s.BlockTable.Count);

    /// <summary>Whether those blocks are free while still leaving <paramref name="reserve"/> blocks free.</summary>
    public bool CanAllocate(Sequence s, int numNewTokens, int reserve = 0) =>
        BlocksNeeded(s, numNewTokens) + reserve <= NumFreeBlocks;

    /// <summary>
    /// Appends to <paramref name="s"/>'s table the cached blocks that hold the next full blocks of its tokens, advances
    /// <see cref="Sequence.NumComputedTokens"/> past them and returns the number of tokens found. The last token is
    /// never taken from the cache: a forward pass over at least one token is needed to produce logits.
    /// </summary>
    public int AllocatePrefix(Sequence s)
    {
        var table = s.Blocks;
        // A partially filled last block ends the reusable prefix: the next tokens go into its free slots.
        if (s.NumComputedTokens != table.Count * BlockSize) return 0;
        if (table.Count > 0 && !_hashed[table[^1]]) return 0;

        var tokens = s.TokenSpan;
        ulong parent = table.Count == 0 ? Root(s) : _hash[table[^1]];
        int found = 0;
        for (int i = table.Count; i < (s.NumTokens - 1) / BlockSize; i++)
        {
            var blockTokens = tokens.Slice(i * BlockSize, BlockSize);
            ulong h = Hash(parent, blockTokens);
            if (!_cached.TryGetValue(h, out int b) || !BlockTokens(b).SequenceEqual(blockTokens)) break;
            if (_refCount[b]++ == 0) Unlink(b);
            table.Add(b);
            parent = h;
            found += BlockSize;
        }
        s.NumComputedTokens += found;
        return found;
    }

    /// <summary>
    /// Starts the empty <paramref name="s"/> as a fork of <paramref name="parent"/>, whose computed tokens begin with
    /// all but the last of its tokens (OpenAI's n: another choice of the same prompt). The full blocks holding them
    /// are shared; the partial block after them, which <paramref name="s"/> will write into, is not, so the caller
    /// allocates a fresh one and copies the parent's into it (the returned source block; -1 when the tokens end on
    /// a block boundary and there is nothing to copy). <see cref="Sequence.NumComputedTokens"/> becomes all but the
    /// last token: only that one is computed, for its logits. Returns null, changing nothing, where the parent does
    /// not hold those tokens (preempted, freed, another prompt or another salt).
    /// </summary>
    public int? Fork(Sequence s, Sequence parent)
    {
        int shared = s.NumTokens - 1;
        if (s.BlockTable.Count > 0 || s.NumComputedTokens > 0 || shared < 1 || parent == s
            || parent.CacheSalt != s.CacheSalt || parent.NumComputedTokens < shared
            || !parent.TokenSpan[..shared].SequenceEqual(s.TokenSpan[..shared]))
            return null;
        var table = s.Blocks;
        int full = shared / BlockSize;
        for (int i = 0; i < full; i++)
        {
            int b = parent.BlockTable[i];
            _refCount[b]++;
            table.Add(b);
        }
        s.NumComputedTokens = shared;
        return shared % BlockSize == 0 ? -1 : parent.BlockTable[full];
    }

    /// <summary>Extends <paramref name="s"/>'s table to hold <paramref name="numNewTokens"/> more tokens with fresh
    /// blocks.</summary>
    public void Allocate(Sequence s, int numNewTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numNewTokens);
        int needed = BlocksNeeded(s, numNewTokens);
        if (needed > NumFreeBlocks)
            throw new InvalidOperationException(
                $"Sequence {s.Id} needs {needed} KV blocks but only {NumFreeBlocks} are free.");
        for (int i = 0; i < needed; i++)
        {
            int b = _next[Sentinel];
            Unlink(b);
            Forget(b);
            _refCount[b] = 1;
            s.Blocks.Add(b);
        }
    }

    /// <summary>
    /// Publishes the blocks of <paramref name="s"/> that its computed tokens have filled, so other sequences (and later
    /// turns) can share them. Call after each tick's <see cref="Sequence.NumComputedTokens"/> advance.
    /// </summary>
    public void CommitComputed(Sequence s)
    {
        var table = s.Blocks;
        int full = Math.Min(s.NumComputedTokens / BlockSize, table.Count);
        // Blocks are hashed in order, so the unhashed ones are a suffix of the full ones: usually none or one.
        int i = full;
        while (i > 0 && !_hashed[table[i - 1]]) i--;
        var tokens = s.TokenSpan;
        ulong parent = i == 0 ? Root(s) : _hash[table[i - 1]];
        for (; i < full; i++)
        {
            int b = table[i];
            var blockTokens = tokens.Slice(i * BlockSize, BlockSize);
            parent = Hash(parent, blockTokens);
            _hash[b] = parent;
            _hashed[b] = true;
            blockTokens.CopyTo(BlockTokens(b));
            // The newest copy wins: it is in use, so it outlives an older free copy of the same content.
            _cached[parent] = b;
        }
    }

    /// <summary>Releases every block of <paramref name="s"/>; its cached content stays findable until handed out
    /// again.</summary>
    public void Free(Sequence s)
    {
        Release(s.Blocks, 0);
        s.NumComputedTokens = 0;
    }

    /// <summary>
    /// Keeps the K/V of at most the first <paramref name="numTokens"/> computed tokens of <paramref name="s"/> and
    /// releases the blocks past them. A kept, partially covered last block will be written again, so it loses its
    /// cached identity, or, when another sequence shares it, is released too. Sets and returns
    /// <see cref="Sequence.NumComputedTokens"/>.
    /// </summary>
    public int TruncateTo(Sequence s, int numTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        var table = s.Blocks;
        int keep = Math.Min(numTokens, Math.Min(s.NumComputedTokens, table.Count * BlockSize));
        int keepBlocks = BlocksFor(keep);
        if (keep % BlockSize != 0)
        {
            int last = table[keepBlocks - 1];
            if (_refCount[last] > 1)
            {
                keepBlocks--;
                keep = keepBlocks * BlockSize;
            }
            else
            {
                Forget(last);
            }
        }
        Release(table, keepBlocks);
        s.NumComputedTokens = keep;
        return keep;
    }

    internal int RefCount(int block) => _refCount[block];

    internal bool IsCached(int block) => _hashed[block] && _cached.TryGetValue(_hash[block], out int b) && b == block;

    /// <summary>The free list, next to be handed out first.</summary>
    internal IEnumerable<int> FreeList()
    {
        for (int b = _next[Sentinel]; b != Sentinel; b = _next[b]) yield return b;
    }

    void Release(List<int> table, int keepBlocks)
    {
        // Last block first, so a sequence's leading blocks, the likeliest to be shared again, are evicted last.
        for (int i = table.Count - 1; i >= keepBlocks; i--)
        {
            int b = table[i];
            if (--_refCount[b] > 0) continue;
            // a block whose content can still be found goes to the recently-used end; one that can't is reused first
            if (IsCached(b)) PushBack(b);
            else PushFront(b);
        }
        table.RemoveRange(keepBlocks, table.Count - keepBlocks);
    }

    void Forget(int b)
    {
        if (!_hashed[b]) return;
        if (_cached.TryGetValue(_hash[b], out int owner) && owner == b) _cached.Remove(_hash[b]);
        _hashed[b] = false;
    }

    Span<int> BlockTokens(int b) => _blockTokens.AsSpan(b * BlockSize, BlockSize);

    static ulong Root(Sequence s) => s.CacheSalt == 0 ? RootHash : Mix(RootHash ^ Mix(s.CacheSalt));

    static ulong Hash(ulong parent, ReadOnlySpan<int> tokens)
    {
        ulong h = parent;
        foreach (int t in tokens) h = Mix(h ^ (uint)t);
        return Mix(h ^ (ulong)tokens.Length);
    }

    // SplitMix64's finalizer: every input bit affects every output bit.
    static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    void PushBack(int b) => Link(b, _prev[Sentinel], Sentinel);

    void PushFront(int b) => Link(b, Sentinel, _next[Sentinel]);

    void Link(int b, int before, int after)
    {
        _prev[b] = before;
        _next[b] = after;
        _next[before] = b;
        _prev[after] = b;
        NumFreeBlocks++;
    }

    void Unlink(int b)
    {
        _next[_prev[b]] = _next[b];
        _prev[_next[b]] = _prev[b];
        NumFreeBlocks--;
    }
}
