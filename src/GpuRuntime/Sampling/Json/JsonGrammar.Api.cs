using System.Diagnostics;
using System.Text.Json;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>
/// A compiled JSON grammar: a schema (response_format json_schema, forced tool calls) or any object (json_object).
/// Immutable and shared; each sequence gets its own <see cref="ITokenConstraint"/> from <see cref="Start"/>.
/// </summary>
public sealed class JsonGrammar
{
    readonly Node _root;

    JsonGrammar(Node root) => _root = root;

    /// <exception cref="SchemaException">A keyword the grammar cannot guarantee; its name is in
    /// <see cref="SchemaException.Keyword"/>.</exception>
    public static JsonGrammar FromSchema(JsonElement schema) => new(JsonSchemaCompiler.Compile(schema));

    /// <summary>Any JSON object, as response_format json_object asks.</summary>
    public static JsonGrammar AnyObject() => new(new JsonAnyObject(new JsonAny()));

    /// <param name="tags">The labels of the request's series, for its mask-time histogram.</param>
    public ITokenConstraint Start(TokenTrie trie, IReadOnlyList<int> stopTokenIds, in TagList tags = default) =>
        new MaskConstraint<Matcher>(new Matcher(_root), trie, stopTokenIds, tags);

    /// <summary>A constraint that leaves the reply free until one of <paramref name="triggers"/> and holds what
    /// follows to this grammar (a tool call a model starts in auto mode), with the whitespace between JSON tokens
    /// that a model writes in its own calls (see <see cref="SpacedMatcher"/>).</summary>
    public ITokenConstraint StartLazy(TokenTrie trie, IReadOnlyList<int> stopTokenIds, LazyTriggers triggers,
        in TagList tags = default) =>
        new LazyConstraint<SpacedMatcher>(new SpacedMatcher(new Matcher(_root)), trie, stopTokenIds, triggers, tags);

    /// <summary>Whether <paramref name="text"/> is a complete text of this grammar with whitespace between its
    /// tokens, as a lazy constraint takes it (for tests and checks).</summary>
    public bool MatchesSpaced(ReadOnlySpan<byte> text)
    {
        var m = new SpacedMatcher(new Matcher(_root));
        foreach (byte b in text)
            if (!m.Feed(b)) return false;
        return m.CanFinish;
    }

    /// <summary>Whether <paramref name="text"/> is a complete text of this grammar (for tests and checks).</summary>
    public bool Matches(ReadOnlySpan<byte> text)
    {
        var m = new Matcher(_root);
        foreach (byte b in text)
            if (!m.Feed(b)) return false;
        return m.CanFinish;
    }
}
