namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// A grammar's state over bytes, as <see cref="MaskConstraint{TMatcher}"/> walks it over the vocabulary trie: the
/// JSON schema's pushdown automaton and GBNF's set of stacks. Storage is fixed at construction, so a walk that derives
/// one state from another per trie node allocates nothing.
/// </summary>
interface IByteMatcher<TSelf> where TSelf : class, IByteMatcher<TSelf>
{
    /// <summary>A state of the same grammar, to be filled by <see cref="CopyFrom"/> or
    /// <see cref="FeedFrom"/>.</summary>
    TSelf Blank();

    void CopyFrom(TSelf other);

    /// <summary>Feeds one byte; false (and a state no longer to be used) when the grammar rejects it.</summary>
    bool Feed(byte b);

    /// <summary>Becomes <paramref name="from"/> fed <paramref name="b"/>; false when the grammar rejects it.</summary>
    bool FeedFrom(TSelf from, byte b);

    /// <summary>Whether the text may end here.</summary>
    bool CanFinish { get; }

    /// <summary>Whether every text of up to <paramref name="maxBytes"/> bytes is accepted after this state exactly
    /// when it is after <paramref name="other"/>, so that a token mask computed for one serves the other.</summary>
    bool MasksAlike(TSelf other, int maxBytes);
}
