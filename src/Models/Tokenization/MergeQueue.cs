namespace Weft.Models.Tokenization;

/// <summary>
/// A binary min-heap of (key, value) pairs for the tokenizers' merge loops. Keys pack the whole ordering (priority
/// in the high half, the left symbol's index in the low half) so comparisons are single integer compares; this is
/// several times faster than PriorityQueue with a comparer on long inputs.
/// </summary>
sealed class MergeQueue(int capacity)
{
    (ulong Key, long Value)[] _items = new (ulong, long)[Math.Max(capacity, 4)];
    int _count;

    public void Push(ulong key, long value)
    {
        if (_count == _items.Length) Array.Resize(ref _items, _count * 2);
        int i = _count++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (_items[parent].Key <= key) break;
            _items[i] = _items[parent];
            i = parent;
        }
        _items[i] = (key, value);
    }

    public bool TryPop(out ulong key, out long value)
    {
        if (_count == 0)
        {
            (key, value) = (0, 0);
            return false;
        }
        (key, value) = _items[0];
        var last = _items[--_count];
        int i = 0;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= _count) break;
            if (child + 1 < _count && _items[child + 1].Key < _items[child].Key) child++;
            if (last.Key <= _items[child].Key) break;
            _items[i] = _items[child];
            i = child;
        }
        _items[i] = last;
        return true;
    }

    /// <summary>A key ordering higher scores first, then lower left indices (SentencePiece merges).</summary>
    public static ulong ScoreKey(float score, int left)
    {
        uint bits = BitConverter.SingleToUInt32Bits(score);
        uint ascending = (bits & 0x8000_0000) != 0 ? ~bits : bits | 0x8000_0000; // orders like the floats themselves
        return (ulong)~ascending << 32 | (uint)left;
    }

    /// <summary>A key ordering lower ranks first, then lower left indices (BPE merges).</summary>
    public static ulong RankKey(int rank, int left) => (ulong)(uint)rank << 32 | (uint)left;
}
