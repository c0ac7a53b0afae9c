using System.Globalization;
using System.Text;

namespace Weft.Models.Chat.Jinja;

/// <summary>A name or attribute that does not exist: renders as nothing, is false and iterates as empty, as Jinja2's
/// default Undefined does; anything else done with it is an error naming it.</summary>
sealed class Undefined(string hint)
{
    public string Hint { get; } = hint;
}

/// <summary>namespace(): the one mutable object a template can make, so a loop body can set what outlives
/// it.</summary>
sealed class Namespace
{
    public Dictionary<string, object?> Values { get; } = [];
}

/// <summary>Positional and keyword arguments of a call.</summary>
sealed record Arguments(List<object?> Positional, Dictionary<string, object?> Named)
{
    public object? Get(int i, string name, object? fallback = null) =>
        i < Positional.Count ? Positional[i] : Named.TryGetValue(name, out var v) ? v : fallback;
}

delegate object? JinjaFunction(Arguments args);

/// <summary>loop.* inside a for.</summary>
sealed class LoopInfo(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }

    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(items.Count - Index0),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : new Undefined("loop.previtem"),
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : new Undefined("loop.nextitem"),
        "cycle" => new JinjaFunction(a => a.Positional.Count == 0
            ? throw new JinjaRuntimeError("loop.cycle needs at least one value")
            : a.Positional[Index0 % a.Positional.Count]),
        _ => new Undefined($"loop.{name}"),
    };
}

/// <summary>Python's view of the values: truth, equality, ordering, str() and repr().</summary>
static class Py
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        object?[] t => t.Length > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new JinjaRuntimeError($"{TypeName(v)} is not a number"),
    };

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new JinjaRuntimeError($"{TypeName(v)} is not an integer"),
    };

    public static new bool Equals(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        return (a, b) switch
        {
            (null, null) => true,
            (Undefined, Undefined) => true,
            (string x, string y) => x == y,
            (IList<object?> x, IList<object?> y) when (a is object?[]) == (b is object?[]) =>
                x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
            (Dictionary<string, object?> x, Dictionary<string, object?> y) => x.Count == y.Count
                && x.All(kv => y.TryGetValue(kv.Key, out var o) && Equals(kv.Value, o)),
            _ => ReferenceEquals(a, b),
        };
    }

    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        if (a is string x && b is string y) return string.CompareOrdinal(x, y) switch { < 0 => -1, > 0 => 1, _ => 0 };
        if (a is IList<object?> l && b is IList<object?> r)
        {
            for (int i = 0; i < l.Count && i < r.Count; i++)
                if (Compare(l[i], r[i]) is var c && c != 0) return c;
            return l.Count.CompareTo(r.Count);
        }
        throw new JinjaRuntimeError($"'<' is not supported between {TypeName(a)} and {TypeName(b)}");
    }

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined u => $"undefined value '{u.Hint}'",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        Dictionary<string, object?> => "dict",
        Namespace => "namespace",
        _ => "function",
    };

    /// <summary>str(v), which {{ }} writes; undefined is empty.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    public static string Repr(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatRepr(d),
        string s => StringRepr(s),
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        object?[] t => t.Length == 1 ? $"({Repr(t[0])},)" : "(" + string.Join(", ", t.Select(Repr)) + ")",
        Dictionary<string, object?> d =>
            "{" + string.Join(", ", d.Select(kv => $"{StringRepr(kv.Key)}: {Repr(kv.Value)}")) + "}",
        Namespace => "<Namespace>",
        _ => "<function>",
    };

    // float.__repr__: the shortest text that round-trips, with ".0" on integral values and the exponent form outside
    // [1e-4, 1e16).
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        double a = Math.Abs(d);
        if (a != 0 && (a < 1e-4 || a >= 1e16))
        {
            string e = d.ToString("E16", CultureInfo.InvariantCulture);
            string r = d.ToString("R", CultureInfo.InvariantCulture);
            // "R" gives the shortest digits; rebuild them as Python's d.ddde+XX
            int exp = int.Parse(e[(e.IndexOf('E') + 1)..], CultureInfo.InvariantCulture);
            string digits = new string(r.TakeWhile(c => c != 'E').Where(char.IsAsciiDigit).ToArray()).TrimStart('0');
            digits = digits.TrimEnd('0');
            if (digits.Length == 0) digits = "0";
            string mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            return (d < 0 ? "-" : "") + mantissa + "e" + (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00",
                CultureInfo.InvariantCulture);
        }
        string s = d.ToString("R", CultureInfo.InvariantCulture);
        if (s.Contains('E'))
            s = d.ToString("F" + Math.Max(0, -(int)Math.Floor(Math.Log10(a)) + 16), CultureInfo.InvariantCulture)
                .TrimEnd('0');
        return s.Contains('.') ? (s.EndsWith('.') ? s + "0" : s) : s + ".0";
    }

    public static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append(@"\\"); break;
                case '\n': sb.Append(@"\n"); break;
                case '\r': sb.Append(@"\r"); break;
                case '\t': sb.Append(@"\t"); break;
                default:
                    if (c == quote) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c is >= '\x7f' and <= '\xa0' || c == '\xad')
                        sb.Append(@"\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append(quote).ToString();
    }

    /// <summary>What a for loop walks: list and tuple items, dict keys, string characters (as Python's
    /// code points); undefined is empty.</summary>
    public static IReadOnlyList<object?> Iterate(object? v) => v switch
    {
        Undefined => [],
        IList<object?> l => l as IReadOnlyList<object?> ?? [.. l],
        Dictionary<string, object?> d => [.. d.Keys],
        string s => PyString.CodePoints(s),
        _ => throw new JinjaRuntimeError($"'{TypeName(v)}' object is not iterable"),
    };
}
