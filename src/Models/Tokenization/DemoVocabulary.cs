using Weft.Models.Chat;

namespace Weft.Models.Tokenization;

/// <summary>
/// Deterministic vocabularies for generated test models, learned by BPE over an embedded English text so that
/// common words are single tokens and text tokenizes the way it does with real models. When the text runs out of
/// merges, further pieces are made by joining learned word starts with learned word endings.
/// </summary>
public static class DemoVocabulary
{
    const int MaxPieceChars = 16;

    /// <summary>
    /// A SentencePiece-style ("llama") vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte tokens
    /// &lt;0x00&gt;..&lt;0xFF&gt;, learned pieces (with ▁ for spaces; scores falling in merge order, as SentencePiece
    /// BPE assigns them), then the single characters. Digits are never merged (split_digits), and letters never merge
    /// with punctuation.
    /// </summary>
    public static VocabularySpec SentencePiece(int size, string? chatTemplate = null)
    {
        const int fixedTokens = 3 + 256;
        ArgumentOutOfRangeException.ThrowIfLessThan(size, fixedTokens + 1);
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add((int)TokenType.Byte);
        }

        var words = DemoCorpus.Text.Split([' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)
            .GroupBy(w => Unicode.SpaceEscape + w, StringComparer.Ordinal)
            .Select(g => (Symbols: g.Key.EnumerateRunes().Select(r => r.ToString()).ToArray(), Count: g.Count()))
            .OrderBy(w => string.Concat(w.Symbols), StringComparer.Ordinal)
            .ToList();
        var chars = words.SelectMany(w => w.Symbols.Select(s => (s, w.Count)))
            .GroupBy(x => x.s, StringComparer.Ordinal)
            .OrderByDescending(g => g.Sum(x => x.Count)).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => g.Key).ToList();

        int learned = size - fixedTokens;
        chars = chars.Take(Math.Min(chars.Count, learned / 2)).ToList();
        int pieceCount = learned - chars.Count;
        var known = new HashSet<string>(tokens.Concat(chars), StringComparer.Ordinal);
        var pieces = new List<string>();
        foreach (var (left, right) in BpeTrainer.Learn(words, pieceCount, SpmMayMerge))
        {
            if (pieces.Count == pieceCount) break;
            if (known.Add(left + right)) pieces.Add(left + right);
        }
        Pad(pieces, known, pieceCount,
            s => s.Length > 1 && s[0] == Unicode.SpaceEscape && s.Skip(1).All(char.IsAsciiLetter), (l, r) => l + r);

        var scores = new List<float>(new float[tokens.Count]);
        foreach (var p in pieces.Concat(chars))
        {
            // SentencePiece BPE: earlier merges score higher, characters last
            scores.Add(-(scores.Count - fixedTokens));
            tokens.Add(p);
            types.Add((int)TokenType.Normal);
        }
        return new VocabularySpec("llama", [.. tokens], [.. types], [.. scores], Merges: null, Pre: null,
            BosId: 1, EosId: 2, UnkId: 0, PadId: null, AddBos: true, AddSpacePrefix: true, chatTemplate);
    }

    static bool SpmMayMerge(string left, string right)
    {
        if (left.Length + right.Length > MaxPieceChars || right.Contains(Unicode.SpaceEscape)) return false;
        var body = left.TrimStart(Unicode.SpaceEscape);
        if (body.Any(char.IsDigit) || right.Any(char.IsDigit)) return false;
        if (body.Length == 0) return true; // "▁" starts any word
        bool Letters(string s) => s.All(char.IsLetter);
        bool NoLetters(string s) => !s.Any(char.IsLetter);
        return (Letters(body) && Letters(right)) || (NoLetters(body) && NoLetters(right));
    }

    /// <summary>The special tokens of <see cref="ByteLevelBpe"/>: Llama 3's and ChatML's, so either chat format can be
    /// used.</summary>
    public static IReadOnlyList<string> ByteLevelSpecialTokens { get; } =
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|im_start|>", "<|im_end|>"];

    /// <summary>
    /// A GPT-2-style byte-level BPE ("gpt2") vocabulary: the 256 byte symbols in GPT-2's order, learned merges (over
    /// words split by the <paramref name="pre"/> pre-tokenizer) with their merge list, then
    /// <see cref="ByteLevelSpecialTokens"/> as control tokens; BOS is &lt;|begin_of_text|&gt;, EOS
    /// &lt;|end_of_text|&gt;.
    /// </summary>
    public static VocabularySpec ByteLevelBpe(int size, string pre = "llama-bpe", string? chatTemplate = null)
    {
        var dialect = BpeDialect.Find(pre)
            ?? throw new ArgumentException($"unknown pre-tokenizer '{pre}'", nameof(pre));
        int fixedTokens = 256 + ByteLevelSpecialTokens.Count;
        ArgumentOutOfRangeException.ThrowIfLessThan(size, fixedTokens + 1);

        var tokens = Unicode.ByteAlphabet().Select(c => c.ToString()).ToList();
        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        var split = new List<Range>();
        dialect.Splitter.Split(DemoCorpus.Text, split);
        var words = split.Select(r => Spell(DemoCorpus.Text[r]))
            .GroupBy(w => w, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (Symbols: g.Key.Select(c => c.ToString()).ToArray(), Count: g.Count()))
            .ToList();

        int pieceCount = size - fixedTokens;
        var pieces = new List<string>();
        var merges = new List<string>();
        foreach (var (left, right) in
            BpeTrainer.Learn(words, pieceCount, (l, r) => l.Length + r.Length <= MaxPieceChars))
        {
            if (pieces.Count == pieceCount) break;
            merges.Add($"{left} {right}");
            if (known.Add(left + right)) pieces.Add(left + right);
        }
        const char space = 'Ġ'; // the byte alphabet's space
        Pad(pieces, known, pieceCount, s => s.Length > 1 && s[0] == space && s.Skip(1).All(char.IsAsciiLetter),
            (l, r) =>
            {
                merges.Add($"{l} {r}");
                return l + r;
            });

        tokens.AddRange(pieces);
        var types = Enumerable.Repeat((int)TokenType.Normal, tokens.Count).ToList();
        int bos = tokens.Count;
        tokens.AddRange(ByteLevelSpecialTokens);
        types.AddRange(ByteLevelSpecialTokens.Select(_ => (int)TokenType.Control));
        return new VocabularySpec("gpt2", [.. tokens], [.. types], Scores: null, [.. merges], pre,
            BosId: bos, EosId: bos + 1, UnkId: null, PadId: null, AddBos: true, AddSpacePrefix: null, chatTemplate);
    }

    /// <summary>
    /// The kind of vocabulary a family ships, with its chat template and turn markers, as llama.cpp's converter writes
    /// them: Qwen a byte-level BPE with the qwen2 pre-tokenizer and no BOS, ending turns at &lt;|im_end|&gt;; Gemma a
    /// SentencePiece vocabulary without the space prefix, its turns between &lt;start_of_turn&gt; and
    /// &lt;end_of_turn&gt;; Phi-3 a SentencePiece one with &lt;|system|&gt;, &lt;|user|&gt;, &lt;|assistant|&gt;,
    /// &lt;|end|&gt; and &lt;|endoftext|&gt; (which llama.cpp requires of a "phi3" file); Llama the demo's own.
    /// Turn markers replace the last learned pieces, so the size stays <paramref name="size"/>.
    /// </summary>
    public static VocabularySpec Family(string architecture, int size) => architecture switch
    {
        "qwen2" or "qwen3" => Qwen(ByteLevelBpe(size, "qwen2", ChatTemplates.Qwen25Instruct)),
        "gemma2" or "gemma3" => WithTurnMarkers(
            SentencePiece(size, ChatTemplates.Gemma2It) with { AddSpacePrefix = false },
            "<start_of_turn>", "<end_of_turn>"),
        "phi3" => WithTurnMarkers(SentencePiece(size, ChatTemplates.Phi3Mini),
            "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"),
        _ => SentencePiece(size, ChatTemplates.TinyLlama),
    };

    static VocabularySpec Qwen(VocabularySpec v) =>
        v with { AddBos = false, EosId = Array.IndexOf(v.Tokens, "<|im_end|>") };

    /// <summary>Control tokens in place of the last learned pieces; the last marker ends a turn (EOS).</summary>
    static VocabularySpec WithTurnMarkers(VocabularySpec v, params string[] markers)
    {
        var tokens = (string[])v.Tokens.Clone();
        var types = (int[])v.TokenTypes.Clone();
        int at = tokens.Length - markers.Length;
        foreach (var m in markers)
        {
            (tokens[at], types[at]) = (m, (int)TokenType.Control);
            at++;
        }
        return v with { Tokens = tokens, TokenTypes = types, EosId = Array.IndexOf(tokens, markers[^1]) };
    }

    static string Spell(string word) =>
        string.Concat(System.Text.Encoding.UTF8.GetBytes(word).Select(b => Unicode.ByteToChar[b]));

    /// <summary>
    /// Fills <paramref name="pieces"/> up to <paramref name="count"/> with new pieces joining a learned word start and
    /// a common word ending of the corpus ("s", "ed", "ing", ...), walking the pairs by the sum of their positions so
    /// early (frequent) pieces combine first.
    /// </summary>
    static void Pad(List<string> pieces, HashSet<string> known, int count, Func<string, bool> isStart,
        Func<string, string, string> join)
    {
        if (pieces.Count >= count) return;
        var starts = pieces.Where(isStart).ToList();
        var endings = WordEndings.Value;
        var ends = pieces.Concat(known.Order(StringComparer.Ordinal)).Where(endings.Contains).Distinct().ToList();
        for (int sum = 0; pieces.Count < count; sum++)
        {
            if (sum > starts.Count + ends.Count)
                throw new ArgumentOutOfRangeException(nameof(count), count,
                    "the demo corpus cannot fill a vocabulary this large");
            for (int i = Math.Max(0, sum - ends.Count + 1);
                i <= Math.Min(sum, starts.Count - 1) && pieces.Count < count; i++)
            {
                string l = starts[i], r = ends[sum - i];
                if (l.Length + r.Length <= MaxPieceChars && known.Add(l + r)) pieces.Add(join(l, r));
            }
        }
    }

    /// <summary>Letter strings of up to four characters that end at least three words of the corpus.</summary>
    static readonly Lazy<HashSet<string>> WordEndings = new(() => DemoCorpus.Text
        .Split([' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)
        .Select(w => w[..(w.AsSpan().LastIndexOfAnyInRange('A', 'z') + 1)]) // drop trailing punctuation
        .SelectMany(w => Enumerable.Range(1, Math.Clamp(w.Length - 1, 0, 4)).Select(n => w[^n..]))
        .Where(e => e.All(char.IsAsciiLetter))
        .CountBy(e => e, StringComparer.Ordinal)
        .Where(p => p.Value >= 3)
        .Select(p => p.Key)
        .ToHashSet(StringComparer.Ordinal));
}
