using System.Collections.Concurrent;
using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>
/// llama.cpp's byte-level BPE: the pre-tokenizer splits text into words, each word's UTF-8 bytes are spelled in
/// GPT-2's byte alphabet, and adjacent symbols merge lowest merge rank first (leftmost on ties) while a merge rule
/// exists for the pair. Final symbols that are not vocabulary pieces are dropped byte by byte, as llama.cpp does.
/// </summary>
sealed class BytePairTokenizer : Tokenizer
{
    const int CachedWordChars = 64, CacheLimit = 1 << 16;

    readonly PreTokenizer _splitter;
    readonly bool _ignoreMerges;
    // Merge rules over interned strings: every string that is a side of a merge, or the result of one, has an id.
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _symbols;
    readonly Dictionary<long, (int Rank, int Result)> _merges = [];
    readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cache;
    readonly ConcurrentDictionary<string, int[]> _cacheDictionary = new(StringComparer.Ordinal);
    int _cacheCount; // ConcurrentDictionary.Count takes every lock; an approximate count is enough to bound memory

    public BytePairTokenizer(VocabularyData v, string[] merges, BpeDialect dialect) : base(v, NormalPiece)
    {
        _splitter = dialect.Splitter;
        _ignoreMerges = dialect.IgnoreMerges;
        var symbols = new Dictionary<string, int>(StringComparer.Ordinal);
        int Intern(string s)
        {
            if (!symbols.TryGetValue(s, out int id)) symbols.Add(s, id = symbols.Count);
            return id;
        }
        for (int rank = 0; rank < merges.Length; rank++)
        {
            string m = merges[rank];
            // the first space after the first character separates the sides
            int space = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
            if (space < 0) continue;
            string left = m[..space], right = m[(space + 1)..];
            // the first rule for a pair wins
            _merges.TryAdd(Key(Intern(left), Intern(right)), (rank, Intern(left + right)));
        }
        _symbols = symbols.GetAlternateLookup<ReadOnlySpan<char>>();
        _cache = _cacheDictionary.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    static long Key(int left, int right) => (long)left << 32 | (uint)right;

    private protected override void EncodeText(string text, bool afterSpecial, List<int> output)
    {
        var words = new List<Range>();
        _splitter.Split(text, words);
        foreach (var range in words)
        {
            var word = text.AsSpan(range);
            if (!_cache.TryGetValue(word, out int[]? ids))
            {
                ids = EncodeWord(word);
                if (word.Length <= CachedWordChars && _cache.TryAdd(word, ids)
                    && Interlocked.Increment(ref _cacheCount) > CacheLimit)
                {
                    _cacheDictionary.Clear();
                    Interlocked.Exchange(ref _cacheCount, 0);
                }
            }
            output.AddRange(ids);
        }
    }

    struct Symbol
    {
        public int Start, Length, Prev, Next, Id;
    }

    int[] EncodeWord(ReadOnlySpan<char> word)
    {
        var utf8 = new byte[Encoding.UTF8.GetByteCount(word)];
        Encoding.UTF8.GetBytes(word, utf8);
        string spelled = string.Create(utf8.Length, utf8,
            static (s, b) => { for (int i = 0; i < s.Length; i++) s[i] = Unicode.ByteToChar[b[i]]; });
        if (_ignoreMerges && Ids.TryGetValue(spelled, out int whole)) return [whole];

        int n = spelled.Length;
        var symbols = new Symbol[n];
        for (int i = 0; i < n; i++)
            symbols[i] = new Symbol
            {
                Start = i, Length = 1, Prev = i - 1, Next = i + 1 < n ? i + 1 : -1,
                Id = _symbols.TryGetValue(spelled.AsSpan(i, 1), out int s) ? s : -1
            };

        // Keyed by (rank, left); the value carries the merged length (which tells a stale bigram, as in the
        // SentencePiece loop) and the merged symbol.
        var queue = new MergeQueue(n);
        void TryAddBigram(int left, int right)
        {
            if (left < 0 || right < 0 || symbols[left].Id < 0 || symbols[right].Id < 0) return;
            if (_merges.TryGetValue(Key(symbols[left].Id, symbols[right].Id), out var m))
                queue.Push(MergeQueue.RankKey(m.Rank, left),
                    (long)m.Result << 32 | (uint)(symbols[left].Length + symbols[right].Length));
        }
        for (int i = 1; i < n; i++) TryAddBigram(i - 1, i);
        while (queue.TryPop(out ulong key, out long value))
        {
            int l = (int)(uint)key;
            ref var left = ref symbols[l];
            if (left.Length == 0 || left.Next < 0) continue;
            ref var right = ref symbols[left.Next];
            if (left.Length + right.Length != (int)(uint)value) continue;
            left.Length += right.Length;
            left.Id = (int)(value >> 32);
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = l;
            TryAddBigram(left.Prev, l);
            TryAddBigram(l, left.Next);
        }

        var ids = new List<int>();
        for (int i = 0; i != -1; i = symbols[i].Next)
        {
            var piece = spelled.AsSpan(symbols[i].Start, symbols[i].Length);
            if (Ids.TryGetValue(piece, out int id)) ids.Add(id);
            else
            {
                // llama.cpp looks each UTF-8 byte of the spelled piece up as a one-byte token; only ASCII can match.
                foreach (char c in piece)
                    if (c < 0x80 && Ids.TryGetValue(new ReadOnlySpan<char>(in c), out id)) ids.Add(id);
            }
        }
        return ids.ToArray();
    }

    /// <summary>llama_decode_text: each character of the byte alphabet back to its byte.</summary>
    static byte[] NormalPiece(string text)
    {
        var bytes = new List<byte>(text.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in text.EnumerateRunes())
        {
            int b = Unicode.CharToByte(rune.Value);
            if (b >= 0) bytes.Add((byte)b);
            else
            {
                // llama_decode_text's marker for a character outside the byte alphabet (it appends the whole piece).
                int len = rune.EncodeToUtf8(utf8);
                var marker = new StringBuilder("[UNK_BYTE_0x");
                foreach (byte x in utf8[..len]) marker.Append(x.ToString("x2"));
                bytes.AddRange(Encoding.UTF8.GetBytes(marker.Append(text).Append(']').ToString()));
            }
        }
        return bytes.ToArray();
    }
}
