using Weft.GpuRuntime.Sampling.Grammar;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>
/// A JSON grammar's matcher that also takes JSON's insignificant whitespace between tokens, for the call a model
/// starts by itself under a lazy grammar: it writes its calls as it learned them (Qwen's "&lt;tool_call&gt;\n{"name":
/// ...}"), and a grammar that allowed only compact JSON would push it off its own text. Whitespace may follow "{",
/// "[", "," and ":" (or open the text); after a value it may only come before what can follow a value, so that it
/// never splits a number or a literal. Each run is bounded as llama.cpp's JSON grammars bound theirs (one space, or
/// one or two newlines and an indentation), and none follows the complete text, so that a model cannot spend its
/// tokens on whitespace.
/// </summary>
sealed class SpacedMatcher(Matcher inner) : IByteMatcher<SpacedMatcher>
{
    /// <summary>The deepest indentation after a newline, in spaces or tabs.</summary>
    public const int MaxIndent = 20;

    readonly Matcher _inner = inner;
    bool _inString, _escape;
    // the last byte outside whitespace, and the run of whitespace since: a space, or newlines and an indentation
    byte _last;
    bool _spaced;
    int _newlines, _indent;

    public SpacedMatcher Blank() => new(_inner.Blank());

    public void CopyFrom(SpacedMatcher other)
    {
        _inner.CopyFrom(other._inner);
        (_inString, _escape, _last) = (other._inString, other._escape, other._last);
        (_spaced, _newlines, _indent) = (other._spaced, other._newlines, other._indent);
    }

    public bool CanFinish => _inner.CanFinish;

    public bool MasksAlike(SpacedMatcher other, int maxBytes) =>
        (_inString, _escape, _last, _spaced, _newlines, _indent)
            == (other._inString, other._escape, other._last, other._spaced, other._newlines, other._indent)
        && _inner.MasksAlike(other._inner, maxBytes);

    public bool FeedFrom(SpacedMatcher from, byte b)
    {
        CopyFrom(from);
        return Feed(b);
    }

    public bool Feed(byte b)
    {
        if (_inString)
        {
            if (_escape) _escape = false;
            else if (b == '\\') _escape = true;
            else if (b == '"') _inString = false;
            return _inner.Feed(b);
        }
        bool inRun = _spaced || _newlines > 0;
        if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
        {
            if (_inner.Complete || _spaced) return false;
            if (b == '\n' && _indent == 0 && _newlines < 2) _newlines++;
            else if (b == ' ' && !inRun) _spaced = true;
            else if (b is (byte)' ' or (byte)'\t' && _newlines > 0 && _indent < MaxIndent) _indent++;
            else return false;
            return true;
        }
        if (inRun && _last is not (0 or (byte)'{' or (byte)'[' or (byte)',' or (byte)':')
            && b is not ((byte)',' or (byte)':' or (byte)'}' or (byte)']'))
            return false;
        (_spaced, _newlines, _indent, _last, _inString) = (false, 0, 0, b, b == '"');
        return _inner.Feed(b);
    }
}
