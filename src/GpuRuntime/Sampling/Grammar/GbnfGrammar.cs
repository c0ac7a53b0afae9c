using System.Diagnostics;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// A GBNF grammar (llama.cpp's <c>grammar</c> request field), masked token by token like a JSON schema: the same
/// vocabulary trie walk, computed while the forward pass runs. Immutable and shared; each sequence gets its own
/// <see cref="ITokenConstraint"/> from <see cref="Start"/>.
/// </summary>
public sealed class GbnfGrammar
{
    readonly GbnfMatcher _start;

    GbnfGrammar(GbnfProgram program) => _start = GbnfMatcher.Start(program);

    /// <exception cref="GrammarException">The text is not GBNF, has no root, names an undefined rule or is
    /// left-recursive; the message says where.</exception>
    public static GbnfGrammar Parse(string text) => new(GbnfParser.Parse(text));

    /// <param name="tags">The labels of the request's series, for its mask-time histogram.</param>
    public ITokenConstraint Start(TokenTrie trie, IReadOnlyList<int> stopTokenIds, in TagList tags = default) =>
        new MaskConstraint<GbnfMatcher>(_start, trie, stopTokenIds, tags);

    /// <summary>Whether <paramref name="text"/> is a complete text of this grammar (for tests and checks).</summary>
    public bool Matches(ReadOnlySpan<byte> text)
    {
        var m = _start.Blank();
        m.CopyFrom(_start);
        foreach (byte b in text)
            if (!m.Feed(b)) return false;
        return m.CanFinish;
    }
}
