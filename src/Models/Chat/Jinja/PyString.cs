using System.Globalization;
using System.Text;

namespace Weft.Models.Chat.Jinja;

/// <summary>Python's str methods as chat templates call them, on .NET strings.</summary>
static class PyString
{
    // str.isspace(): .NET's white space plus the \x1c-\x1f separators.
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        bool Drop(char c) => chars is null ? IsSpace(c) : chars.Contains(c);
        int a = 0, b = s.Length;
        if (left) while (a < b && Drop(s[a])) a++;
        if (right) while (b > a && Drop(s[b - 1])) b--;
        return s[a..b];
    }

    public static List<object?> Split(string s, string? separator, long maxSplit)
    {
        var parts = new List<object?>();
        if (separator is null)
        {
            int i = 0;
            while (true)
            {
                while (i < s.Length && IsSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxSplit >= 0 && parts.Count == maxSplit)
                {
                    parts.Add(Strip(s[i..], null, left: false));
                    break;
                }
                int start = i;
                while (i < s.Length && !IsSpace(s[i])) i++;
                parts.Add(s[start..i]);
            }
            return parts;
        }
        if (separator.Length == 0) throw new JinjaRuntimeError("empty separator");
        int from = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            int at = s.IndexOf(separator, from, StringComparison.Ordinal);
            if (at < 0) break;
            parts.Add(s[from..at]);
            from = at + separator.Length;
        }
        parts.Add(s[from..]);
        return parts;
    }

    // Python indexes strings by code point; a surrogate pair is one character.
    public static List<object?> CodePoints(string s)
    {
        var list = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                list.Add(s.Substring(i, 2));
                i++;
            }
            else list.Add(s[i].ToString());
        }
        return list;
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    // str.title(): a letter after a non-letter starts a word
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            bool letter = char.IsLetter(c);
            sb.Append(letter ? previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c) : c);
            previousCased = letter;
        }
        return sb.ToString();
    }

    // Jinja's title filter: words start after '-', white space, '(', '{', '[' or '<'
    public static string JinjaTitle(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            bool separator = c is '-' or '(' or '{' or '[' or '<' || IsSpace(c);
            sb.Append(separator ? c : start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = separator;
        }
        return sb.ToString();
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, replacement, long.MaxValue)
            : s.Replace(old, replacement, StringComparison.Ordinal);
        if (old.Length == 0) return InsertEverywhere(s, replacement, count);
        var sb = new StringBuilder();
        int from = 0;
        for (long n = 0; n < count; n++)
        {
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0) break;
            sb.Append(s, from, at - from).Append(replacement);
            from = at + old.Length;
        }
        return sb.Append(s, from, s.Length - from).ToString();
    }

    static string InsertEverywhere(string s, string insert, long count)
    {
        var sb = new StringBuilder();
        long n = 0;
        foreach (string c in CodePoints(s).Cast<string>())
        {
            if (n++ < count) sb.Append(insert);
            sb.Append(c);
        }
        if (n < count) sb.Append(insert);
        return sb.ToString();
    }

    // str.splitlines()
    public static List<string> SplitLines(string s)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028'
                or '\u2029')) continue;
            lines.Add(s[start..i]);
            if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
            start = i + 1;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    /// <summary>json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=sortKeys), which
    /// transformers installs as the tojson filter (Jinja2's own would escape &lt;, &gt;, &amp; and ').</summary>
    /// <param name="maxChars">The longest result: an indent is repeated at every level of every item, so a long
    /// one grows the text far past its input, and is refused as it grows.</param>
    public static string ToJson(object? v, string? indent, bool sortKeys, string itemSeparator, string keySeparator,
        int maxChars)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, indent, sortKeys, itemSeparator, keySeparator, 0, maxChars);
        return sb.ToString();
    }

    static void WriteJson(StringBuilder sb, object? v, string? indent, bool sortKeys, string itemSep, string keySep,
        int depth, int maxChars)
    {
        void Break(int level)
        {
            if (indent is null) return;
            sb.Append('\n');
            for (int i = 0; i < level; i++) sb.Append(indent);
            if (sb.Length > maxChars) throw new JinjaRuntimeError($"the text grew past {maxChars} characters");
        }

        switch (v)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? d > 0 ? "Infinity" : "-Infinity"
                    : Py.FloatRepr(d));
                break;
            case string s: JsonString(sb, s); break;
            case IList<object?> list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    Break(depth + 1);
                    WriteJson(sb, list[i], indent, sortKeys, itemSep, keySep, depth + 1, maxChars);
                }
                Break(depth);
                sb.Append(']');
                break;
            case Dictionary<string, object?> dict:
                if (dict.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                IEnumerable<KeyValuePair<string, object?>> pairs = sortKeys
                    ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict;
                bool first = true;
                foreach (var (key, value) in pairs)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    Break(depth + 1);
                    JsonString(sb, key);
                    sb.Append(keySep);
                    WriteJson(sb, value, indent, sortKeys, itemSep, keySep, depth + 1, maxChars);
                }
                Break(depth);
                sb.Append('}');
                break;
            case Namespace or Undefined or JinjaFunction or LoopInfo:
                throw new JinjaRuntimeError($"Object of type {Py.TypeName(v)} is not JSON serializable");
            default: throw new JinjaRuntimeError("a value that is not JSON serializable");
        }
    }

    static void JsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append(@"\\"); break;
                case '\n': sb.Append(@"\n"); break;
                case '\r': sb.Append(@"\r"); break;
                case '\t': sb.Append(@"\t"); break;
                case '\b': sb.Append(@"\b"); break;
                case '\f': sb.Append(@"\f"); break;
                default:
                    if (c < 0x20) sb.Append(@"\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
