using System.Text;
using System.Text.RegularExpressions;

namespace Weft.Models.Tokenization;

/// <summary>
/// How a byte-level BPE vocabulary named by tokenizer.ggml.pre splits text into words and cleans decoded text,
/// with the same defaults llama.cpp gives that name.
/// </summary>
sealed record BpeDialect(PreTokenizer Splitter, bool CleanSpaces, bool IgnoreMerges, bool AddBos)
{
    // The expressions are llama.cpp's (llm_tokenizer_bpe), so the custom fast paths below recognise them verbatim.
    const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    const string Llama3 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|" +
        @"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const string Qwen2 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|" +
        @" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const string Qwen35 = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|" +
        @"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const string Gpt4o = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|" +
        @"'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|" +
        @"'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|" +
        @"\s+(?!\S)|\s+";
    const string Tekken = @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|" +
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|" +
        @"\s+(?!\S)|\s+";
    const string Bloom = @" ?[^(\s|.,!?…。，、।۔،)]+";

    static readonly PreTokenizer DefaultSplit = new([@"[\p{P}\$\+<=>\^~\|]+", Gpt2, @"\p{N}+", "[0-9][0-9][0-9]"]);
    static readonly PreTokenizer Llama3Split = new([Llama3]);
    static readonly PreTokenizer Gpt2Split = new([Gpt2]);
    static readonly PreTokenizer StarcoderSplit = new([@"\p{N}", Gpt2]);
    static readonly PreTokenizer Qwen2Split = new([Qwen2]);

    /// <summary>The default llama.cpp uses when tokenizer.ggml.pre is missing.</summary>
    public static readonly BpeDialect Default = new(DefaultSplit, CleanSpaces: true, IgnoreMerges: false,
        AddBos: false);

    static readonly Dictionary<string, BpeDialect> Known = Build();

    static Dictionary<string, BpeDialect> Build()
    {
        var d = new Dictionary<string, BpeDialect>(StringComparer.Ordinal);
        void Add(BpeDialect dialect, params string[] names)
        {
            foreach (var n in names) d.Add(n, dialect);
        }
        Add(Default, "default");
        Add(new(Llama3Split, true, IgnoreMerges: true, AddBos: true), "llama3", "llama-v3", "llama-bpe", "falcon3",
            "falcon-h1", "pixtral", "midm-2.0", "lfm2");
        Add(new(Llama3Split, true, false, false), "dbrx", "smaug-bpe");
        Add(new(Gpt2Split, true, false, false), "gpt-2", "phi-2", "gigachat", "a.x-4.0", "mellum", "exaone4", "mpt",
            "olmo", "jais");
        Add(new(Gpt2Split, false, false, false), "trillion", "granite-docling");
        Add(new(StarcoderSplit, true, false, false), "starcoder", "refact", "codeshell", "exaone", "minerva-7b",
            "mellum2");
        Add(new(StarcoderSplit, false, false, false), "command-r", "smollm");
        Add(new(Qwen2Split, false, false, false), "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan",
            "solar-open");
        Add(new(Qwen2Split, true, false, false), "stablelm2", "megrez");
        Add(new(new([Qwen35]), false, false, false), "qwen35");
        Add(new(new([@"[\p{P}\$\+<=>\^~\|`]+", Gpt2, "[0-9][0-9][0-9]"]), true, false, false), "falcon");
        Add(new(new([Gpt4o]), false, false, false), "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2");
        Add(new(new([Tekken]), false, IgnoreMerges: true, AddBos: true), "tekken");
        Add(new(new([Bloom]), true, false, false), "bloom", "gpt3-finnish");
        Add(new(new([Bloom]), false, false, false), "poro-chat");
        Add(new(new([Bloom, @"\p{N}"]), false, false, false), "viking");
        return d;
    }

    public static IEnumerable<string> Names => Known.Keys;

    public static BpeDialect? Find(string name) => Known.GetValueOrDefault(name);
}

/// <summary>
/// Splits text into the words a byte-level BPE merges within, reproducing llama.cpp's unicode_regex_split: each
/// expression refines the pieces of the previous one (matches and the gaps between them both become pieces). The
/// GPT-2 and Llama 3 expressions run as hand-written scanners over codepoint categories, as in llama.cpp; the others
/// run as regular expressions over a "collapsed" text where every codepoint is one char and every non-ASCII codepoint
/// stands in for its category, which is how llama.cpp evaluates \p{..} classes with std::regex.
/// </summary>
sealed class PreTokenizer
{
    enum Kind { Gpt2, Llama3, Collapsed, Codepoints }

    readonly (Kind Kind, Regex? Regex)[] _stages;

    public PreTokenizer(string[] expressions) => _stages = expressions.Select(Compile).ToArray();

    static (Kind, Regex?) Compile(string expr)
    {
        if (expr == @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)") return (Kind.Gpt2, null);
        if (expr is @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|" +
                    @"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                 or @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|" +
                    @"\s*[\r\n]+|\s+(?!\S)|\s+")
            return (Kind.Llama3, null);
        const RegexOptions options =
            RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture | RegexOptions.Compiled;
        return expr.Contains(@"\p{")
            ? (Kind.Collapsed, new Regex(CollapseExpression(expr), options))
            : (Kind.Codepoints, new Regex(expr, options));
    }

    // Character-class bodies standing for \p{..} in the collapsed text: the category's stand-in char plus the ASCII
    // members, which the collapsed text keeps as themselves.
    const string NumberClass = @"\u00D10-9";
    const string LetterClass = @"\u00D2A-Za-z";
    const string PunctuationClass = @"\u00D3!-#%-*,-/:-;?-@\[-\]_\{\}";
    const string MarkClass = @"\u00D4";
    const string SymbolClass = @"\u00D5\$\+<->\^`\|";

    static string CollapseExpression(string expr)
    {
        var sb = new StringBuilder();
        bool inClass = false;
        for (int i = 0; i < expr.Length; i++)
        {
            char c = expr[i];
            if (c == '[' && (i == 0 || expr[i - 1] != '\\')) { inClass = true; sb.Append(c); continue; }
            if (c == ']' && inClass && expr[i - 1] != '\\') { inClass = false; sb.Append(c); continue; }
            if (c == '\\' && i + 3 < expr.Length && expr[i + 1] == 'p' && expr[i + 2] == '{')
            {
                int close = expr.IndexOf('}', i + 3);
                string? body = close < 0 ? null : expr[(i + 3)..close] switch
                {
                    "N" => NumberClass,
                    "L" or "Lu" or "Ll" or "Lt" or "Lm" or "Lo" => LetterClass,
                    "P" => PunctuationClass,
                    "M" => MarkClass,
                    "S" => SymbolClass,
                    _ => null,
                };
                if (body is not null)
                {
                    sb.Append(inClass ? body : $"[{body}]");
                    i = close;
                    continue;
                }
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    static char CollapsedChar(int cp, CodepointFlags f)
    {
        if (cp < 128) return (char)cp;
        if ((f & CodepointFlags.Whitespace) != 0) return '\v'; // std::regex's \s only knows ASCII whitespace
        return (f & ~CodepointFlags.Whitespace) switch
        {
            CodepointFlags.Number => '\u00D1',
            CodepointFlags.Letter => '\u00D2',
            CodepointFlags.Punctuation => '\u00D3',
            CodepointFlags.Mark => '\u00D4',
            CodepointFlags.Symbol => '\u00D5',
            _ => '\u00D0',
        };
    }

    static char CodepointChar(int cp, CodepointFlags f) =>
        cp > 0x7F && (f & CodepointFlags.Whitespace) != 0 ? '\v' : cp <= 0xFFFF ? (char)cp : '\uFFFF';

    /// <summary>Appends the UTF-16 ranges of the words of <paramref name="text"/> (well-formed) to <paramref
    /// name="words"/>.</summary>
    public void Split(string text, List<Range> words)
    {
        var (cps, offsets) = Unicode.Codepoints(text);
        var flags = new CodepointFlags[cps.Length];
        for (int i = 0; i < cps.Length; i++) flags[i] = Unicode.Flags(cps[i]);

        string? collapsed = null, wide = null;
        var pieces = new List<int> { cps.Length };
        var next = new List<int>();
        foreach (var (kind, regex) in _stages)
        {
            next.Clear();
            int start = 0;
            foreach (int len in pieces)
            {
                switch (kind)
                {
                    case Kind.Gpt2: SplitGpt2(cps, flags, start, start + len, next); break;
                    case Kind.Llama3: SplitLlama3(cps, flags, start, start + len, next); break;
                    case Kind.Collapsed:
                        collapsed ??= string.Create(cps.Length, (cps, flags),
                            static (s, st) =>
                            {
                                for (int i = 0; i < s.Length; i++) s[i] = CollapsedChar(st.cps[i], st.flags[i]);
                            });
                        SplitRegex(regex!, collapsed.AsSpan(start, len), next);
                        break;
                    default:
                        wide ??= string.Create(cps.Length, (cps, flags),
                            static (s, st) =>
                            {
                                for (int i = 0; i < s.Length; i++) s[i] = CodepointChar(st.cps[i], st.flags[i]);
                            });
                        SplitRegex(regex!, wide.AsSpan(start, len), next);
                        break;
                }
                start += len;
            }
            (pieces, next) = (next, pieces);
        }

        int pos = 0;
        foreach (int len in pieces)
        {
            words.Add(offsets[pos]..offsets[pos + len]);
            pos += len;
        }
    }

    /// <summary>Matches and the gaps between them, as llama.cpp's std::regex_iterator loop emits them.</summary>
    static void SplitRegex(Regex regex, ReadOnlySpan<char> segment, List<int> output)
    {
        int last = 0;
        foreach (var m in regex.EnumerateMatches(segment))
        {
            if (m.Length == 0) continue;
            if (m.Index > last) output.Add(m.Index - last);
            output.Add(m.Length);
            last = m.Index + m.Length;
        }
        if (last < segment.Length) output.Add(segment.Length - last);
    }

    static bool Is(CodepointFlags f, CodepointFlags bit) => (f & bit) != 0;

    /// <summary>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ scanned by hand.</summary>
    static void SplitGpt2(int[] cps, CodepointFlags[] allFlags, int begin, int end, List<int> output)
    {
        int Cp(int p) => p >= begin && p < end ? cps[p] : -1;
        CodepointFlags F(int p) => p >= begin && p < end ? allFlags[p] : CodepointFlags.None;
        const CodepointFlags wordish = CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number;

        int prevEnd = begin;
        void Emit(int e)
        {
            if (e > prevEnd) output.Add(e - prevEnd);
            prevEnd = e;
        }

        for (int pos = begin; pos < end;)
        {
            int cp = Cp(pos);
            var flags = F(pos);

            if (cp == '\'' && pos + 1 < end)
            {
                int n1 = Cp(pos + 1);
                if (n1 is 's' or 't' or 'm' or 'd') { Emit(pos += 2); continue; }
                if (pos + 2 < end)
                {
                    int n2 = Cp(pos + 2);
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
                    { Emit(pos += 3); continue; }
                }
            }

            var f2 = cp == ' ' ? F(pos + 1) : flags;
            if (Is(f2, CodepointFlags.Letter))
            {
                if (cp == ' ') pos++;
                while (Is(F(pos), CodepointFlags.Letter)) pos++;
                Emit(pos);
                continue;
            }
            if (Is(f2, CodepointFlags.Number))
            {
                if (cp == ' ') pos++;
                while (Is(F(pos), CodepointFlags.Number)) pos++;
                Emit(pos);
                continue;
            }
            if ((f2 & wordish) == 0 && f2 != CodepointFlags.None)
            {
                if (cp == ' ') pos++;
                while ((F(pos) & wordish) == 0 && F(pos) != CodepointFlags.None) pos++;
                Emit(pos);
                continue;
            }

            int spaces = 0;
            while (Is(F(pos + spaces), CodepointFlags.Whitespace)) spaces++;
            // \s+(?!\S): leave one for the next word
            if (spaces > 1 && Cp(pos + spaces) >= 0) { Emit(pos += spaces - 1); continue; }
            if (spaces > 0) { Emit(pos += spaces); continue; }
            Emit(++pos);
        }
    }

    /// <summary>Llama 3's expression (contractions case-insensitive) scanned by hand.</summary>
    static void SplitLlama3(int[] cps, CodepointFlags[] allFlags, int begin, int end, List<int> output)
    {
        int Cp(int p) => p >= begin && p < end ? cps[p] : -1;
        CodepointFlags F(int p) => p >= begin && p < end ? allFlags[p] : CodepointFlags.None;
        static int Lower(int c) => c is >= 'A' and <= 'Z' ? c + 32 : c;
        const CodepointFlags wordish = CodepointFlags.Whitespace | CodepointFlags.Letter | CodepointFlags.Number;

        int prevEnd = begin;
        void Emit(int e)
        {
            if (e > prevEnd) output.Add(e - prevEnd);
            prevEnd = e;
        }

        for (int pos = begin; pos < end;)
        {
            int cp = Cp(pos);
            var flags = F(pos);

            if (cp == '\'' && pos + 1 < end)
            {
                int n1 = Lower(Cp(pos + 1));
                if (n1 is 's' or 't' or 'm' or 'd') { Emit(pos += 2); continue; }
                if (pos + 2 < end)
                {
                    int n2 = Lower(Cp(pos + 2));
                    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
                    { Emit(pos += 3); continue; }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if (!(cp is '\r' or '\n' || Is(flags, CodepointFlags.Number))
                && (Is(flags, CodepointFlags.Letter) || Is(F(pos + 1), CodepointFlags.Letter)))
            {
                pos++;
                while (Is(F(pos), CodepointFlags.Letter)) pos++;
                Emit(pos);
                continue;
            }

            // \p{N}{1,3}
            if (Is(flags, CodepointFlags.Number))
            {
                int start = pos;
                while (Is(F(pos), CodepointFlags.Number))
                {
                    if (++pos - start >= 3)
                    {
                        Emit(pos);
                        start = pos;
                    }
                }
                Emit(pos);
                continue;
            }

            // " ?[^\s\p{L}\p{N}]+[\r\n]*" (llama.cpp tests the current codepoint's flags for being in range, not the
            // next one's)
            var f2 = cp == ' ' ? F(pos + 1) : flags;
            if ((f2 & wordish) == 0 && flags != CodepointFlags.None)
            {
                if (cp == ' ') pos++;
                while ((F(pos) & wordish) == 0 && F(pos) != CodepointFlags.None) pos++;
                while (Cp(pos) is '\r' or '\n') pos++;
                Emit(pos);
                continue;
            }

            int spaces = 0, lastNewline = -1;
            while (Is(F(pos + spaces), CodepointFlags.Whitespace))
            {
                if (Cp(pos + spaces) is '\r' or '\n') lastNewline = pos + spaces + 1;
                spaces++;
            }
            if (lastNewline >= 0) { Emit(pos = lastNewline); continue; } // \s*[\r\n]+
            if (spaces > 1 && Cp(pos + spaces) >= 0) { Emit(pos += spaces - 1); continue; }
            if (spaces > 0) { Emit(pos += spaces); continue; }
            Emit(++pos);
        }
    }
}
