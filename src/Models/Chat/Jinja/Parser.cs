using System.Globalization;
using System.Runtime.CompilerServices;

namespace Weft.Models.Chat.Jinja;

/// <summary>Recursive descent over the lexer's tokens, with Jinja2's operator precedence (lowest first):
/// conditional, or, and, not, comparisons and in, + -, ~, * / // %, **, unary - +, then postfix ., [], (), filters
/// and is-tests.</summary>
sealed class Parser(string source, List<Token> tokens)
{
    int index;

    Token Current => tokens[index];
    Token Next() => tokens[index++];

    public List<Node> ParseTemplate()
    {
        var body = ParseBody(out string? end);
        if (end is not null) throw Error(Current.Position, $"unexpected '{end}'");
        return body;
    }

    // Parses nodes until a block tag whose keyword is not a statement (endfor, else, ...) or the end of the template;
    // returns that keyword (positioned after it) or null at the end.
    List<Node> ParseBody(out string? endKeyword, params string[] ends)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.End:
                    endKeyword = null;
                    return nodes;
                case TokenKind.Text:
                    index++;
                    nodes.Add(new TextNode(t.Position, t.Value));
                    break;
                case TokenKind.VariableBegin:
                    index++;
                    var e = ParseTuple();
                    Expect(TokenKind.VariableEnd, "}}");
                    nodes.Add(new OutputNode(t.Position, e));
                    break;
                default:
                    index++;
                    var keyword = Current;
                    if (keyword.Kind != TokenKind.Name) throw Error(keyword.Position, "a tag name was expected");
                    if (ends.Contains(keyword.Value) || IsEnd(keyword.Value))
                    {
                        if (!ends.Contains(keyword.Value))
                            throw Error(keyword.Position, $"unexpected '{keyword.Value}'");
                        index++;
                        endKeyword = keyword.Value;
                        return nodes;
                    }
                    index++;
                    if (ParseStatement(keyword) is { } node) nodes.Add(node);
                    break;
            }
        }
    }

    static bool IsEnd(string keyword) => keyword.StartsWith("end", StringComparison.Ordinal)
        || keyword is "else" or "elif";

    Node? ParseStatement(Token keyword)
    {
        EnsureStack();
        int at = keyword.Position;
        switch (keyword.Value)
        {
            case "if": return ParseIf(at);
            case "for": return ParseFor(at);
            case "set": return ParseSet(at);
            case "macro":
                {
                    string name = ExpectName();
                    var parameters = ParseParameters();
                    EndTag();
                    var body = ParseBody(out _, "endmacro");
                    EndTag();
                    return new MacroNode(at, name, parameters, body);
                }
            case "call":
                {
                    var parameters = Current is { Kind: TokenKind.Operator, Value: "(" } ? ParseParameters() : [];
                    var call = ParseExpression() as CallExpr ?? throw Error(at, "call needs a macro call");
                    EndTag();
                    var body = ParseBody(out _, "endcall");
                    EndTag();
                    return new CallBlockNode(at, call, parameters, body);
                }
            case "filter":
                {
                    var filters = ParseFilterChain(null);
                    EndTag();
                    var body = ParseBody(out _, "endfilter");
                    EndTag();
                    return new FilterBlockNode(at, filters, body);
                }
            case "break": EndTag(); return new BreakNode(at);
            case "continue": EndTag(); return new ContinueNode(at);
            // transformers' AssistantTracker extension: the body renders as it is
            case "generation":
                {
                    EndTag();
                    var body = ParseBody(out _, "endgeneration");
                    EndTag();
                    return new IfNode(at, [(new LiteralExpr(at, true), body)], null);
                }
            default: throw Error(at, $"unknown tag '{keyword.Value}'");
        }
    }

    IfNode ParseIf(int at)
    {
        var branches = new List<(Expr, List<Node>)>();
        List<Node>? otherwise = null;
        var test = ParseTuple();
        while (true)
        {
            EndTag();
            var body = ParseBody(out string? end, "elif", "else", "endif");
            branches.Add((test, body));
            if (end == "elif") { test = ParseTuple(); continue; }
            if (end == "else")
            {
                EndTag();
                otherwise = ParseBody(out _, "endif");
            }
            else if (end is null) throw Error(at, "the if is not closed with endif");
            EndTag();
            return new IfNode(at, branches, otherwise);
        }
    }

    ForNode ParseFor(int at)
    {
        var targets = new List<string> { ExpectName() };
        while (Accept(","))
            targets.Add(ExpectName());
        if (Next() is not { Kind: TokenKind.Name, Value: "in" }) throw Error(at, "'in' expected in for");
        var iterable = ParseTuple(withConditional: false);
        Expr? filter = null;
        if (Current is { Kind: TokenKind.Name, Value: "if" })
        {
            index++;
            filter = ParseExpression();
        }
        if (Current is { Kind: TokenKind.Name, Value: "recursive" })
            throw Error(Current.Position, "recursive loops are not supported");
        EndTag();
        var body = ParseBody(out string? end, "else", "endfor");
        List<Node>? otherwise = null;
        if (end == "else")
        {
            EndTag();
            otherwise = ParseBody(out end, "endfor");
        }
        if (end is null) throw Error(at, "the for is not closed with endfor");
        EndTag();
        return new ForNode(at, targets, iterable, filter, body, otherwise);
    }

    Node ParseSet(int at)
    {
        string first = ExpectName();
        if (Accept("."))
        {
            string attribute = ExpectName();
            Expect("=");
            var v = ParseTuple();
            EndTag();
            return new SetNode(at, [first], attribute, v);
        }
        var targets = new List<string> { first };
        while (Accept(","))
            targets.Add(ExpectName());
        if (Accept("="))
        {
            var v = ParseTuple();
            EndTag();
            return new SetNode(at, targets, null, v);
        }
        if (targets.Count != 1) throw Error(at, "a set block assigns one name");
        var filters = Current is { Kind: TokenKind.Operator, Value: "|" } ? ParseFilterChain(null) : [];
        EndTag();
        var body = ParseBody(out _, "endset");
        EndTag();
        return new SetBlockNode(at, first, filters, body);
    }

    List<(string, Expr?)> ParseParameters()
    {
        Expect("(");
        var parameters = new List<(string, Expr?)>();
        while (!Accept(")"))
        {
            if (parameters.Count > 0) Expect(",");
            if (Accept(")")) break;
            string name = ExpectName();
            parameters.Add((name, Accept("=") ? ParseExpression() : null));
        }
        return parameters;
    }

    // "{% filter a | b(1) %}" and "{% set x | a %}": the first '|' is optional for a filter block.
    List<FilterExpr> ParseFilterChain(Expr? target)
    {
        var filters = new List<FilterExpr>();
        Accept("|");
        do filters.Add(ParseFilter(target)); while (Accept("|"));
        return filters;
    }

    void EndTag() => Expect(TokenKind.BlockEnd, "%}");

    // Expressions

    Expr ParseTuple(bool withConditional = true)
    {
        int at = Current.Position;
        var first = withConditional ? ParseExpression() : ParseOr();
        if (Current is not { Kind: TokenKind.Operator, Value: "," }) return first;
        var items = new List<Expr> { first };
        while (Accept(","))
        {
            if (Current.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd || IsOp(")")) break;
            items.Add(withConditional ? ParseExpression() : ParseOr());
        }
        return new ListExpr(at, items, IsTuple: true);
    }

    Expr ParseExpression()
    {
        EnsureStack();
        var e = ParseOr();
        while (Current is { Kind: TokenKind.Name, Value: "if" })
        {
            int at = Next().Position;
            var test = ParseOr();
            Expr? otherwise = null;
            if (Current is { Kind: TokenKind.Name, Value: "else" })
            {
                index++;
                otherwise = ParseExpression();
            }
            e = new ConditionalExpr(at, test, e, otherwise);
        }
        return e;
    }

    Expr ParseOr()
    {
        var e = ParseAnd();
        while (Current is { Kind: TokenKind.Name, Value: "or" })
            e = new BinaryExpr(Next().Position, "or", e, ParseAnd());
        return e;
    }

    Expr ParseAnd()
    {
        var e = ParseNot();
        while (Current is { Kind: TokenKind.Name, Value: "and" })
            e = new BinaryExpr(Next().Position, "and", e, ParseNot());
        return e;
    }

    Expr ParseNot()
    {
        if (Current is { Kind: TokenKind.Name, Value: "not" })
        {
            int at = Next().Position;
            return new UnaryExpr(at, "not", ParseNot());
        }
        return ParseCompare();
    }

    Expr ParseCompare()
    {
        int at = Current.Position;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Current;
            if (t is { Kind: TokenKind.Operator, Value: "==" or "!=" or "<" or "<=" or ">" or ">=" })
            {
                index++;
                rest.Add((t.Value, ParseMath1()));
            }
            else if (t is { Kind: TokenKind.Name, Value: "in" })
            {
                index++;
                rest.Add(("in", ParseMath1()));
            }
            else if (t is { Kind: TokenKind.Name, Value: "not" } && tokens[index + 1] is
            { Kind: TokenKind.Name, Value: "in" })
            {
                index += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(at, first, rest);
    }

    Expr ParseMath1()
    {
        var e = ParseConcat();
        while (Current is { Kind: TokenKind.Operator, Value: "+" or "-" })
        {
            var op = Next();
            e = new BinaryExpr(op.Position, op.Value, e, ParseConcat());
        }
        return e;
    }

    Expr ParseConcat()
    {
        var e = ParseMath2();
        while (Current is { Kind: TokenKind.Operator, Value: "~" })
            e = new BinaryExpr(Next().Position, "~", e, ParseMath2());
        return e;
    }

    Expr ParseMath2()
    {
        var e = ParsePow();
        while (Current is { Kind: TokenKind.Operator, Value: "*" or "/" or "//" or "%" })
        {
            var op = Next();
            e = new BinaryExpr(op.Position, op.Value, e, ParsePow());
        }
        return e;
    }

    Expr ParsePow()
    {
        var e = ParseUnary();
        while (Current is { Kind: TokenKind.Operator, Value: "**" })
            e = new BinaryExpr(Next().Position, "**", e, ParseUnary());
        return e;
    }

    Expr ParseUnary(bool withFilter = true)
    {
        EnsureStack();
        Expr e;
        if (Current is { Kind: TokenKind.Operator, Value: "-" or "+" })
        {
            var op = Next();
            e = new UnaryExpr(op.Position, op.Value, ParseUnary(withFilter: false));
        }
        else e = ParsePrimary();
        e = ParsePostfix(e);
        return withFilter ? ParseFilterAndTests(e) : e;
    }

    Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(t.Position, true),
                    "false" or "False" => new LiteralExpr(t.Position, false),
                    "none" or "None" => new LiteralExpr(t.Position, null),
                    _ => new NameExpr(t.Position, t.Value),
                };
            case TokenKind.String:
                {
                    string s = t.Value;
                    while (Current.Kind == TokenKind.String) s += Next().Value;
                    return new LiteralExpr(t.Position, s);
                }
            case TokenKind.Integer:
                return new LiteralExpr(t.Position, long.TryParse(t.Value, CultureInfo.InvariantCulture, out long l)
                    ? l : throw Error(t.Position, "an integer too large"));
            case TokenKind.Float:
                return new LiteralExpr(t.Position, double.Parse(t.Value, CultureInfo.InvariantCulture));
            case TokenKind.Operator when t.Value == "(":
                {
                    if (Accept(")")) return new ListExpr(t.Position, [], IsTuple: true);
                    var e = ParseTuple();
                    Expect(")");
                    return e;
                }
            case TokenKind.Operator when t.Value == "[":
                {
                    var items = new List<Expr>();
                    while (!Accept("]"))
                    {
                        if (items.Count > 0) Expect(",");
                        if (Accept("]")) break;
                        items.Add(ParseExpression());
                    }
                    return new ListExpr(t.Position, items, IsTuple: false);
                }
            case TokenKind.Operator when t.Value == "{":
                {
                    var items = new List<(Expr, Expr)>();
                    while (!Accept("}"))
                    {
                        if (items.Count > 0) Expect(",");
                        if (Accept("}")) break;
                        var key = ParseExpression();
                        Expect(":");
                        items.Add((key, ParseExpression()));
                    }
                    return new DictExpr(t.Position, items);
                }
            default:
                throw Error(t.Position, t.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.End
                    ? "an expression was expected" : $"unexpected '{t.Value}'");
        }
    }

    Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            var t = Current;
            if (t is { Kind: TokenKind.Operator, Value: "." })
            {
                index++;
                var name = Next();
                e = name.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(t.Position, e, name.Value),
                    TokenKind.Integer => new ItemExpr(t.Position, e,
                        new LiteralExpr(name.Position, long.Parse(name.Value, CultureInfo.InvariantCulture))),
                    _ => throw Error(name.Position, "an attribute name was expected after '.'"),
                };
            }
            else if (t is { Kind: TokenKind.Operator, Value: "[" })
            {
                index++;
                e = ParseSubscript(t.Position, e);
            }
            else if (t is { Kind: TokenKind.Operator, Value: "(" })
            {
                index++;
                var (args, kwargs) = ParseArguments();
                // a failing call points at what was called
                e = new CallExpr(e.Position, e, args, kwargs);
            }
            else return e;
        }
    }

    Expr ParseSubscript(int at, Expr target)
    {
        Expr? start = null, stop = null, step = null;
        if (!IsOp(":")) start = ParseExpression();
        if (!Accept(":"))
        {
            Expect("]");
            return new ItemExpr(at, target, start!);
        }
        if (!IsOp(":") && !IsOp("]")) stop = ParseExpression();
        if (Accept(":") && !IsOp("]")) step = ParseExpression();
        Expect("]");
        return new SliceExpr(at, target, start, stop, step);
    }

    // after "(": positional arguments, then name=value ones, up to ")"
    (List<Expr>, List<(string, Expr)>) ParseArguments()
    {
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!Accept(")"))
        {
            if (args.Count + kwargs.Count > 0) Expect(",");
            if (Accept(")")) break;
            if (Current.Kind == TokenKind.Name && tokens[index + 1] is { Kind: TokenKind.Operator, Value: "=" })
            {
                string name = Next().Value;
                index++;
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0) throw Error(Current.Position, "a positional argument after a keyword one");
                args.Add(ParseExpression());
            }
        }
        return (args, kwargs);
    }

    Expr ParseFilterAndTests(Expr e)
    {
        while (true)
        {
            if (IsOp("|"))
            {
                index++;
                e = ParsePostfix(ParseFilter(e));
            }
            else if (Current is { Kind: TokenKind.Name, Value: "is" })
            {
                int at = Next().Position;
                bool negated = false;
                if (Current is { Kind: TokenKind.Name, Value: "not" })
                {
                    index++;
                    negated = true;
                }
                string name = ExpectName();
                // "is divisibleby(3)", "is sameas false", "is none": one bare argument may follow
                var args = new List<Expr>();
                if (IsOp("("))
                {
                    index++;
                    args = ParseArguments().Item1;
                }
                else if (Current.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || Current is
                         {
                             Kind: TokenKind.Name, Value: not ("else" or "or" or "and" or "if" or "in"
                             or "is" or "not")
                         }
                         || IsOp("[") || IsOp("{"))
                    args.Add(ParsePostfix(ParsePrimary()));
                e = new TestExpr(at, e, name, args, negated);
            }
            else return e;
        }
    }

    FilterExpr ParseFilter(Expr? target)
    {
        int at = Current.Position;
        string name = ExpectName();
        if (!IsOp("(")) return new FilterExpr(at, target, name, [], []);
        index++;
        var (args, kwargs) = ParseArguments();
        return new FilterExpr(at, target, name, args, kwargs);
    }

    // a template nested deeper than the stack allows is a parse error, not a stack overflow
    void EnsureStack()
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Error(Current.Position, "the template nests too deeply");
    }

    bool IsOp(string op) => Current.Kind == TokenKind.Operator && Current.Value == op;

    bool Accept(string op)
    {
        if (!IsOp(op)) return false;
        index++;
        return true;
    }

    void Expect(string op)
    {
        if (!Accept(op)) throw Error(Current.Position, $"'{op}' was expected");
    }

    void Expect(TokenKind kind, string text)
    {
        if (Current.Kind != kind)
            throw Error(Current.Position, $"'{text}' was expected" +
                (Current.Kind == TokenKind.End ? "" : $", not '{Describe(Current)}'"));
        index++;
    }

    static string Describe(Token t) => t.Kind switch
    {
        TokenKind.VariableEnd => "}}",
        TokenKind.BlockEnd => "%}",
        TokenKind.Text => "text",
        _ => t.Value,
    };

    string ExpectName()
    {
        var t = Next();
        return t.Kind == TokenKind.Name ? t.Value : throw Error(t.Position, "a name was expected");
    }

    JinjaException Error(int position, string reason) => Lexer.Error(source, position, reason);
}
