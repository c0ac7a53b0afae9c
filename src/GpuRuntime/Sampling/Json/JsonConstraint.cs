using System.Text.Json;
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

    public ITokenConstraint Start(TokenTrie trie, IReadOnlyList<int> stopTokenIds) =>
        new JsonConstraint(_root, trie, stopTokenIds);

    /// <summary>Whether <paramref name="text"/> is a complete text of this grammar (for tests and checks).</summary>
    public bool Matches(ReadOnlySpan<byte> text)
    {
        var m = new Matcher(_root);
        foreach (byte b in text)
            if (!m.Feed(b)) return false;
        return m.CanFinish;
    }
}

/// <summary>
/// One sequence's grammar state. Each call first feeds the bytes of the tokens sampled since the last call, then walks
/// the vocabulary trie from that state: a token is allowed when the grammar accepts all its bytes; end tokens only once
/// the text is complete. Buffers are sized at the start: nothing is allocated per token.
/// </summary>
sealed class JsonConstraint : ITokenConstraint
{
    readonly TokenTrie _trie;
    readonly IReadOnlyList<int> _stopTokenIds;
    readonly Matcher _state;
    readonly Matcher[] _levels;
    readonly ulong[] _allowed;
    int _consumed;
    bool _broken;

    public JsonConstraint(Node root, TokenTrie trie, IReadOnlyList<int> stopTokenIds)
    {
        _trie = trie;
        _stopTokenIds = stopTokenIds;
        _state = new Matcher(root);
        _levels = new Matcher[trie.MaxTokenBytes + 1];
        for (int i = 0; i < _levels.Length; i++) _levels[i] = Matcher.Empty();
        _allowed = new ulong[(trie.VocabSize + 63) / 64];
    }

    public void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens)
    {
        for (; _consumed < tokens.Count - numPromptTokens; _consumed++) Advance(tokens[numPromptTokens + _consumed]);
        Array.Clear(_allowed);
        if (!_broken)
        {
            _levels[0].CopyFrom(_state);
            Walk(0, 0);
        }
        if (_broken || _state.CanFinish)
        {
            foreach (int t in _trie.EndTokens) Allow(t);
            foreach (int t in _stopTokenIds) Allow(t);
        }
        for (int t = 0; t < logits.Length; t++)
            if ((_allowed[t >> 6] & (1UL << t)) == 0) logits[t] = float.NegativeInfinity;
    }

    void Allow(int t)
    {
        if ((uint)t < (uint)_trie.VocabSize) _allowed[t >> 6] |= 1UL << t;
    }

    /// <summary>A sampled token moves the state on; one the mask did not allow (it cannot happen unless the logits
    /// were all -inf) leaves only the end tokens.</summary>
    void Advance(int token)
    {
        if (_broken || _trie.EndTokens.Contains(token)) return;
        foreach (byte b in _trie.Pieces[token])
            if (!_state.Feed(b))
            {
                _broken = true;
                return;
            }
    }

    void Walk(int node, int level)
    {
        var trie = _trie;
        var next = _levels[level + 1];
        for (int c = node + 1, end = trie.End[node]; c < end; c = trie.End[c])
        {
            next.CopyFrom(_levels[level]);
            if (!next.Feed(trie.Byte[c])) continue;
            for (int k = trie.TokenStart[c]; k < trie.TokenStart[c + 1]; k++) Allow(trie.Tokens[k]);
            if (trie.End[c] > c + 1) Walk(c, level + 1);
        }
    }
}
