using System.Globalization;
using System.Text;

namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// Parses llama.cpp's GBNF: <c>name ::= alternatives</c> rules (root is where the text starts), <c>|</c>, sequences,
/// groups, <c>*</c> <c>+</c> <c>?</c> <c>{m}</c> <c>{m,}</c> <c>{m,n}</c>, string literals and character classes
/// (ranges, <c>^</c> negation) with llama.cpp's escapes, <c>.</c> and <c># comments</c>. A rule ends where the next
/// <c>name ::=</c> begins, so alternatives may continue on following lines. Repetitions and groups become rules of
/// their own, as in llama.cpp; characters become their UTF-8 bytes, a class the byte ranges of its code points.
/// Left recursion, which a top-down matcher cannot follow, is refused.
/// </summary>
sealed class GbnfParser
{
    /// <summary>The most a bounded repetition may count: {m,n} unrolls into m + (n - m) copies.</summary>
    const int MaxRepeat = 1000;

    sealed class Rule(string? name, int at)
    {
        /// <summary>Null for the rules of groups, repetitions and classes.</summary>
        public string? Name { get; } = name;
        /// <summary>Where it is defined or, until then, first referred to.</summary>
        public int At { get; set; } = at;
        public bool Defined { get; set; }
        public List<List<int>> Alternatives { get; set; } = [];
    }

    readonly string _text;
    readonly List<Rule> _rules = [];
    readonly Dictionary<string, int> _byName = [];
    readonly List<ulong> _sets = [];
    readonly Dictionary<(ulong, ulong, ulong, ulong), int> _setIndex = [];
    int _pos;
    int? _anyChar;

    GbnfParser(string text) => _text = text;

    public static GbnfProgram Parse(string text) => new GbnfParser(text).Program();

    GbnfProgram Program()
    {
        Space();
        if (_pos == _text.Length) throw Error(_pos, "the grammar is empty");
        while (_pos < _text.Length)
        {
            int at = _pos;
            string name = Name();
            Space();
            if (!_text.AsSpan(_pos).StartsWith("::=")) throw Error(_pos, $"expected '::=' after rule name '{name}'");
            _pos += 3;
            var rule = _rules[RuleId(name, at)];
            if (rule.Defined) throw Error(at, $"rule '{name}' is defined twice");
            rule.Defined = true;
            rule.At = at;
            rule.Alternatives = Alternates();
            if (_pos < _text.Length && _text[_pos] == ')') throw Error(_pos, "unmatched ')'");
        }
        if (!_byName.TryGetValue("root", out int root)) throw Error(0, "the grammar has no 'root' rule");
        foreach (var r in _rules)
            if (!r.Defined) throw Error(r.At, $"rule '{r.Name}' is not defined");
        RefuseLeftRecursion();
        return Flatten(root);
    }

    List<List<int>> Alternates()
    {
        var alternatives = new List<List<int>> { Sequence() };
        while (_pos < _text.Length && _text[_pos] == '|')
        {
            _pos++;
            alternatives.Add(Sequence());
        }
        return alternatives;
    }

    List<int> Sequence()
    {
        var sequence = new List<int>();
        while (true)
        {
            Space();
            if (_pos == _text.Length || _text[_pos] is '|' or ')' || AtRuleStart()) return sequence;
            int at = _pos;
            var term = Primary();
            Space();
            while (_pos < _text.Length && _text[_pos] is '*' or '+' or '?' or '{')
            {
                term = Repeat(term, at);
                Space();
            }
            sequence.AddRange(term);
        }
    }

    List<int> Primary()
    {
        int at = _pos;
        char c = _text[_pos];
        switch (c)
        {
            case '"':
                _pos++;
                var bytes = new List<int>();
                Span<byte> utf8 = stackalloc byte[4];
                while (true)
                {
                    if (_pos == _text.Length) throw Error(at, "unterminated string literal");
                    if (_text[_pos] == '"') break;
                    int n = new Rune(Char()).EncodeToUtf8(utf8);
                    for (int i = 0; i < n; i++) bytes.Add(Set(utf8[i], utf8[i]));
                }
                _pos++;
                return bytes;
            case '[':
                return Class();
            case '.':
                _pos++;
                _anyChar ??= CharRule([(0, 0x10FFFF)], at);
                return [_anyChar.Value];
            case '(':
                _pos++;
                var alternatives = Alternates();
                if (_pos == _text.Length || _text[_pos] != ')') throw Error(at, "unclosed '('");
                _pos++;
                return alternatives.Count == 1 ? alternatives[0] : [GbnfProgram.Ref(NewRule(alternatives, at))];
            default:
                if (!IsNameChar(c))
                    throw Error(at, $"unexpected '{c}'; expected a string, a character class, '.', '(' or a rule name");
                return [GbnfProgram.Ref(RuleId(Name(), at))];
        }
    }

    /// <summary>A postfix operator on <paramref name="term"/>, rewritten into rules as llama.cpp does: x* is
    /// R ::= x R | "", x+ is x x*, x? is R ::= x | "", x{m,n} is m copies of x then n - m nested optional
    /// ones.</summary>
    List<int> Repeat(List<int> term, int at)
    {
        int opAt = _pos;
        char op = _text[_pos++];
        int min, max;
        switch (op)
        {
            case '*': (min, max) = (0, -1); break;
            case '+': (min, max) = (1, -1); break;
            case '?': (min, max) = (0, 1); break;
            default:
                min = Count(opAt);
                max = min;
                if (_pos < _text.Length && _text[_pos] == ',')
                {
                    _pos++;
                    Space();
                    max = _pos < _text.Length && _text[_pos] == '}' ? -1 : Count(opAt);
                }
                if (_pos == _text.Length || _text[_pos] != '}') throw Error(opAt, "expected '}' to close '{'");
                _pos++;
                if (max >= 0 && max < min)
                    throw Error(opAt, $"repetition {{{min},{max}}} has its maximum below its minimum");
                break;
        }
        int item = term.Count == 1 ? term[0] : GbnfProgram.Ref(NewRule([term], at));
        var result = new List<int>();
        for (int i = 0; i < min; i++) result.Add(item);
        if (max < 0)
        {
            int star = NewRule([], at);
            _rules[star].Alternatives = [[item, GbnfProgram.Ref(star)], []];
            result.Add(GbnfProgram.Ref(star));
        }
        else if (max > min)
        {
            int optional = -1;
            for (int k = 0; k < max - min; k++)
                optional = NewRule([optional < 0 ? [item] : [item, GbnfProgram.Ref(optional)], []], at);
            result.Add(GbnfProgram.Ref(optional));
        }
        return result;
    }

    int Count(int opAt)
    {
        Space();
        int start = _pos;
        while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos])) _pos++;
        if (_pos == start) throw Error(opAt, "expected a number in '{...}'");
        if (!int.TryParse(_text.AsSpan(start, _pos - start), NumberStyles.None, CultureInfo.InvariantCulture,
                out int n) || n > MaxRepeat)
            throw Error(start, $"a repetition count is at most {MaxRepeat}");
        Space();
        return n;
    }

    /// <summary>[...] or [^...]: ranges of code points; the ASCII ones stay one byte-set element.</summary>
    List<int> Class()
    {
        int at = _pos++;
        bool negated = _pos < _text.Length && _text[_pos] == '^';
        if (negated) _pos++;
        var ranges = new List<(int Lo, int Hi)>();
        while (true)
        {
            if (_pos == _text.Length) throw Error(at, "unterminated character class");
            if (_text[_pos] == ']') break;
            int lo = Char(), hi = lo;
            if (_pos + 1 < _text.Length && _text[_pos] == '-' && _text[_pos + 1] != ']')
            {
                _pos++;
                hi = Char();
                if (hi < lo) throw Error(at, $"range U+{lo:X4}-U+{hi:X4} is reversed");
            }
            ranges.Add((lo, hi));
        }
        _pos++;
        if (negated) ranges = Complement(ranges);
        if (ranges.Count == 0) throw Error(at, "the character class matches no character");
        return ranges.All(r => r.Hi < 0x80) ? [AsciiSet(ranges)] : [CharRule(ranges, at)];
    }

    /// <summary>A rule whose alternatives are the UTF-8 byte sequences of the code points in
    /// <paramref name="ranges"/> (surrogates excluded, as UTF-8 has none).</summary>
    int CharRule(List<(int Lo, int Hi)> ranges, int at)
    {
        var alternatives = new List<List<int>>();
        var ascii = ranges.Where(r => r.Lo < 0x80).Select(r => (r.Lo, Math.Min(r.Hi, 0x7F))).ToList();
        if (ascii.Count > 0) alternatives.Add([AsciiSet(ascii)]);
        foreach (var (lo, hi) in ranges)
        {
            int from = Math.Max(lo, 0x80);
            if (from > hi) continue;
            if (from < 0xD800) Utf8Ranges(from, Math.Min(hi, 0xD7FF), alternatives);
            if (hi > 0xDFFF) Utf8Ranges(Math.Max(from, 0xE000), hi, alternatives);
        }
        return GbnfProgram.Ref(NewRule(alternatives, at));
    }

    /// <summary>Splits [lo, hi] (of one encoded length, after splitting) until every byte of the encoding is a
    /// contiguous range on its own, as RE2 and Rust's utf8-ranges do; each piece becomes a sequence of byte
    /// sets.</summary>
    void Utf8Ranges(int lo, int hi, List<List<int>> into)
    {
        if (lo > hi) return;
        foreach (int edge in (ReadOnlySpan<int>)[0x7F, 0x7FF, 0xFFFF])
            if (lo <= edge && edge < hi)
            {
                Utf8Ranges(lo, edge, into);
                Utf8Ranges(edge + 1, hi, into);
                return;
            }
        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        int n = new Rune(lo).EncodeToUtf8(a);
        for (int i = 1; i < n; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((lo & ~m) == (hi & ~m)) continue;
            if ((lo & m) != 0)
            {
                Utf8Ranges(lo, lo | m, into);
                Utf8Ranges((lo | m) + 1, hi, into);
                return;
            }
            if ((hi & m) != m)
            {
                Utf8Ranges(lo, (hi & ~m) - 1, into);
                Utf8Ranges(hi & ~m, hi, into);
                return;
            }
        }
        new Rune(hi).EncodeToUtf8(b);
        var sequence = new List<int>(n);
        for (int i = 0; i < n; i++) sequence.Add(Set(a[i], b[i]));
        into.Add(sequence);
    }

    static List<(int Lo, int Hi)> Complement(List<(int Lo, int Hi)> ranges)
    {
        var result = new List<(int, int)>();
        int next = 0;
        foreach (var (lo, hi) in ranges.OrderBy(r => r.Lo))
        {
            if (lo > next) result.Add((next, lo - 1));
            next = Math.Max(next, hi + 1);
        }
        if (next <= 0x10FFFF) result.Add((next, 0x10FFFF));
        return result;
    }

    int AsciiSet(List<(int Lo, int Hi)> ranges)
    {
        Span<ulong> words = stackalloc ulong[4];
        foreach (var (lo, hi) in ranges)
            for (int c = lo; c <= Math.Min(hi, 0x7F); c++) words[c >> 6] |= 1UL << c;
        return Set(words);
    }

    int Set(int lo, int hi)
    {
        Span<ulong> words = stackalloc ulong[4];
        for (int c = lo; c <= hi; c++) words[c >> 6] |= 1UL << c;
        return Set(words);
    }

    /// <summary>A byte set's index, shared by every element with the same bytes.</summary>
    int Set(ReadOnlySpan<ulong> words)
    {
        var key = (words[0], words[1], words[2], words[3]);
        if (!_setIndex.TryGetValue(key, out int index))
        {
            _setIndex[key] = index = _sets.Count / 4;
            _sets.AddRange(words);
        }
        return index;
    }

    /// <summary>One character of a literal or class: a code point or an escape (\x.. \u.... \U........ \t \r \n and
    /// \ before \ " [ ] - ^).</summary>
    int Char()
    {
        int at = _pos;
        char c = _text[_pos];
        if (c != '\\')
        {
            if (!char.IsHighSurrogate(c) || _pos + 1 == _text.Length || !char.IsLowSurrogate(_text[_pos + 1]))
            {
                _pos++;
                if (char.IsSurrogate(c)) throw Error(at, "a lone surrogate is not a character");
                return c;
            }
            _pos += 2;
            return char.ConvertToUtf32(c, _text[_pos - 1]);
        }
        if (++_pos == _text.Length) throw Error(at, "unfinished escape");
        char e = _text[_pos++];
        int code = e switch
        {
            'x' => Hex(2, at),
            'u' => Hex(4, at),
            'U' => Hex(8, at),
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            '\\' or '"' or '[' or ']' or '-' or '^' => e,
            _ => throw Error(at, $"unknown escape '\\{e}'"),
        };
        if (code is > 0x10FFFF or >= 0xD800 and <= 0xDFFF) throw Error(at, $"U+{code:X} is not a character");
        return code;
    }

    int Hex(int digits, int at)
    {
        if (_pos + digits > _text.Length
            || !int.TryParse(_text.AsSpan(_pos, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture,
                out int code))
            throw Error(at, $"expected {digits} hex digits");
        _pos += digits;
        return code;
    }

    string Name()
    {
        int start = _pos;
        while (_pos < _text.Length && IsNameChar(_text[_pos])) _pos++;
        if (_pos == start) throw Error(start, "expected a rule name");
        return _text[start.._pos];
    }

    static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_';

    /// <summary>Whether the text here starts the next rule (a name, then ::=), which ends the current one.</summary>
    bool AtRuleStart()
    {
        int p = _pos;
        while (p < _text.Length && IsNameChar(_text[p])) p++;
        if (p == _pos) return false;
        while (p < _text.Length && _text[p] is ' ' or '\t') p++;
        return _text.AsSpan(p).StartsWith("::=");
    }

    /// <summary>Whitespace, line ends and # comments.</summary>
    void Space()
    {
        while (_pos < _text.Length)
        {
            char c = _text[_pos];
            if (c is ' ' or '\t' or '\r' or '\n') _pos++;
            else if (c == '#')
                while (_pos < _text.Length && _text[_pos] != '\n') _pos++;
            else return;
        }
    }

    int RuleId(string name, int at)
    {
        if (!_byName.TryGetValue(name, out int id))
        {
            _byName[name] = id = _rules.Count;
            _rules.Add(new Rule(name, at));
        }
        return id;
    }

    /// <summary>A rule for a group, a repetition or a class, known by where it is written.</summary>
    int NewRule(List<List<int>> alternatives, int at)
    {
        _rules.Add(new Rule(null, at) { Defined = true, Alternatives = alternatives });
        return _rules.Count - 1;
    }

    /// <summary>Refuses a rule that can reach itself before matching a byte (A ::= A "x", or a repetition of what
    /// can be empty): expanding it would never end.</summary>
    void RefuseLeftRecursion()
    {
        var nullable = new bool[_rules.Count];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < _rules.Count; r++)
                if (!nullable[r]
                    && _rules[r].Alternatives.Any(a => a.All(e => e < 0 && nullable[GbnfProgram.RuleOf(e)])))
                    changed = nullable[r] = true;
        }
        var state = new byte[_rules.Count]; // 0 unvisited, 1 on the path, 2 done
        for (int r = 0; r < _rules.Count; r++) Visit(r);

        void Visit(int r)
        {
            if (state[r] == 2) return;
            if (state[r] == 1)
                throw Error(_rules[r].At, (_rules[r].Name is { } name ? $"rule '{name}'" : "this group or repetition")
                    + " is left-recursive: it can reach itself before matching a character");
            state[r] = 1;
            foreach (var alternative in _rules[r].Alternatives)
                foreach (int e in alternative)
                {
                    if (e >= 0) break;
                    Visit(GbnfProgram.RuleOf(e));
                    if (!nullable[GbnfProgram.RuleOf(e)]) break;
                }
            state[r] = 2;
        }
    }

    GbnfProgram Flatten(int root)
    {
        var code = new List<int>();
        var alternatives = new int[_rules.Count][];
        for (int r = 0; r < _rules.Count; r++)
        {
            var starts = new int[_rules[r].Alternatives.Count];
            for (int a = 0; a < starts.Length; a++)
            {
                starts[a] = code.Count;
                code.AddRange(_rules[r].Alternatives[a]);
                code.Add(GbnfProgram.End);
            }
            alternatives[r] = starts;
        }
        return new GbnfProgram([.. code], alternatives, [.. _sets], root);
    }

    (int Line, int Column) LineColumn(int at)
    {
        int line = 1, lineStart = 0;
        for (int i = 0; i < at && i < _text.Length; i++)
            if (_text[i] == '\n') (line, lineStart) = (line + 1, i + 1);
        return (line, at - lineStart + 1);
    }

    GrammarException Error(int at, string message)
    {
        var (line, column) = LineColumn(at);
        return new GrammarException(line, column, message);
    }
}
