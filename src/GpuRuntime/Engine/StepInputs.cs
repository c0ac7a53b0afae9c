using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>What one sequence contributes to a step: tokens [Start, Start + Count) of its token list.
/// <paramref name="WindowBlockTable"/> is its table in the sliding-window pool, needed where the engine has one
/// (<see cref="Weft.Scheduling.Sequence.WindowBlockTable"/>).</summary>
public readonly record struct StepItem(
    IReadOnlyList<int> Tokens,
    int Start,
    int Count,
    IReadOnlyList<int> BlockTable,
    bool NeedsToken,
    SamplingParams Sampling,
    ulong Seed,
    int NumPromptTokens,
    IReadOnlyList<int>? WindowBlockTable = null);

/// <summary>
/// The flattened host-side description of one step, built once per tick into arrays sized at start-up
/// (nothing is allocated per step). Row t of the batch is token TokenIds[t] at Positions[t] of sequence RowSeq[t].
/// </summary>
public sealed class StepInputs
{
    /// <param name="numWindowBlocks">Blocks of the sliding-window layers' own pool; 0 where they share the main
    /// pool.</param>
    public StepInputs(int maxTokens, int maxSeqs, int maxBlocksPerSeq, int blockSize, int numBlocks, int vocabSize,
        int numWindowBlocks = 0)
    {
        MaxTokens = maxTokens;
        MaxSeqs = maxSeqs;
        MaxBlocksPerSeq = maxBlocksPerSeq;
        BlockSize = blockSize;
        NumBlocks = numBlocks;
        VocabSize = vocabSize;
        NumWindowBlocks = numWindowBlocks;
        TokenIds = new int[maxTokens];
        Positions = new int[maxTokens];
        SlotMapping = new int[maxTokens];
        RowSeq = new int[maxTokens];
        BlockTables = new int[maxSeqs * maxBlocksPerSeq];
        WindowSlotMapping = numWindowBlocks > 0 ? new int[maxTokens] : [];
        WindowBlockTables = numWindowBlocks > 0 ? new int[maxSeqs * maxBlocksPerSeq] : [];
        LogitRows = new int[maxSeqs];
        LogitItems = new int[maxSeqs];
        ItemRowStart = new int[maxSeqs];
        Items = new StepItem[maxSeqs];
        BlockCopies = new BlockCopy[maxSeqs];
    }

    public int MaxTokens { get; }
    public int MaxSeqs { get; }
    public int MaxBlocksPerSeq { get; }
    public int BlockSize { get; }
    /// <summary>Blocks in the KV pool: block ids are checked against it, as token ids are against the vocabulary,
    /// because the kernels index memory with them unchecked.</summary>
    public int NumBlocks { get; }
    public int VocabSize { get; }
    /// <summary>Blocks in the sliding-window layers' pool (0: none, they use <see cref="BlockTables"/>).</summary>
    public int NumWindowBlocks { get; }

    public int NumTokens { get; private set; }
    public int NumSeqs { get; private set; }
    public int NumLogitRows { get; private set; }
    public int NumBlockCopies { get; private set; }

    /// <summary>[NumTokens]</summary>
    public int[] TokenIds { get; }
    /// <summary>[NumTokens]</summary>
    public int[] Positions { get; }
    /// <summary>[NumTokens] block * BlockSize + offset where row t's K/V are written.</summary>
    public int[] SlotMapping { get; }
    /// <summary>[NumTokens] index of the row's sequence in this step.</summary>
    public int[] RowSeq { get; }
    /// <summary>[NumSeqs × MaxBlocksPerSeq] each sequence's block table, padded.</summary>
    public int[] BlockTables { get; }
    /// <summary>[NumTokens] like <see cref="SlotMapping"/>, in the sliding-window pool.</summary>
    public int[] WindowSlotMapping { get; }
    /// <summary>[NumSeqs × MaxBlocksPerSeq] like <see cref="BlockTables"/>, in the sliding-window pool; entries
    /// before a sequence's window name the all-zero block 0.</summary>
    public int[] WindowBlockTables { get; }
    /// <summary>[NumLogitRows] batch rows whose logits are computed (the last row of each item that needs a
    /// token).</summary>
    public int[] LogitRows { get; }
    /// <summary>[NumLogitRows] the item each logits row belongs to.</summary>
    public int[] LogitItems { get; }
    public StepItem[] Items { get; }
    /// <summary>[NumSeqs] the first batch row of each item (its rows are contiguous).</summary>
    public int[] ItemRowStart { get; }
    /// <summary>[NumBlockCopies] main-pool KV blocks to copy before the forward pass (forked sequences' partial
    /// blocks).</summary>
    public BlockCopy[] BlockCopies { get; }

    public void Clear()
    {
        NumTokens = NumSeqs = NumLogitRows = NumBlockCopies = 0;
        Array.Clear(Items);
    }

    /// <summary>Describes the scheduler's choice for this tick: each scheduled sequence's next chunk, in batch
    /// order.</summary>
    public void Fill(ScheduleOutput output)
    {
        Clear();
        foreach (var copy in output.BlockCopies) AddBlockCopy(copy);
        foreach (var (s, count, needsToken) in output.Scheduled)
            Add(new StepItem(s.TokenIds, s.NumComputedTokens, count, s.BlockTable, needsToken, s.Sampling, s.Seed,
                s.NumPromptTokens, s.WindowBlockTable));
    }

    /// <summary>Asks for main-pool block <see cref="BlockCopy.Source"/> to be copied into
    /// <see cref="BlockCopy.Destination"/> before the step's forward pass.</summary>
    public void AddBlockCopy(BlockCopy copy)
    {
        if (NumBlockCopies == BlockCopies.Length)
            throw new InvalidOperationException($"a step copies at most {BlockCopies.Length} KV blocks");
        if ((uint)copy.Source >= (uint)NumBlocks || (uint)copy.Destination >= (uint)NumBlocks)
            throw new ArgumentException($"block copy {copy.Source} → {copy.Destination} is outside the KV pool of "
                + $"{NumBlocks} blocks");
        BlockCopies[NumBlockCopies++] = copy;
    }

    /// <summary>Appends one sequence's chunk. The block table must already cover positions up to
    /// Start + Count.</summary>
    public void Add(in StepItem item)
    {
        if (NumSeqs == MaxSeqs) throw new InvalidOperationException($"a step holds at most {MaxSeqs} sequences");
        if (item.Count < 1 || NumTokens + item.Count > MaxTokens)
            throw new InvalidOperationException(
                $"a step holds at most {MaxTokens} tokens (adding {item.Count} to {NumTokens})");
        if (item.Start + item.Count > item.Tokens.Count)
            throw new ArgumentException("chunk runs past the sequence's tokens");
        int lastPos = item.Start + item.Count - 1;
        if (lastPos / BlockSize >= item.BlockTable.Count || item.BlockTable.Count > MaxBlocksPerSeq)
            throw new ArgumentException($"block table of {item.BlockTable.Count} blocks does not cover position "
                + $"{lastPos} (or exceeds {MaxBlocksPerSeq} blocks)");
        for (int b = 0; b < item.BlockTable.Count; b++)
            if ((uint)item.BlockTable[b] >= (uint)NumBlocks)
                throw new ArgumentException($"block {item.BlockTable[b]} is outside the KV pool of {NumBlocks} blocks");
        if (NumWindowBlocks > 0) CheckWindowTable(item, lastPos);
        for (int i = item.Start; i <= lastPos; i++)
            if ((uint)item.Tokens[i] >= (uint)VocabSize)
                throw new ArgumentException(
                    $"token id {item.Tokens[i]} is outside the vocabulary (0..{VocabSize - 1})");

        int s = NumSeqs++;
        Items[s] = item;
        ItemRowStart[s] = NumTokens;
        var table = BlockTables.AsSpan(s * MaxBlocksPerSeq, MaxBlocksPerSeq);
        for (int b = 0; b < item.BlockTable.Count; b++) table[b] = item.BlockTable[b];
        for (int i = 0; i < item.Count; i++)
        {
            int t = NumTokens++, pos = item.Start + i;
            TokenIds[t] = item.Tokens[pos];
            Positions[t] = pos;
            RowSeq[t] = s;
            SlotMapping[t] = table[pos / BlockSize] * BlockSize + pos % BlockSize;
        }
        if (NumWindowBlocks > 0)
        {
            var window = WindowBlockTables.AsSpan(s * MaxBlocksPerSeq, MaxBlocksPerSeq);
            for (int b = 0; b < item.WindowBlockTable!.Count; b++) window[b] = item.WindowBlockTable[b];
            for (int t = ItemRowStart[s], pos = item.Start; pos <= lastPos; t++, pos++)
                WindowSlotMapping[t] = window[pos / BlockSize] * BlockSize + pos % BlockSize;
        }
        if (item.NeedsToken)
        {
            LogitRows[NumLogitRows] = NumTokens - 1;
            LogitItems[NumLogitRows++] = s;
        }
    }

    void CheckWindowTable(in StepItem item, int lastPos)
    {
        var table = item.WindowBlockTable ?? throw new ArgumentException(
            "this engine keeps its sliding-window layers in their own pool: the item needs its window block table");
        if (lastPos / BlockSize >= table.Count || table.Count > MaxBlocksPerSeq)
            throw new ArgumentException($"window block table of {table.Count} blocks does not cover position "
                + $"{lastPos} (or exceeds {MaxBlocksPerSeq} blocks)");
        for (int b = 0; b < table.Count; b++)
            if ((uint)table[b] >= (uint)NumWindowBlocks)
                throw new ArgumentException($"block {table[b]} is outside the window pool of {NumWindowBlocks} blocks");
        // block 0 stays all zeros: the released entries point at it
        for (int b = item.Start / BlockSize; b <= lastPos / BlockSize; b++)
            if (table[b] == 0)
                throw new ArgumentException($"entry {b} of the window table, written now, is the zero block");
    }
}
