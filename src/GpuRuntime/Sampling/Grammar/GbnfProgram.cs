namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// A parsed GBNF grammar, flattened: every alternative of every rule is a run of <see cref="Code"/> ending in
/// <see cref="End"/>. An element is a byte set (its index into <see cref="Sets"/>, 0 or more), a rule reference
/// (<see cref="Ref"/>) or the end of an alternative. Characters are UTF-8 byte sequences, so the matcher works on the
/// same bytes as the vocabulary trie.
/// </summary>
sealed class GbnfProgram(int[] code, int[][] alternatives, ulong[] sets, int root)
{
    public const int End = -1;

    public int[] Code { get; } = code;
    /// <summary>Per rule, where each of its alternatives starts in <see cref="Code"/>.</summary>
    public int[][] Alternatives { get; } = alternatives;
    /// <summary>256-bit byte sets, four words each.</summary>
    public ulong[] Sets { get; } = sets;
    public int Root { get; } = root;

    public static int Ref(int rule) => -2 - rule;

    public static int RuleOf(int element) => -2 - element;

    public bool Accepts(int set, byte b) => (Sets[set * 4 + (b >> 6)] >> (b & 63) & 1) != 0;
}

/// <summary>A GBNF grammar that does not parse, or names what it does not define; the message says where.</summary>
public sealed class GrammarException(int line, int column, string message)
    : Exception($"line {line}, column {column}: {message}")
{
    public int Line { get; } = line;
    public int Column { get; } = column;
}
