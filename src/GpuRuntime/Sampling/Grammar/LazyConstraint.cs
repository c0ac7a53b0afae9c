using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Weft.GpuRuntime.Sampling.Json;

namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// What wakes a lazy constraint (llama.cpp's grammar triggers). A marker may appear anywhere in the reply and the
/// grammar holds what follows it (&lt;tool_call&gt;); an opening counts only at the reply's start, after whitespace,
/// and is itself the grammar's first text (Llama 3's leading {"name"). Marker tokens are control tokens that stand for
/// a marker but write no text (Mistral's [TOOL_CALLS]).
/// </summary>
public sealed record LazyTriggers(IReadOnlyList<string> Markers, IReadOnlyList<string> Openings,
    IReadOnlySet<int> MarkerTokens);

/// <summary>
/// A grammar that holds only the part of a reply from a trigger on, as a model's tool call in auto mode: the text
/// before it is free, and from the token that completes a trigger on the tokens are masked by the grammar (a
/// <see cref="MaskConstraint{TMatcher}"/>, which computes each mask while the forward pass runs) until it completes
/// and only end tokens are left. The part of the triggering token after a marker is the grammar's first text.
/// </summary>
sealed class LazyConstraint<TMatcher>(TMatcher start, TokenTrie trie, IReadOnlyList<int> stopTokenIds,
    LazyTriggers triggers, TagList tags) : IBitmaskConstraint
    where TMatcher : class, IByteMatcher<TMatcher>
{
    readonly byte[][] _markers = [.. triggers.Markers.Select(Encoding.UTF8.GetBytes)];
    readonly byte[][] _openings = [.. triggers.Openings.Select(Encoding.UTF8.GetBytes)];
    // the reply's bytes so far, until a trigger
    readonly List<byte> _text = [];
    // generated tokens looked at for a trigger
    int _scanned;
    // the sequence's length (prompt and generated) at the token that woke the grammar
    int _from;
    MaskConstraint<TMatcher>? _grammar;

    public void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens) =>
        Woken(tokens, numPromptTokens)?.Apply(logits, tokens, _from);

    public void Mask(IReadOnlyList<int> tokens, int numPromptTokens, Span<ulong> allowed)
    {
        if (Woken(tokens, numPromptTokens) is { } grammar) grammar.Mask(tokens, _from, allowed);
        else allowed.Fill(ulong.MaxValue);
    }

    /// <summary>The grammar once a trigger among <paramref name="tokens"/> has woken it; null while the text is
    /// free.</summary>
    MaskConstraint<TMatcher>? Woken(IReadOnlyList<int> tokens, int numPromptTokens)
    {
        int generated = tokens.Count - numPromptTokens;
        if (generated < _scanned)
        {
            // fewer tokens than were looked at: the sequence starts over (a preemption that replays it)
            _text.Clear();
            _scanned = 0;
            _grammar = null;
        }
        for (; _grammar is null && _scanned < generated; _scanned++)
            Scan(tokens[numPromptTokens + _scanned], numPromptTokens + _scanned + 1);
        return _grammar;
    }

    /// <summary>Once the grammar is awake it computes the next mask now; before, the next <see cref="Apply"/> looks
    /// at the token (the first mask after a trigger is computed there).</summary>
    public void Accepted(int token) => _grammar?.Accepted(token);

    void Scan(int token, int length)
    {
        if (triggers.MarkerTokens.Contains(token))
        {
            Wake(length, []);
            return;
        }
        int before = _text.Count;
        _text.AddRange(trie.Pieces[token]);
        var text = CollectionsMarshal.AsSpan(_text);
        int from = -1;
        foreach (var m in _markers)
        {
            // a marker that ends in this token starts at most its length before the token's bytes
            int look = Math.Max(0, before - m.Length + 1);
            int at = text[look..].IndexOf(m);
            if (at >= 0 && (from < 0 || look + at + m.Length < from)) from = look + at + m.Length;
        }
        var opened = text.TrimStart(" \t\r\n"u8);
        int start = text.Length - opened.Length;
        foreach (var o in _openings)
            if (opened.StartsWith(o) && (from < 0 || start < from)) from = start;
        if (from >= 0) Wake(length, text[from..]);
    }

    void Wake(int length, ReadOnlySpan<byte> prefix)
    {
        _from = length;
        _grammar = new MaskConstraint<TMatcher>(start, trie, stopTokenIds, tags, prefix);
    }
}
