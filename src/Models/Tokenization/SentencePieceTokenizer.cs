using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>
/// llama.cpp's SPM tokenizer: spaces become "▁", a space is prefixed to text that starts the input or follows a
/// special token, then adjacent symbols are merged greedily, highest-scoring resulting piece first (leftmost on
/// ties), for as long as the merged text is a vocabulary piece. Symbols left that are not pieces fall back to
/// byte tokens.
/// </summary>
sealed class SentencePieceTokenizer : Tokenizer
{
    readonly float[] _scores;
    readonly int[] _byteTokens = new int[256];
    readonly int? _unkId;
    readonly bool _addSpacePrefix;
    // True when no piece contains "▁" right after another character: then no merge can cross the start of a
    // word, so each word merges on its own with the same result, in a small cache-friendly queue.
    readonly bool _wordsAreIndependent;

    public SentencePieceTokenizer(VocabularyData v) : base(v, NormalPiece)
    {
        _scores = v.Scores;
        _unkId = v.UnkId;
        _addSpacePrefix = v.AddSpacePrefix;
        _wordsAreIndependent = !v.Tokens.Any(HasInnerWordStart);
        for (int b = 0; b < 256; b++)
        {
            // llama.cpp's byte_to_token: "<0xXX>", else a piece that is the byte itself.
            _byteTokens[b] = v.Ids.TryGetValue($"<0x{b:X2}>", out int id) ? id
                : b < 0x80 && v.Ids.TryGetValue(((char)b).ToString(), out id) ? id : -1;
        }
    }

    struct Symbol
    {
        public int Start, Length, Prev, Next;
    }

    private protected override void EncodeText(string fragment, bool afterSpecial, List<int> output)
    {
        string text = (_addSpacePrefix && afterSpecial ? " " + fragment : fragment).Replace(' ', Unicode.SpaceEscape);
        var symbols = new Symbol[text.Length];
        var queue = new MergeQueue(16);
        if (!_wordsAreIndependent)
        {
            Merge(text, 0, text.Length, symbols, queue, output);
            return;
        }
        int start = 0;
        for (int i = 1; i < text.Length; i++)
        {
            if (text[i] != Unicode.SpaceEscape || text[i - 1] == Unicode.SpaceEscape) continue;
            Merge(text, start, i, symbols, queue, output);
            start = i;
        }
        Merge(text, start, text.Length, symbols, queue, output);
    }

    /// <summary>Merges the symbols of text[start..end) and appends their tokens.</summary>
    void Merge(string text, int start, int end, Symbol[] symbols, MergeQueue queue, List<int> output)
    {
        int n = 0;
        for (int i = start; i < end; n++)
        {
            int len = char.IsHighSurrogate(text[i]) && i + 1 < end && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            symbols[n] = new Symbol { Start = i, Length = len, Prev = n - 1, Next = i + len < end ? n + 1 : -1 };
            i += len;
        }
        if (n == 0) return;

        // Bigrams are keyed by (score, left); the right side is the left's successor when it was queued, and a
        // bigram is stale once either side has changed, which their total length tells.
        for (int i = 1; i < n; i++) TryAddBigram(text, symbols, queue, i - 1, i);
        while (queue.TryPop(out ulong key, out long size))
        {
            int l = (int)(uint)key;
            ref var left = ref symbols[l];
            if (left.Length == 0 || left.Next < 0) continue;
            ref var right = ref symbols[left.Next];
            if (left.Length + right.Length != size) continue;
            left.Length += right.Length;
            right.Length = 0;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = l;
            TryAddBigram(text, symbols, queue, left.Prev, l);
            TryAddBigram(text, symbols, queue, l, left.Next);
        }

        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i != -1; i = symbols[i].Next)
        {
            var piece = text.AsSpan(symbols[i].Start, symbols[i].Length);
            if (Ids.TryGetValue(piece, out int id))
            {
                output.Add(id);
                continue;
            }
            int count = Encoding.UTF8.GetBytes(piece, bytes);
            for (int j = 0; j < count; j++)
            {
                if (_byteTokens[bytes[j]] >= 0) output.Add(_byteTokens[bytes[j]]);
                // llama.cpp has no answer here (it throws); <unk> is the honest one
                else if (_unkId is { } unk) output.Add(unk);
            }
        }
    }

    static bool HasInnerWordStart(string t)
    {
        for (int i = 1; i < t.Length; i++)
            if (t[i] == Unicode.SpaceEscape && t[i - 1] != Unicode.SpaceEscape) return true;
        return false;
    }

    void TryAddBigram(string text, Symbol[] symbols, MergeQueue queue, int left, int right)
    {
        if (left < 0 || right < 0) return;
        int size = symbols[left].Length + symbols[right].Length;
        if (size > MaxTokenChars || !Ids.TryGetValue(text.AsSpan(symbols[left].Start, size), out int id)) return;
        queue.Push(MergeQueue.ScoreKey(_scores[id], left), size);
    }

    static byte[] NormalPiece(string text) => Encoding.UTF8.GetBytes(text.Replace(Unicode.SpaceEscape, ' '));
}
