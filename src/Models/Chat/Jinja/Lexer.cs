using System.Text;

namespace Weft.Models.Chat.Jinja;

enum TokenKind { Text, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End }

readonly record struct Token(TokenKind Kind, string Value, int Position);

/// <summary>
/// Splits a template into text and tag tokens the way Jinja2's lexer does with Hugging Face's settings
/// (trim_blocks, lstrip_blocks, keep_trailing_newline off): newlines are normalised to \n and one trailing newline is
/// dropped; "{%-"/"-%}" strip all white space on that side; a block or comment tag removes the newline right after
/// it, and the spaces before it when only spaces separate it from the start of its line ("{%+"/"+%}" opt out).
/// </summary>
static class Lexer
{
    public static string Normalize(string source)
    {
        string s = source.Replace("\r\n", "\n").Replace('\r', '\n');
        return s.EndsWith('\n') ? s[..^1] : s;
    }

    public static List<Token> Tokenize(string src)
    {
        var tokens = new List<Token>();
        int pos = 0;
        while (pos < src.Length)
        {
            int tag = FindTag(src, pos);
            int textEnd = tag < 0 ? src.Length : tag;
            string text = src[pos..textEnd];
            if (tag >= 0)
            {
                char kind = src[tag + 1];
                char sign = tag + 2 < src.Length && src[tag + 2] is '-' or '+' ? src[tag + 2] : '\0';
                if (sign == '-') text = text[..TrimEndIndex(text)];
                else if (sign != '+' && kind != '{')
                {
                    int lineStart = text.LastIndexOf('\n') + 1;
                    bool atLineStart = lineStart > 0 || pos == 0 || src[pos - 1] == '\n';
                    if (atLineStart && lineStart < text.Length && AllSpace(text, lineStart)) text = text[..lineStart];
                }
                if (text.Length > 0) tokens.Add(new(TokenKind.Text, text, pos));
                pos = tag + 2 + (sign != '\0' ? 1 : 0);
                pos = kind == '#' ? SkipComment(src, tag, pos) : LexTag(src, tag, pos, kind == '%', tokens);
            }
            else
            {
                if (text.Length > 0) tokens.Add(new(TokenKind.Text, text, pos));
                pos = src.Length;
            }
        }
        tokens.Add(new(TokenKind.End, "", src.Length));
        return tokens;
    }

    static int FindTag(string src, int from)
    {
        for (int i = src.IndexOf('{', from); i >= 0 && i + 1 < src.Length; i = src.IndexOf('{', i + 1))
            if (src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    static int SkipComment(string src, int tag, int pos)
    {
        int end = src.IndexOf("#}", pos, StringComparison.Ordinal);
        if (end < 0) throw Error(src, tag, "the comment is not closed");
        bool strip = end > pos && src[end - 1] == '-';
        bool keep = end > pos && src[end - 1] == '+';
        return AfterBlockEnd(src, end + 2, strip, keep);
    }

    static int AfterBlockEnd(string src, int pos, bool strip, bool keep)
    {
        if (strip)
            while (pos < src.Length && PyString.IsSpace(src[pos])) pos++;
        else if (!keep && pos < src.Length && src[pos] == '\n') pos++;
        return pos;
    }

    static int LexTag(string src, int tag, int pos, bool block, List<Token> tokens)
    {
        tokens.Add(new(block ? TokenKind.BlockBegin : TokenKind.VariableBegin, "", tag));
        int depth = 0;
        while (true)
        {
            while (pos < src.Length && PyString.IsSpace(src[pos])) pos++;
            if (pos >= src.Length) throw Error(src, tag, block ? "the tag is not closed" : "the {{ is not closed");
            if (depth == 0)
            {
                string close = block ? "%}" : "}}";
                bool sign = src[pos] is '-' or '+' && string.CompareOrdinal(src, pos + 1, close, 0, 2) == 0;
                if (sign || string.CompareOrdinal(src, pos, close, 0, 2) == 0)
                {
                    tokens.Add(new(block ? TokenKind.BlockEnd : TokenKind.VariableEnd, "", pos));
                    bool strip = sign && src[pos] == '-', keep = sign && src[pos] == '+';
                    pos += sign ? 3 : 2;
                    // trim_blocks applies to block tags only; "-}}" strips like "-%}"
                    return block ? AfterBlockEnd(src, pos, strip, keep) : AfterBlockEnd(src, pos, strip, true);
                }
            }
            char c = src[pos];
            int start = pos;
            if (char.IsAsciiLetter(c) || c == '_')
            {
                while (pos < src.Length && (char.IsAsciiLetterOrDigit(src[pos]) || src[pos] == '_')) pos++;
                tokens.Add(new(TokenKind.Name, src[start..pos], start));
            }
            else if (char.IsAsciiDigit(c)) pos = LexNumber(src, pos, tokens);
            else if (c is '\'' or '"') pos = LexString(src, pos, tokens);
            else
            {
                string op = Operators.FirstOrDefault(o => string.CompareOrdinal(src, pos, o, 0, o.Length) == 0)
                    ?? throw Error(src, pos, $"unexpected character '{c}'");
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}")
                {
                    if (depth == 0) throw Error(src, pos, $"unexpected '{op}'");
                    depth--;
                }
                tokens.Add(new(TokenKind.Operator, op, start));
                pos += op.Length;
            }
        }
    }

    static readonly string[] Operators =
    [
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
        ",", ".", ":", "|",
    ];

    static int LexNumber(string src, int pos, List<Token> tokens)
    {
        int start = pos;
        while (pos < src.Length && (char.IsAsciiDigit(src[pos]) || src[pos] == '_')) pos++;
        bool isFloat = false;
        if (pos + 1 < src.Length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
        {
            isFloat = true;
            pos++;
            while (pos < src.Length && (char.IsAsciiDigit(src[pos]) || src[pos] == '_')) pos++;
        }
        if (pos < src.Length && src[pos] is 'e' or 'E')
        {
            int e = pos + 1;
            if (e < src.Length && src[e] is '+' or '-') e++;
            if (e < src.Length && char.IsAsciiDigit(src[e]))
            {
                isFloat = true;
                pos = e;
                while (pos < src.Length && char.IsAsciiDigit(src[pos])) pos++;
            }
        }
        tokens.Add(new(isFloat ? TokenKind.Float : TokenKind.Integer, src[start..pos].Replace("_", ""), start));
        return pos;
    }

    // Python string literal escapes, as Jinja decodes them.
    static int LexString(string src, int pos, List<Token> tokens)
    {
        char quote = src[pos];
        int start = pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= src.Length) throw Error(src, start, "the string is not closed");
            char c = src[pos++];
            if (c == quote) break;
            if (c != '\\' || pos >= src.Length) { sb.Append(c); continue; }
            char e = src[pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '0': sb.Append('\0'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': break;
                case '\\' or '\'' or '"': sb.Append(e); break;
                case 'x': sb.Append(Hex(src, ref pos, 2, start)); break;
                case 'u': sb.Append(Hex(src, ref pos, 4, start)); break;
                case 'U': sb.Append(Hex(src, ref pos, 8, start)); break;
                default: sb.Append('\\').Append(e); break;
            }
        }
        tokens.Add(new(TokenKind.String, sb.ToString(), start));
        return pos;
    }

    static string Hex(string src, ref int pos, int digits, int start)
    {
        if (pos + digits > src.Length || !int.TryParse(src.AsSpan(pos, digits),
                System.Globalization.NumberStyles.AllowHexSpecifier, null, out int code))
            throw Error(src, start, "a malformed \\x, \\u or \\U escape");
        pos += digits;
        return char.ConvertFromUtf32(code);
    }

    static int TrimEndIndex(string s)
    {
        int end = s.Length;
        while (end > 0 && PyString.IsSpace(s[end - 1])) end--;
        return end;
    }

    static bool AllSpace(string s, int from)
    {
        for (int i = from; i < s.Length; i++)
            if (!PyString.IsSpace(s[i])) return false;
        return true;
    }

    public static (int Line, int Column) Locate(string src, int position)
    {
        int line = 1, lineStart = 0;
        for (int i = 0; i < position && i < src.Length; i++)
            if (src[i] == '\n') { line++; lineStart = i + 1; }
        return (line, position - lineStart + 1);
    }

    public static JinjaException Error(string src, int position, string reason)
    {
        var (line, column) = Locate(src, position);
        return new JinjaException(reason, line, column);
    }
}
