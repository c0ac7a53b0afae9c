using System.Collections.Frozen;
using System.Runtime.InteropServices;
using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>
/// A tokenizer read from GGUF metadata that reproduces llama.cpp's llama_tokenize, llama_token_to_piece and
/// llama_detokenize token for token and byte for byte: SentencePiece-style vocabularies ("llama") and byte-level BPE
/// ("gpt2") with llama.cpp's pre-tokenizers. Instances are immutable and safe to use from many threads.
/// </summary>
public abstract partial class Tokenizer
{
    readonly string[] _tokens;
    readonly TokenAttr[] _attrs;
    readonly byte[][] _pieces; // what each token renders as when special tokens are rendered (llama.cpp's piece cache)
    readonly Dictionary<string, int> _ids;
    readonly int[] _specialTokens; // control, user-defined and unknown tokens, longest text first
    readonly bool _addEos, _addSpacePrefix, _cleanSpaces;

    private protected Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> Ids { get; }
    /// <summary>The longest token text in characters: no token stands for more characters of input, so a text of n
    /// characters takes at least n / MaxTokenChars tokens (a bound callers can check before tokenizing).</summary>
    public int MaxTokenChars { get; }

    public int VocabSize => _tokens.Length;
    public int BosId { get; }
    public int EosId { get; }
    public int? UnkId { get; }
    public int? PadId { get; }
    /// <summary>Whether <see cref="Encode"/> with addSpecial starts the tokens with <see cref="BosId"/>.</summary>
    public bool AddBos { get; }
    /// <summary>Tokens that end generation: EOS and the end-of-turn tokens llama.cpp recognises (its llama_vocab_is_eog
    /// set).</summary>
    public IReadOnlySet<int> EndOfGenerationIds { get; }

    /// <param name="normalPiece">The bytes a normal token's text stands for, which is where the two kinds
    /// differ.</param>
    private protected Tokenizer(VocabularyData v, Func<string, byte[]> normalPiece)
    {
        _tokens = v.Tokens;
        _attrs = v.Attrs;
        _ids = v.Ids;
        Ids = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        MaxTokenChars = Math.Max(1, _tokens.Max(t => t.Length));
        BosId = v.BosId;
        EosId = v.EosId;
        UnkId = v.UnkId;
        PadId = v.PadId;
        AddBos = v.AddBos;
        _addEos = v.AddEos;
        _addSpacePrefix = v.AddSpacePrefix;
        _cleanSpaces = v.CleanSpaces;
        EndOfGenerationIds = v.EndOfGeneration.ToFrozenSet();
        _specialTokens = Enumerable.Range(0, _tokens.Length)
            .Where(id => (_attrs[id] & (TokenAttr.Control | TokenAttr.UserDefined | TokenAttr.Unknown)) != 0)
            .OrderByDescending(id => _tokens[id].Length).ThenBy(id => id)
            .ToArray();
        _pieces = new byte[_tokens.Length][];
        for (int id = 0; id < _tokens.Length; id++) _pieces[id] = RenderPiece(id, normalPiece);
    }

    /// <summary>The raw vocabulary piece of a token, as stored in tokenizer.ggml.tokens.</summary>
    public string TokenText(int id) => _tokens[CheckId(id)];

    public TokenType GetTokenType(int id)
    {
        var a = _attrs[CheckId(id)];
        if ((a & TokenAttr.Control) != 0) return TokenType.Control;
        if ((a & TokenAttr.UserDefined) != 0) return TokenType.UserDefined;
        if ((a & TokenAttr.Unknown) != 0) return TokenType.Unknown;
        if ((a & TokenAttr.Byte) != 0) return TokenType.Byte;
        if ((a & TokenAttr.Unused) != 0) return TokenType.Unused;
        return TokenType.Normal;
    }

    /// <summary>The id of the vocabulary piece exactly equal to <paramref name="piece"/>, if any.</summary>
    public int? FindToken(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    int CheckId(int id) => (uint)id < (uint)_tokens.Length ? id
        : throw new ArgumentOutOfRangeException(nameof(id), id,
            $"token id outside the vocabulary of {_tokens.Length} tokens");

    /// <summary>
    /// Tokenizes like llama_tokenize(text, add_special, parse_special): user-defined tokens are always matched as
    /// whole tokens, control tokens only with <paramref name="parseSpecial"/>; BOS (and EOS, if the vocabulary asks
    /// for it) are added with <paramref name="addSpecial"/>.
    /// </summary>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false) =>
        Encode(text, addSpecial, parseSpecial, templateSpaces: false);

    /// <summary>
    /// Tokenizes a chat template's text: special tokens parsed, and a run of text that follows a special token and
    /// starts with a space gets no SentencePiece space prefix of its own. Mistral's templates write
    /// "&lt;s&gt; [INST]" and "&lt;/s&gt; [INST]" for transformers, whose Metaspace pre-tokenizer ("prepend_scheme":
    /// "first") adds no prefix after a special token, so the model was trained on "▁[INST]"; llama.cpp adds one and
    /// gives "▁▁[INST]". Text that follows a special token without a space (Llama 2's "&lt;s&gt;[INST]") still gets
    /// llama.cpp's prefix, as sentencepiece's own encoding gives it one.
    /// </summary>
    public int[] EncodeChat(string text, bool addSpecial = true) =>
        Encode(text, addSpecial, parseSpecial: true, templateSpaces: true);

    int[] Encode(string text, bool addSpecial, bool parseSpecial, bool templateSpaces)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Unicode.WellFormed(text);
        var output = new List<int>(text.Length / 3 + 2);
        if (addSpecial && AddBos) output.Add(BosId);
        bool afterSpecial = true; // the start of the text counts as following a special token
        foreach (var f in Partition(text, parseSpecial))
        {
            if (f.Token >= 0)
            {
                output.Add(f.Token);
                afterSpecial = true;
            }
            else
            {
                bool spaced = templateSpaces && output.Count > 0 && text[f.Start] == ' ';
                EncodeText(text.Substring(f.Start, f.Length), afterSpecial && !spaced, output);
                afterSpecial = false;
            }
        }
        if (addSpecial && _addEos) output.Add(EosId);
        return output.ToArray();
    }

    /// <summary>Appends the tokens of one run of text that contains no special token.</summary>
    private protected abstract void EncodeText(string text, bool afterSpecial, List<int> output);

    /// <summary>A token, or a run of plain text between special tokens.</summary>
    readonly record struct Fragment(int Token, int Start, int Length);

    /// <summary>Splits the text at occurrences of special tokens, longest tokens first (llama.cpp's
    /// tokenizer_st_partition).</summary>
    List<Fragment> Partition(string text, bool parseSpecial)
    {
        var fragments = new List<Fragment>();
        if (text.Length == 0) return fragments;
        fragments.Add(new(-1, 0, text.Length));
        var next = new List<Fragment>();
        foreach (int id in _specialTokens)
        {
            if (!parseSpecial && (_attrs[id] & (TokenAttr.Control | TokenAttr.Unknown)) != 0) continue;
            string special = _tokens[id];
            next.Clear();
            bool found = false;
            foreach (var f in fragments)
            {
                if (f.Token >= 0) { next.Add(f); continue; }
                int start = f.Start, end = f.Start + f.Length;
                while (start < end)
                {
                    int at = text.AsSpan(start, end - start).IndexOf(special, StringComparison.Ordinal);
                    if (at < 0) break;
                    found = true;
                    if (at > 0) next.Add(new(-1, start, at));
                    next.Add(new(id, 0, 0));
                    start += at + special.Length;
                }
                if (start < end) next.Add(new(-1, start, end - start));
            }
            if (found) (fragments, next) = (next, fragments);
        }
        return fragments;
    }

    /// <summary>What a token renders as with special tokens rendered, the way llama_token_to_piece builds its
    /// cache.</summary>
    byte[] RenderPiece(int id, Func<string, byte[]> normalPiece)
    {
        var a = _attrs[id];
        string text = _tokens[id];
        if ((a & (TokenAttr.Unknown | TokenAttr.Control | TokenAttr.UserDefined)) != 0)
            return Encoding.UTF8.GetBytes(text);
        if ((a & TokenAttr.Normal) != 0) return normalPiece(text);
        if ((a & TokenAttr.Byte) != 0) return [Convert.ToByte(text.Substring(3, 2), 16)];
        return [];
    }

    /// <summary>
    /// The bytes of one token, as llama_token_to_piece: "▁" becomes a space, byte tokens their byte, byte-level BPE
    /// characters their bytes; control and unknown tokens are empty unless <paramref name="renderSpecial"/>.
    /// </summary>
    public byte[] DecodeToken(int id, bool renderSpecial = false) => Piece(id, renderSpecial).ToArray();

    ReadOnlySpan<byte> Piece(int id, bool renderSpecial) =>
        !renderSpecial && (_attrs[CheckId(id)] & (TokenAttr.Unknown | TokenAttr.Control)) != 0 ? [] : _pieces[id];

    /// <summary>
    /// Text of a token sequence, as llama_detokenize(remove_special: false): the first token loses one leading space
    /// when the vocabulary adds a space prefix, and vocabularies that clean up spaces (most byte-level BPE ones) drop
    /// the space before . , ! ? and before 's 'm 're 've. Invalid UTF-8 becomes U+FFFD.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool renderSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        bool removeSpace = _addSpacePrefix;
        foreach (int id in ids)
        {
            var piece = Piece(id, renderSpecial);
            if (removeSpace && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
            removeSpace = false;
            bytes.AddRange(piece);
        }
        var span = CollectionsMarshal.AsSpan(bytes);
        if (_cleanSpaces) span = span[..CleanSpaces(span)];
        return Encoding.UTF8.GetString(span);
    }

    /// <summary>A decoder that turns generated tokens into text as they arrive, holding back split UTF-8
    /// characters.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool renderSpecial = false) => new(this, renderSpecial);

    internal ReadOnlySpan<byte> PieceForStreaming(int id, bool renderSpecial) => Piece(id, renderSpecial);

    /// <summary>llama.cpp's clean_up_tokenization_spaces passes, in place; returns the new length.</summary>
    static int CleanSpaces(Span<byte> t)
    {
        // " ?", " !", " .", " ," lose their space.
        int n = t.Length, total = n > 0 ? 1 : 0;
        for (int i = 1; i < n; i++)
        {
            byte x = t[i];
            if (t[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') total--;
            t[total++] = x;
        }

        // A lone apostrophe between spaces loses both spaces; the space after it is blanked to NUL so the next
        // character no longer sees a space before it (matching llama.cpp, which writes the NUL into its buffer).
        n = total;
        total = n > 0 ? 1 : 0;
        for (int i = 1; i < n; i++)
        {
            byte x = t[i];
            if (x == '\'' && i + 1 < n && t[i - 1] == ' ' && t[i + 1] == ' ')
            {
                total--;
                t[++i] = 0;
            }
            t[total++] = x;
        }

        // " 's", " 'm", " 're", " 've" lose their space; " 't", " 'd", " 'll" keep it.
        n = total;
        total = n > 0 ? 1 : 0;
        for (int i = 1; i < n; i++)
        {
            byte x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < n)
            {
                byte x1 = t[i + 1];
                if (x1 is (byte)'s' or (byte)'m') total--;
                else if (x1 is not ((byte)'t' or (byte)'d') && i + 2 < n)
                {
                    byte x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
                }
            }
            t[total++] = x;
        }
        return total;
    }
}
