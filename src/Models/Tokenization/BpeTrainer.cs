namespace Weft.Models.Tokenization;

/// <summary>
/// Classic BPE training: repeatedly merge the most frequent adjacent pair of symbols (ties broken by the pair's
/// text, so the result is deterministic) until enough merges are learned or no pair is left.
/// </summary>
static class BpeTrainer
{
    sealed class PairOrder : IComparer<(long Count, string Left, string Right)>
    {
        public static readonly PairOrder Instance = new();
        public int Compare((long Count, string Left, string Right) x, (long Count, string Left, string Right) y)
        {
            if (x.Count != y.Count) return y.Count.CompareTo(x.Count);
            int c = string.CompareOrdinal(x.Left, y.Left);
            return c != 0 ? c : string.CompareOrdinal(x.Right, y.Right);
        }
    }

    /// <param name="words">Each distinct word as its initial symbols, with its frequency.</param>
    /// <param name="allowed">Whether two symbols may merge at all.</param>
    public static List<(string Left, string Right)> Learn(IReadOnlyList<(string[] Symbols, int Count)> words,
        int maxMerges, Func<string, string, bool> allowed)
    {
        var names = new List<string>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        int Symbol(string s)
        {
            if (!index.TryGetValue(s, out int id)) { index.Add(s, id = names.Count); names.Add(s); }
            return id;
        }
        static long Key(int a, int b) => (long)a << 32 | (uint)b;

        var seqs = words.Select(w => w.Symbols.Select(Symbol).ToList()).ToList();
        var pairCount = new Dictionary<long, long>();
        var pairWords = new Dictionary<long, HashSet<int>>();
        var permitted = new Dictionary<long, bool>();

        void Count(int w, int sign, HashSet<long>? touched)
        {
            var s = seqs[w];
            for (int i = 1; i < s.Count; i++)
            {
                long p = Key(s[i - 1], s[i]);
                if (!permitted.TryGetValue(p, out bool ok)) permitted[p] = ok = allowed(names[s[i - 1]], names[s[i]]);
                if (!ok) continue;
                pairCount[p] = pairCount.GetValueOrDefault(p) + sign * (long)words[w].Count;
                if (sign > 0)
                {
                    if (!pairWords.TryGetValue(p, out var set)) pairWords[p] = set = [];
                    set.Add(w);
                }
                touched?.Add(p);
            }
        }

        for (int w = 0; w < seqs.Count; w++) Count(w, +1, null);
        var heap = new PriorityQueue<long, (long Count, string Left, string Right)>(PairOrder.Instance);
        foreach (var (p, c) in pairCount) heap.Enqueue(p, (c, names[(int)(p >> 32)], names[(int)p]));

        var merges = new List<(string, string)>();
        var changed = new HashSet<long>();
        while (merges.Count < maxMerges && heap.TryDequeue(out long pair, out var priority))
        {
            if (priority.Count <= 0 || pairCount.GetValueOrDefault(pair) != priority.Count) continue; // outdated entry
            int a = (int)(pair >> 32), b = (int)pair;
            int merged = Symbol(names[a] + names[b]);
            merges.Add((names[a], names[b]));
            changed.Clear();
            foreach (int w in pairWords[pair].ToArray())
            {
                Count(w, -1, changed);
                var s = seqs[w];
                for (int i = 0; i + 1 < s.Count; i++)
                {
                    if (s[i] != a || s[i + 1] != b) continue;
                    s[i] = merged;
                    s.RemoveAt(i + 1);
                }
                Count(w, +1, changed);
            }
            foreach (long p in changed)
            {
                long c = pairCount[p];
                if (c > 0) heap.Enqueue(p, (c, names[(int)(p >> 32)], names[(int)p]));
            }
        }
        return merges;
    }
}
