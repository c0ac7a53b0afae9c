using Weft.GpuRuntime.Sampling.Grammar;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>
/// A pushdown automaton over bytes: a stack of <see cref="Frame"/>s, the top one fed each byte. Fixed-size storage,
/// so the token walk copies states level by level without allocating.
/// </summary>
sealed class Matcher : IByteMatcher<Matcher>
{
    /// <summary>Nesting deeper than this is refused, which also ends a free-form value that keeps opening
    /// brackets.</summary>
    public const int MaxDepth = 48;

    readonly Frame[] _frames = new Frame[MaxDepth];
    int _depth;

    public Matcher(Node root)
    {
        _frames[0] = Frame.Of(root);
        _depth = 1;
    }

    Matcher() { }

    public Matcher Blank() => new();

    public void CopyFrom(Matcher other)
    {
        _depth = other._depth;
        Array.Copy(other._frames, _frames, _depth);
    }

    /// <summary>The text is complete: no frame is open, and no byte more is taken.</summary>
    public bool Complete => _depth == 0;

    /// <summary>Whether the text may end here: every open frame is complete.</summary>
    public bool CanFinish
    {
        get
        {
            for (int i = _depth - 1; i >= 0; i--)
                if (!_frames[i].Node.CanEnd(_frames[i])) return false;
            return true;
        }
    }

    /// <summary>Equal stacks, except that a string's character count may differ where no text of
    /// <paramref name="maxBytes"/> reaches its bounds: inside a long string, one mask serves every token.</summary>
    public bool MasksAlike(Matcher other, int maxBytes)
    {
        if (_depth != other._depth) return false;
        for (int i = 0; i < _depth; i++)
        {
            ref readonly var a = ref _frames[i];
            ref readonly var b = ref other._frames[i];
            if (a.Node != b.Node || a.State != b.State || a.Pending != b.Pending || a.Lo != b.Lo || a.Hi != b.Hi
                || a.Alive != b.Alive)
                return false;
            if (a.Count != b.Count && !(a.Node is JsonString s && s.CountIrrelevant(a, maxBytes)
                && s.CountIrrelevant(b, maxBytes)))
                return false;
        }
        return true;
    }

    public bool FeedFrom(Matcher from, byte b)
    {
        CopyFrom(from);
        return Feed(b);
    }

    /// <summary>Feeds one byte; false (and a state no longer to be used) when the grammar rejects it.</summary>
    public bool Feed(byte b)
    {
        while (_depth > 0)
        {
            ref var top = ref _frames[_depth - 1];
            switch (top.Node.Feed(ref top, b, out var next))
            {
                case Step.Consumed:
                    return true;
                case Step.Done:
                    _depth--;
                    return true;
                case Step.Pass:
                    _depth--;
                    continue;
                case Step.Push:
                    if (_depth == MaxDepth) return false;
                    _frames[_depth++] = Frame.Of(next!);
                    continue;
                case Step.Become:
                    top = Frame.Of(next!);
                    continue;
                case Step.ConsumedBecome:
                    top = Frame.Of(next!);
                    return true;
                default:
                    return false;
            }
        }
        return false;
    }
}
