namespace Weft.Models.Chat.Jinja;

// Every node keeps the offset of its first token in the (normalised) template text, for error locations.
abstract record Node(int Position);

sealed record TextNode(int Position, string Text) : Node(Position);
sealed record OutputNode(int Position, Expr Value) : Node(Position);
sealed record IfNode(int Position, List<(Expr Test, List<Node> Body)> Branches, List<Node>? Else) : Node(Position);
sealed record ForNode(int Position, List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body,
    List<Node>? Else) : Node(Position);
sealed record SetNode(int Position, List<string> Targets, string? Attribute, Expr Value) : Node(Position);
sealed record SetBlockNode(int Position, string Target, List<FilterExpr> Filters, List<Node> Body) : Node(Position);
sealed record MacroNode(int Position, string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body)
    : Node(Position);
sealed record CallBlockNode(int Position, CallExpr Call, List<(string Name, Expr? Default)> Parameters,
    List<Node> Body) : Node(Position);
sealed record FilterBlockNode(int Position, List<FilterExpr> Filters, List<Node> Body) : Node(Position);
sealed record BreakNode(int Position) : Node(Position);
sealed record ContinueNode(int Position) : Node(Position);

abstract record Expr(int Position) : Node(Position);

sealed record LiteralExpr(int Position, object? Value) : Expr(Position);
sealed record NameExpr(int Position, string Name) : Expr(Position);
sealed record ListExpr(int Position, List<Expr> Items, bool IsTuple) : Expr(Position);
sealed record DictExpr(int Position, List<(Expr Key, Expr Value)> Items) : Expr(Position);
sealed record AttributeExpr(int Position, Expr Target, string Name) : Expr(Position);
sealed record ItemExpr(int Position, Expr Target, Expr Key) : Expr(Position);
sealed record SliceExpr(int Position, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(Position);
sealed record CallExpr(int Position, Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs)
    : Expr(Position);
// Target is null inside a filter block or set block, where the body's text is filtered.
sealed record FilterExpr(int Position, Expr? Target, string Name, List<Expr> Args,
    List<(string Name, Expr Value)> Kwargs) : Expr(Position);
sealed record TestExpr(int Position, Expr Target, string Name, List<Expr> Args, bool Negated) : Expr(Position);
sealed record BinaryExpr(int Position, string Op, Expr Left, Expr Right) : Expr(Position);
sealed record UnaryExpr(int Position, string Op, Expr Operand) : Expr(Position);
sealed record CompareExpr(int Position, Expr First, List<(string Op, Expr Right)> Rest) : Expr(Position);
sealed record ConditionalExpr(int Position, Expr Test, Expr Then, Expr? Else) : Expr(Position);
