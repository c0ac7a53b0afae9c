namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// A GBNF grammar's state: the set of parse stacks still alive, as in llama.cpp. A stack holds positions in the
/// program's code, the top one always a byte set (the next byte it takes), the ones below where to go on when a rule
/// ends. A byte moves each stack whose top takes it, and the stack is expanded through rule ends and references until
/// its tops are byte sets again; stacks that reach the end of root mean the text may finish. Stacks live packed in
/// fixed arrays and equal stacks are kept once, so a state is copied with two array copies.
/// </summary>
sealed class GbnfMatcher : IByteMatcher<GbnfMatcher>
{
    /// <summary>Caps that bound a state's size: an ambiguous grammar that keeps more stacks alive loses the extra
    /// ones, which only narrows what it allows.</summary>
    const int MaxStacks = 256, MaxDepth = 64, Capacity = 4096;

    /// <summary>Steps one byte's expansion may take: ambiguous empty alternatives, as in (""|""){30}, reach the same
    /// stacks by exponentially many paths, and a request's grammar must not hold the sampler that long.</summary>
    const int MaxExpansions = 1 << 14;

    readonly GbnfProgram _program;
    readonly int[] _data = new int[Capacity];
    // stack i is _data[_start[i].._start[i + 1]); its hash in _hash[i]
    readonly int[] _start = new int[MaxStacks + 1];
    readonly int[] _hash = new int[MaxStacks];
    readonly int[] _work = new int[MaxDepth + 1];
    int _count, _budget;
    bool _accepting;
    GbnfMatcher? _scratch;

    GbnfMatcher(GbnfProgram program) => _program = program;

    /// <summary>The state before any byte.</summary>
    public static GbnfMatcher Start(GbnfProgram program)
    {
        var m = new GbnfMatcher(program) { _budget = MaxExpansions };
        foreach (int alternative in program.Alternatives[program.Root]) m.Expand(0, alternative);
        return m;
    }

    public GbnfMatcher Blank() => new(_program);

    public bool CanFinish => _accepting;

    /// <summary>Equal states: the stack sets of a repetition such as [^"]* are equal after every character, since
    /// right recursion does not grow them.</summary>
    public bool MasksAlike(GbnfMatcher other, int maxBytes) =>
        _count == other._count && _accepting == other._accepting
        && _start.AsSpan(0, _count + 1).SequenceEqual(other._start.AsSpan(0, _count + 1))
        && _data.AsSpan(0, _start[_count]).SequenceEqual(other._data.AsSpan(0, _start[_count]));

    public void CopyFrom(GbnfMatcher other)
    {
        _count = other._count;
        _accepting = other._accepting;
        Array.Copy(other._start, _start, _count + 1);
        Array.Copy(other._hash, _hash, _count);
        Array.Copy(other._data, _data, other._start[_count]);
    }

    public bool Feed(byte b)
    {
        _scratch ??= Blank();
        _scratch.CopyFrom(this);
        return FeedFrom(_scratch, b);
    }

    public bool FeedFrom(GbnfMatcher from, byte b)
    {
        _count = 0;
        _start[0] = 0;
        _accepting = false;
        _budget = MaxExpansions;
        var code = _program.Code;
        for (int i = 0; i < from._count; i++)
        {
            int s = from._start[i], top = from._start[i + 1] - 1;
            if (!_program.Accepts(code[from._data[top]], b)) continue;
            int depth = top - s;
            Array.Copy(from._data, s, _work, 0, depth);
            Expand(depth, from._data[top] + 1);
        }
        return _count > 0 || _accepting;
    }

    /// <summary>Continues at <paramref name="pos"/> above the first <paramref name="depth"/> entries of _work: a rule
    /// end returns to the entry below, a reference continues into each of the rule's alternatives (keeping where to
    /// return unless that is an end itself, so right recursion as in x* does not grow the stack), a byte set is a top
    /// and its stack is kept.</summary>
    void Expand(int depth, int pos)
    {
        if (--_budget < 0) return;
        int op = _program.Code[pos];
        if (op == GbnfProgram.End)
        {
            if (depth == 0)
            {
                _accepting = true;
                return;
            }
            int back = _work[depth - 1];
            Expand(depth - 1, back);
            _work[depth - 1] = back;
            return;
        }
        if (op >= 0)
        {
            Keep(depth, pos);
            return;
        }
        int d = depth;
        if (_program.Code[pos + 1] != GbnfProgram.End)
        {
            if (d == MaxDepth) return;
            _work[d++] = pos + 1;
        }
        foreach (int alternative in _program.Alternatives[GbnfProgram.RuleOf(op)]) Expand(d, alternative);
    }

    void Keep(int depth, int top)
    {
        _work[depth] = top;
        int length = depth + 1, hash = length;
        for (int i = 0; i < length; i++) hash = hash * 31 + _work[i];
        int used = _start[_count];
        if (_count == MaxStacks || used + length > Capacity) return;
        var work = _work.AsSpan(0, length);
        for (int i = 0; i < _count; i++)
            if (_hash[i] == hash && _data.AsSpan(_start[i], _start[i + 1] - _start[i]).SequenceEqual(work)) return;
        work.CopyTo(_data.AsSpan(used));
        _hash[_count] = hash;
        _start[++_count] = used + length;
    }
}
