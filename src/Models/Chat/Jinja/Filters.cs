using System.Globalization;
using System.Text;

namespace Weft.Models.Chat.Jinja;

// Jinja2's filters and tests that chat templates use, with transformers' tojson.
sealed partial class Interpreter
{
    object? ApplyFilter(FilterExpr f, object? value, Scope scope) =>
        Filter(f.Name, value, EvalArguments(f.Args, f.Kwargs, scope));

    object? Filter(string name, object? v, Arguments a)
    {
        switch (name)
        {
            case "trim": return PyString.Strip(Py.Str(v), a.Get(0, "chars") as string);
            case "tojson":
                {
                    // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None,
                    // sort_keys=False), so a positional first argument is ensure_ascii, not Jinja's indent
                    var indentArg = a.Get(1, "indent");
                    string? indent = indentArg switch
                    {
                        null => null,
                        string s => s,
                        _ => Repeat(" ", Py.ToLong(indentArg)),
                    };
                    var separators = a.Get(2, "separators") is IList<object?> { Count: 2 } seps
                        ? (Py.Str(seps[0]), Py.Str(seps[1]))
                        : indent is null ? (", ", ": ") : (",", ": ");
                    string json = PyString.ToJson(v, indent, Py.Truthy(a.Get(3, "sort_keys", false)),
                        separators.Item1, separators.Item2, limits.MaxOutputChars);
                    return Checked(Py.Truthy(a.Get(0, "ensure_ascii", false)) ? EscapeNonAscii(json) : json);
                }
            case "length" or "count":
                return v switch
                {
                    string s => (long)PyString.CodePoints(s).Count,
                    Undefined => 0L,
                    Dictionary<string, object?> dict => (long)dict.Count,
                    IList<object?> l => (long)l.Count,
                    _ => throw new JinjaRuntimeError($"object of type {Py.TypeName(v)} has no len()"),
                };
            case "items":
                return v switch
                {
                    Undefined => new List<object?>(),
                    Dictionary<string, object?> dict => dict.Select(kv => (object?)new object?[] { kv.Key, kv.Value })
                        .ToList(),
                    _ => throw new JinjaRuntimeError($"can only get item pairs from a mapping, not {Py.TypeName(v)}"),
                };
            case "join":
                {
                    var items = Py.Iterate(v);
                    if (a.Get(1, "attribute") is { } attribute)
                        items = items.Select(i => Attribute(i, attribute)).ToList();
                    return Checked(string.Join(Py.Str(a.Get(0, "d", "")), items.Select(Py.Str)));
                }
            case "upper": return Py.Str(v).ToUpperInvariant();
            case "lower": return Py.Str(v).ToLowerInvariant();
            case "capitalize": return PyString.Capitalize(Py.Str(v));
            case "title": return PyString.JinjaTitle(Py.Str(v));
            case "replace":
                return Checked(PyString.Replace(Py.Str(v), Py.Str(a.Get(0, "old")), Py.Str(a.Get(1, "new")),
                    a.Get(2, "count") is { } count ? Py.ToLong(count) : -1));
            case "default" or "d":
                return v is Undefined || Py.Truthy(a.Get(1, "boolean", false)) && !Py.Truthy(v)
                    ? a.Get(0, "default_value", "") : v;
            case "first":
                {
                    var items = Py.Iterate(v);
                    return items.Count > 0 ? items[0] : new Undefined("first of an empty sequence");
                }
            case "last":
                {
                    var items = Py.Iterate(v);
                    return items.Count > 0 ? items[^1] : new Undefined("last of an empty sequence");
                }
            case "list": return Py.Iterate(v).ToList();
            case "string": return Py.Str(v);
            case "safe": return v;
            case "int": return ToInt(v, a.Get(0, "default", 0L));
            case "float": return ToFloat(v, a.Get(0, "default", 0.0));
            case "abs": return v is double d ? Math.Abs(d) : (object)Math.Abs(Py.ToLong(v));
            case "indent":
                return Indent(Py.Str(v), a.Get(0, "width", 4L), Py.Truthy(a.Get(1, "first", false)),
                    Py.Truthy(a.Get(2, "blank", false)));
            case "selectattr" or "rejectattr":
                {
                    string attribute = Py.Str(a.Get(0, "attribute"));
                    bool keep = name == "selectattr";
                    return Py.Iterate(v).Where(i => Select(Attribute(i, attribute), a, 1) == keep).ToList();
                }
            case "select" or "reject":
                {
                    bool keep = name == "select";
                    return Py.Iterate(v).Where(i => Select(i, a, 0) == keep).ToList();
                }
            case "map":
                {
                    var items = Py.Iterate(v);
                    if (a.Named.TryGetValue("attribute", out var attr))
                    {
                        bool hasDefault = a.Named.TryGetValue("default", out var fallback);
                        return items.Select(i => Attribute(i, attr) is Undefined && hasDefault ? fallback
                            : Attribute(i, attr)).ToList();
                    }
                    if (a.Positional.Count == 0) throw new JinjaRuntimeError("map needs a filter name or attribute=");
                    var rest = new Arguments(a.Positional.Skip(1).ToList(), a.Named);
                    string filter = Py.Str(a.Positional[0]);
                    return items.Select(i => { Step(); return Filter(filter, i, rest); }).ToList();
                }
            case "reverse":
                return v is string rs ? string.Concat(PyString.CodePoints(rs).Cast<string>().Reverse())
                    : Py.Iterate(v).Reverse().ToList();
            case "unique":
                {
                    var seen = new List<object?>();
                    foreach (var i in Py.Iterate(v))
                        if (!seen.Any(s => Py.Equals(s, i))) seen.Add(i);
                    return seen;
                }
            case "sort":
                {
                    bool reverse = Py.Truthy(a.Get(0, "reverse", false));
                    var attribute = a.Get(2, "attribute");
                    var sorted = Py.Iterate(v).ToList();
                    sorted.Sort((x, y) => Py.Compare(attribute is null ? x : Attribute(x, attribute),
                        attribute is null ? y : Attribute(y, attribute)));
                    if (reverse) sorted.Reverse();
                    return sorted;
                }
            case "sum":
                {
                    var attribute = a.Get(0, "attribute");
                    object? total = a.Get(1, "start", 0L);
                    foreach (var i in Py.Iterate(v))
                        total = Binary("+", total, attribute is null ? i : Attribute(i, attribute));
                    return total;
                }
            case "wordcount": return (long)PyString.Split(Py.Str(v), null, -1).Count;
            default: throw new JinjaRuntimeError($"unknown filter '{name}'");
        }
    }

    bool Select(object? item, Arguments a, int testIndex)
    {
        Step();
        if (a.Positional.Count <= testIndex) return Py.Truthy(item);
        return RunTest(Py.Str(a.Positional[testIndex]), item, a.Positional.Skip(testIndex + 1).ToList());
    }

    // "a.b.0": attribute or item lookups in turn, as Jinja's make_attrgetter does
    static object? Attribute(object? item, object? path)
    {
        foreach (string part in Py.Str(path).Split('.'))
        {
            item = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long i)
                ? GetItem(item, i) : GetItem(item, part);
            if (item is Undefined) return item;
        }
        return item;
    }

    static object? ToInt(object? v, object? fallback)
    {
        switch (v)
        {
            case long or bool: return Py.ToLong(v);
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                string t = PyString.Strip(s, null).Replace("_", "");
                if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
                return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double f)
                    && double.IsFinite(f) ? (long)Math.Truncate(f) : fallback;
            default: return fallback;
        }
    }

    static object? ToFloat(object? v, object? fallback) => v switch
    {
        long or bool or double => Py.ToDouble(v),
        string s when double.TryParse(PyString.Strip(s, null), NumberStyles.Float, CultureInfo.InvariantCulture,
            out double f) => f,
        _ => fallback,
    };

    // Jinja2 3.1's indent: the text gets a newline so splitlines keeps a trailing empty line
    static string Indent(string s, object? width, bool first, bool blank)
    {
        string indentation = width as string ?? new string(' ', (int)Py.ToLong(width));
        var lines = PyString.SplitLines(s + "\n");
        string rv;
        if (blank) rv = string.Join("\n" + indentation, lines);
        else
        {
            var sb = new StringBuilder(lines[0]);
            if (lines.Count > 1)
                sb.Append('\n').AppendJoin('\n', lines.Skip(1).Select(l => l.Length > 0 ? indentation + l : l));
            rv = sb.ToString();
        }
        return first ? indentation + rv : rv;
    }

    static string EscapeNonAscii(string json)
    {
        var sb = new StringBuilder(json.Length);
        foreach (char c in json)
            if (c < 0x80) sb.Append(c);
            else sb.Append(@"\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
        return sb.ToString();
    }

    static bool RunTest(string name, object? v, List<object?> args)
    {
        object? Arg() => args.Count > 0 ? args[0] : throw new JinjaRuntimeError($"the test '{name}' needs a value");
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "string" => v is string,
            "mapping" => v is Dictionary<string, object?>,
            "iterable" => v is string or IList<object?> or Dictionary<string, object?> or Undefined,
            "sequence" => v is string or IList<object?> or Dictionary<string, object?>,
            "number" => v is long or double or bool,
            "integer" => v is long,
            "float" => v is double,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "callable" => v is JinjaFunction,
            "odd" => Py.ToLong(v) % 2 != 0,
            "even" => Py.ToLong(v) % 2 == 0,
            "divisibleby" => Py.ToLong(v) % Py.ToLong(Arg()) == 0,
            "lower" => v is string s && string.Equals(s, s.ToLowerInvariant(), StringComparison.Ordinal),
            "upper" => v is string s && string.Equals(s, s.ToUpperInvariant(), StringComparison.Ordinal),
            "escaped" => false,
            "eq" or "equalto" or "==" => Compare("==", v, Arg()),
            "ne" or "!=" => Compare("!=", v, Arg()),
            "lt" or "lessthan" or "<" => Compare("<", v, Arg()),
            "le" or "<=" => Compare("<=", v, Arg()),
            "gt" or "greaterthan" or ">" => Compare(">", v, Arg()),
            "ge" or ">=" => Compare(">=", v, Arg()),
            "in" => Compare("in", v, Arg()),
            "sameas" => ReferenceEquals(v, Arg()) || v is null && Arg() is null
                || v is bool b && Arg() is bool c && b == c,
            _ => throw new JinjaRuntimeError($"unknown test '{name}'"),
        };
    }
}

/// <summary>The str, dict and list methods a template may call; the mutating ones fail as the immutable sandbox
/// makes them.</summary>
static class Methods
{
    public static JinjaFunction? Get(object? target, string name) => target switch
    {
        string s => StringMethod(s, name),
        Dictionary<string, object?> d => name switch
        {
            "items" => _ => d.Select(kv => (object?)new object?[] { kv.Key, kv.Value }).ToList(),
            "keys" => _ => d.Keys.Cast<object?>().ToList(),
            "values" => _ => d.Values.ToList(),
            "get" => a => a.Get(0, "key") is string k && d.TryGetValue(k, out var v) ? v : a.Get(1, "default"),
            "update" or "pop" or "popitem" or "setdefault" or "clear" => Unsafe(name, "dict"),
            _ => null,
        },
        IList<object?> l => name switch
        {
            "index" => a => (long)IndexOf(l, a.Get(0, "value")),
            "count" => a => (long)l.Count(x => Py.Equals(x, a.Get(0, "value"))),
            "append" or "extend" or "insert" or "pop" or "remove" or "clear" or "sort" or "reverse" =>
                Unsafe(name, Py.TypeName(target)),
            _ => null,
        },
        _ => null,
    };

    static int IndexOf(IList<object?> l, object? v)
    {
        for (int i = 0; i < l.Count; i++)
            if (Py.Equals(l[i], v)) return i;
        throw new JinjaRuntimeError($"{Py.Repr(v)} is not in list");
    }

    static JinjaFunction Unsafe(string name, string type) =>
        _ => throw new JinjaRuntimeError($"access to attribute '{name}' of '{type}' object is unsafe");

    static JinjaFunction? StringMethod(string s, string name) => name switch
    {
        "strip" => a => PyString.Strip(s, a.Get(0, "chars") as string),
        "lstrip" => a => PyString.Strip(s, a.Get(0, "chars") as string, right: false),
        "rstrip" => a => PyString.Strip(s, a.Get(0, "chars") as string, left: false),
        "split" => a => PyString.Split(s, a.Get(0, "sep") as string, a.Get(1, "maxsplit") is { } m ? Py.ToLong(m) : -1),
        "startswith" => a => Affix(a.Get(0, "prefix"), p => s.StartsWith(p, StringComparison.Ordinal)),
        "endswith" => a => Affix(a.Get(0, "suffix"), p => s.EndsWith(p, StringComparison.Ordinal)),
        "upper" => _ => s.ToUpperInvariant(),
        "lower" => _ => s.ToLowerInvariant(),
        "title" => _ => PyString.Title(s),
        "capitalize" => _ => PyString.Capitalize(s),
        "replace" => a => PyString.Replace(s, Py.Str(a.Get(0, "old")), Py.Str(a.Get(1, "new")),
            a.Get(2, "count") is { } c ? Py.ToLong(c) : -1),
        "find" => a => (long)s.IndexOf(Py.Str(a.Get(0, "sub")), StringComparison.Ordinal),
        "rfind" => a => (long)s.LastIndexOf(Py.Str(a.Get(0, "sub")), StringComparison.Ordinal),
        "count" => a => (long)CountOf(s, Py.Str(a.Get(0, "sub"))),
        "join" => a => string.Join(s, Py.Iterate(a.Get(0, "iterable")).Select(i => i as string
            ?? throw new JinjaRuntimeError($"join expects strings, not {Py.TypeName(i)}"))),
        "splitlines" => _ => PyString.SplitLines(s).Cast<object?>().ToList(),
        "isdigit" => _ => s.Length > 0 && s.All(char.IsDigit),
        "isspace" => _ => s.Length > 0 && s.All(PyString.IsSpace),
        _ => null,
    };

    static bool Affix(object? arg, Func<string, bool> test) => arg switch
    {
        string p => test(p),
        IList<object?> options => options.Any(o => o is string p && test(p)),
        _ => throw new JinjaRuntimeError($"startswith/endswith take a string or a tuple, not {Py.TypeName(arg)}"),
    };

    static int CountOf(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        int n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0;
             i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }
}
