using System.Runtime.CompilerServices;
using System.Text;

namespace Weft.Models.Chat.Jinja;

/// <summary>
/// Walks the parsed template. The sandbox is structural: the only values are None, booleans, integers, floats,
/// strings, lists, tuples, dicts, namespaces and the functions below, so a template reaches nothing of the host;
/// lists and dicts are immutable as in transformers' ImmutableSandboxedEnvironment. Time and memory are bounded by a
/// step budget (every node evaluated, every loop iteration), a cap on the text any output or string may reach, and a
/// macro call depth.
/// </summary>
sealed partial class Interpreter(string source, JinjaLimits limits, DateTime now)
{
    enum Flow { Normal, Break, Continue }

    sealed class Scope(Scope? parent)
    {
        readonly Dictionary<string, object?> vars = [];
        readonly Scope? parent = parent;

        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.parent)
                if (s.vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }

        public void Set(string name, object? value) => vars[name] = value;
    }

    long steps;
    int depth;

    public string Render(List<Node> template, IReadOnlyDictionary<string, object?> variables)
    {
        var root = new Scope(null);
        foreach (var (name, value) in variables) root.Set(name, value);
        var output = new StringBuilder();
        if (Exec(template, new Scope(root), output) != Flow.Normal)
            throw new JinjaException("break or continue outside a loop", 1, 1);
        return output.ToString();
    }

    void Step()
    {
        if (++steps > limits.MaxSteps)
            throw new JinjaRuntimeError($"the template ran past its budget of {limits.MaxSteps} steps");
    }

    string Checked(string s) => s.Length <= limits.MaxOutputChars ? s
        : throw new JinjaRuntimeError($"the text grew past {limits.MaxOutputChars} characters");

    void Write(StringBuilder output, string text)
    {
        output.Append(text);
        if (output.Length > limits.MaxOutputChars)
            throw new JinjaRuntimeError($"the output grew past {limits.MaxOutputChars} characters");
    }

    JinjaException At(int position, string reason) => Lexer.Error(source, position, reason);

    Flow Exec(List<Node> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            Step();
            Flow flow;
            try
            {
                flow = ExecOne(node, scope, output);
            }
            catch (JinjaRuntimeError e)
            {
                throw At(node.Position, e.Message);
            }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    Flow ExecOne(Node node, Scope scope, StringBuilder output)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        switch (node)
        {
            case TextNode t: Write(output, t.Text); return Flow.Normal;
            case OutputNode o: Write(output, Py.Str(Eval(o.Value, scope))); return Flow.Normal;
            case IfNode i:
                foreach (var (test, body) in i.Branches)
                    if (Py.Truthy(Eval(test, scope))) return Exec(body, scope, output);
                return i.Else is null ? Flow.Normal : Exec(i.Else, scope, output);
            case ForNode f: ExecFor(f, scope, output); return Flow.Normal;
            case SetNode s:
                Assign(s, scope, Eval(s.Value, scope));
                return Flow.Normal;
            case SetBlockNode b:
                {
                    var captured = new StringBuilder();
                    Exec(b.Body, scope, captured);
                    object? value = captured.ToString();
                    foreach (var f in b.Filters) value = ApplyFilter(f, value, scope);
                    scope.Set(b.Target, value);
                    return Flow.Normal;
                }
            case MacroNode m:
                scope.Set(m.Name, new JinjaFunction(a => CallMacro(m.Name, m.Parameters, m.Body, scope, a)));
                return Flow.Normal;
            case CallBlockNode c:
                {
                    var caller = new JinjaFunction(a => CallMacro("caller", c.Parameters, c.Body, scope, a));
                    var callee = Eval(c.Call.Callee, scope);
                    var args = EvalArguments(c.Call.Args, c.Call.Kwargs, scope);
                    args.Named["caller"] = caller;
                    Write(output, Py.Str(Invoke(callee, args, c.Call.Callee)));
                    return Flow.Normal;
                }
            case FilterBlockNode fb:
                {
                    var captured = new StringBuilder();
                    var flow = Exec(fb.Body, scope, captured);
                    object? value = captured.ToString();
                    foreach (var f in fb.Filters) value = ApplyFilter(f, value, scope);
                    Write(output, Py.Str(value));
                    return flow;
                }
            case BreakNode: return Flow.Break;
            case ContinueNode: return Flow.Continue;
            default: throw new JinjaRuntimeError($"unexpected node {node.GetType().Name}");
        }
    }

    static void Assign(SetNode s, Scope scope, object? value)
    {
        if (s.Attribute is not null)
        {
            if (!scope.TryGet(s.Targets[0], out var target) || target is not Namespace ns)
                throw new JinjaRuntimeError($"cannot assign attribute on '{s.Targets[0]}', which is not a namespace");
            ns.Values[s.Attribute] = value;
            return;
        }
        Bind(s.Targets, value, scope);
    }

    static void Bind(List<string> targets, object? value, Scope scope)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }
        var items = Py.Iterate(value);
        if (items.Count != targets.Count)
            throw new JinjaRuntimeError($"cannot unpack {items.Count} values into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], items[i]);
    }

    void ExecFor(ForNode f, Scope scope, StringBuilder output)
    {
        var items = Py.Iterate(Eval(f.Iterable, scope));
        var loopScope = new Scope(scope);
        if (f.Filter is not null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                Step();
                Bind(f.Targets, item, loopScope);
                if (Py.Truthy(Eval(f.Filter, loopScope))) kept.Add(item);
            }
            items = kept;
        }
        var loop = new LoopInfo(items);
        loopScope.Set("loop", loop);
        for (int i = 0; i < items.Count; i++)
        {
            Step();
            loop.Index0 = i;
            Bind(f.Targets, items[i], loopScope);
            if (Exec(f.Body, loopScope, output) == Flow.Break) break;
        }
        if (items.Count == 0 && f.Else is not null) Exec(f.Else, new Scope(scope), output);
    }

    string CallMacro(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, Scope defining,
        Arguments args)
    {
        if (++depth > limits.MaxCallDepth)
            throw new JinjaRuntimeError($"macro calls nested deeper than {limits.MaxCallDepth}");
        try
        {
            if (args.Positional.Count > parameters.Count)
                throw new JinjaRuntimeError($"macro '{name}' takes at most {parameters.Count} argument(s)");
            var scope = new Scope(defining);
            for (int i = 0; i < parameters.Count; i++)
            {
                var (p, fallback) = parameters[i];
                object? value = i < args.Positional.Count ? args.Positional[i]
                    : args.Named.TryGetValue(p, out var named) ? named
                    : fallback is not null ? Eval(fallback, scope) : new Undefined(p);
                scope.Set(p, value);
            }
            foreach (var key in args.Named.Keys)
            {
                if (key == "caller") scope.Set("caller", args.Named[key]);
                else if (!parameters.Exists(p => p.Name == key))
                    throw new JinjaRuntimeError($"macro '{name}' takes no keyword argument '{key}'");
            }
            var output = new StringBuilder();
            Exec(body, scope, output);
            return output.ToString();
        }
        finally
        {
            depth--;
        }
    }

    // Expressions

    object? Eval(Expr e, Scope scope)
    {
        Step();
        // deep nesting (in the template or through macros) fails as an error, not as a stack overflow
        RuntimeHelpers.EnsureSufficientExecutionStack();
        try
        {
            return EvalOne(e, scope);
        }
        catch (JinjaRuntimeError x)
        {
            throw At(e.Position, x.Message);
        }
        catch (JinjaRaise x)
        {
            var (line, column) = Lexer.Locate(source, e.Position);
            throw new JinjaRaisedException(x.Message, line, column);
        }
        catch (Exception x) when (x is not JinjaException)
        {
            // arithmetic overflow and the like: still the template's error, with its position
            throw At(e.Position, x.Message);
        }
    }

    object? EvalOne(Expr e, Scope scope)
    {
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var v) ? v : Global(n.Name) ?? new Undefined(n.Name);
            case ListExpr l:
                {
                    var items = l.Items.Select(i => Eval(i, scope)).ToList();
                    return l.IsTuple ? items.ToArray() : items;
                }
            case DictExpr d:
                {
                    var dict = new Dictionary<string, object?>();
                    foreach (var (k, val) in d.Items)
                        dict[Eval(k, scope) is string key ? key
                            : throw new JinjaRuntimeError("only string keys are supported in dict literals")] =
                            Eval(val, scope);
                    return dict;
                }
            case AttributeExpr a: return GetAttribute(Eval(a.Target, scope), a.Name);
            case ItemExpr i: return GetItem(Eval(i.Target, scope), Eval(i.Key, scope));
            case SliceExpr s:
                return Slice(Eval(s.Target, scope), s.Start is null ? null : Eval(s.Start, scope),
                    s.Stop is null ? null : Eval(s.Stop, scope), s.Step is null ? null : Eval(s.Step, scope));
            case CallExpr c: return Invoke(Eval(c.Callee, scope), EvalArguments(c.Args, c.Kwargs, scope), c.Callee);
            case FilterExpr f: return ApplyFilter(f, Eval(f.Target!, scope), scope);
            case TestExpr t:
                {
                    bool result = RunTest(t.Name, Eval(t.Target, scope), t.Args.Select(a => Eval(a, scope)).ToList());
                    return result != t.Negated;
                }
            case BinaryExpr { Op: "and" } b:
                {
                    var left = Eval(b.Left, scope);
                    return Py.Truthy(left) ? Eval(b.Right, scope) : left;
                }
            case BinaryExpr { Op: "or" } b:
                {
                    var left = Eval(b.Left, scope);
                    return Py.Truthy(left) ? left : Eval(b.Right, scope);
                }
            case BinaryExpr b: return Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope));
            case UnaryExpr u:
                {
                    var operand = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        "not" => !Py.Truthy(operand),
                        "-" => operand is double d ? -d : (object)checked(-Py.ToLong(Defined(operand))),
                        _ => operand is double or long ? operand : Py.ToLong(Defined(operand)),
                    };
                }
            case CompareExpr c:
                {
                    var left = Eval(c.First, scope);
                    foreach (var (op, rightExpr) in c.Rest)
                    {
                        var right = Eval(rightExpr, scope);
                        if (!Compare(op, left, right)) return false;
                        left = right;
                    }
                    return true;
                }
            case ConditionalExpr c:
                return Py.Truthy(Eval(c.Test, scope)) ? Eval(c.Then, scope)
                    : c.Else is null ? new Undefined("the else of an inline if") : Eval(c.Else, scope);
            default: throw new JinjaRuntimeError($"unexpected expression {e.GetType().Name}");
        }
    }

    Arguments EvalArguments(List<Expr> args, List<(string Name, Expr Value)> kwargs, Scope scope)
    {
        var named = new Dictionary<string, object?>();
        foreach (var (name, value) in kwargs) named[name] = Eval(value, scope);
        return new Arguments(args.Select(a => Eval(a, scope)).ToList(), named);
    }

    static object? Invoke(object? callee, Arguments args, Expr calleeExpr) => callee switch
    {
        JinjaFunction f => f(args),
        Undefined u => throw new JinjaRuntimeError($"'{u.Hint}' is undefined"),
        _ => throw new JinjaRuntimeError($"{Describe(calleeExpr)} ({Py.TypeName(callee)}) is not callable"),
    };

    static string Describe(Expr e) => e switch
    {
        NameExpr n => $"'{n.Name}'",
        AttributeExpr a => $"'{a.Name}'",
        _ => "the value",
    };

    static object? Defined(object? v) =>
        v is Undefined u ? throw new JinjaRuntimeError($"'{u.Hint}' is undefined") : v;

    object? Binary(string op, object? l, object? r)
    {
        if (op == "~") return Checked(Py.Str(l) + Py.Str(r));
        Defined(l);
        Defined(r);
        if (Py.IsNumber(l) && Py.IsNumber(r))
        {
            bool isFloat = l is double || r is double;
            if (op == "/") return Py.ToDouble(r) == 0 ? throw new JinjaRuntimeError("division by zero")
                : Py.ToDouble(l) / Py.ToDouble(r);
            if (isFloat)
            {
                double a = Py.ToDouble(l), b = Py.ToDouble(r);
                return op switch
                {
                    "+" => a + b,
                    "-" => a - b,
                    "*" => a * b,
                    "//" => b == 0 ? throw new JinjaRuntimeError("division by zero") : Math.Floor(a / b),
                    "%" => b == 0 ? throw new JinjaRuntimeError("modulo by zero") : a - b * Math.Floor(a / b),
                    "**" => Math.Pow(a, b),
                    _ => throw Unsupported(op, l, r),
                };
            }
            long x = Py.ToLong(l), y = Py.ToLong(r);
            return op switch
            {
                "+" => (object)checked(x + y),
                "-" => checked(x - y),
                "*" => checked(x * y),
                "//" => y == 0 ? throw new JinjaRuntimeError("division by zero") : FloorDiv(x, y),
                "%" => y == 0 ? throw new JinjaRuntimeError("modulo by zero") : x - y * FloorDiv(x, y),
                "**" => y >= 0 ? IntPow(x, y) : (object)Math.Pow(x, y),
                _ => throw Unsupported(op, l, r),
            };
        }
        switch (op, l, r)
        {
            case ("+", string a, string b): return Checked(a + b);
            case ("+", List<object?> a, List<object?> b): return a.Concat(b).ToList();
            case ("+", object?[] a, object?[] b): return a.Concat(b).ToArray();
            case ("*", string a, long or bool): return Checked(Repeat(a, Py.ToLong(r)));
            case ("*", long or bool, string b): return Checked(Repeat(b, Py.ToLong(l)));
            case ("*", List<object?> a, long or bool):
                {
                    long n = Py.ToLong(r);
                    if (n * a.Count > limits.MaxOutputChars) throw new JinjaRuntimeError("the list grew too long");
                    return Enumerable.Range(0, (int)Math.Max(0, n)).SelectMany(_ => a).ToList();
                }
            default: throw Unsupported(op, l, r);
        }
    }

    string Repeat(string s, long n)
    {
        if (n <= 0) return "";
        if ((double)s.Length * n > limits.MaxOutputChars)
            throw new JinjaRuntimeError($"the text grew past {limits.MaxOutputChars} characters");
        return new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();
    }

    static long FloorDiv(long x, long y)
    {
        long q = x / y;
        return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q;
    }

    static long IntPow(long x, long y)
    {
        long result = 1;
        for (long i = 0; i < y; i++) result = checked(result * x);
        return result;
    }

    static JinjaRuntimeError Unsupported(string op, object? l, object? r) =>
        new($"unsupported operand types for {op}: {Py.TypeName(l)} and {Py.TypeName(r)}");

    static bool Compare(string op, object? l, object? r) => op switch
    {
        "==" => Py.Equals(l, r),
        "!=" => !Py.Equals(l, r),
        "<" => Py.Compare(Defined(l), Defined(r)) < 0,
        "<=" => Py.Compare(Defined(l), Defined(r)) <= 0,
        ">" => Py.Compare(Defined(l), Defined(r)) > 0,
        ">=" => Py.Compare(Defined(l), Defined(r)) >= 0,
        "in" => Contains(r, l),
        _ => !Contains(r, l),
    };

    static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw new JinjaRuntimeError($"'in <string>' requires a string, not {Py.TypeName(item)}"),
        IList<object?> list => list.Any(x => Py.Equals(x, item)),
        Dictionary<string, object?> d => item is string key && d.ContainsKey(key),
        Namespace ns => item is string key && ns.Values.ContainsKey(key),
        Undefined => false,
        _ => throw new JinjaRuntimeError($"argument of type '{Py.TypeName(container)}' is not iterable"),
    };

    static object? Slice(object? target, object? start, object? stop, object? step)
    {
        long st = step is null ? 1 : Py.ToLong(step);
        if (st == 0) throw new JinjaRuntimeError("slice step cannot be zero");
        IReadOnlyList<object?> items = target switch
        {
            string s => PyString.CodePoints(s),
            IList<object?> l => l as IReadOnlyList<object?> ?? [.. l],
            Undefined u => throw new JinjaRuntimeError($"'{u.Hint}' is undefined"),
            _ => throw new JinjaRuntimeError($"{Py.TypeName(target)} cannot be sliced"),
        };
        long n = items.Count;
        long Clamp(object? v, long fallback, long low, long high)
        {
            if (v is null) return fallback;
            long i = Py.ToLong(v);
            if (i < 0) i += n;
            return Math.Clamp(i, low, high);
        }
        var result = new List<object?>();
        if (st > 0)
            for (long i = Clamp(start, 0, 0, n), end = Clamp(stop, n, 0, n); i < end; i += st)
                result.Add(items[(int)i]);
        else
            for (long i = Clamp(start, n - 1, -1, n - 1), end = Clamp(stop, -1, -1, n - 1); i > end; i += st)
                result.Add(items[(int)i]);
        return target switch
        {
            string => string.Concat(result.Cast<string>()),
            object?[] => result.ToArray(),
            _ => result,
        };
    }

    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Undefined u: throw new JinjaRuntimeError($"'{u.Hint}' is undefined");
            case Dictionary<string, object?> d when key is string k:
                return d.TryGetValue(k, out var v) ? v : AttributeOrUndefined(target, k);
            case IList<object?> list when key is long or bool:
                {
                    long i = Py.ToLong(key);
                    if (i < 0) i += list.Count;
                    return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"{Py.TypeName(target)}[{key}]");
                }
            case string s when key is long or bool:
                {
                    var chars = PyString.CodePoints(s);
                    long i = Py.ToLong(key);
                    if (i < 0) i += chars.Count;
                    return i >= 0 && i < chars.Count ? chars[(int)i] : new Undefined($"str[{key}]");
                }
            default:
                return key is string name ? AttributeOrUndefined(target, name)
                    : new Undefined($"{Py.TypeName(target)}[{Py.Repr(key)}]");
        }
    }

    static object? AttributeOrUndefined(object? target, string name) =>
        target is Dictionary<string, object?> || target is null
            ? Methods.Get(target, name) ?? (object)NoAttribute(target, name)
            : GetAttribute(target, name);

    static Undefined NoAttribute(object? target, string name) =>
        new($"'{Py.TypeName(target)} object' has no attribute '{name}'");

    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined u: throw new JinjaRuntimeError($"'{u.Hint}' is undefined");
            case Namespace ns:
                return ns.Values.TryGetValue(name, out var nv) ? nv : new Undefined($"namespace.{name}");
            case LoopInfo loop: return loop.Get(name);
        }
        if (Methods.Get(target, name) is { } method) return method;
        if (target is Dictionary<string, object?> d && d.TryGetValue(name, out var v)) return v;
        return NoAttribute(target, name);
    }

    object? Global(string name) => name switch
    {
        "raise_exception" => new JinjaFunction(a => throw new JinjaRaise(Py.Str(a.Get(0, "message")))),
        "strftime_now" => new JinjaFunction(a => Strftime.Format(now, Py.Str(a.Get(0, "format")))),
        "namespace" => new JinjaFunction(a =>
        {
            var ns = new Namespace();
            if (a.Positional.Count > 0 && a.Positional[0] is Dictionary<string, object?> initial)
                foreach (var (k, v) in initial) ns.Values[k] = v;
            foreach (var (k, v) in a.Named) ns.Values[k] = v;
            return ns;
        }),
        "range" => new JinjaFunction(Range),
        "dict" => new JinjaFunction(a => new Dictionary<string, object?>(a.Named)),
        _ => null,
    };

    object? Range(Arguments a)
    {
        var p = a.Positional.Select(Py.ToLong).ToArray();
        var (start, stop, step) = p.Length switch
        {
            1 => (0L, p[0], 1L),
            2 => (p[0], p[1], 1L),
            3 => (p[0], p[1], p[2]),
            _ => throw new JinjaRuntimeError("range takes 1 to 3 integers"),
        };
        if (step == 0) throw new JinjaRuntimeError("range() step must not be zero");
        var list = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            Step();
            list.Add(i);
        }
        return list;
    }
}
