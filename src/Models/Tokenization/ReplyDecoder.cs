using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>
/// Turns a reply's tokens into text deltas as they are sampled. Holds back an incomplete UTF-8 character and any
/// tail that may still grow into a stop string, so a stop string is never shown, not even in part.
/// </summary>
public sealed class ReplyDecoder(Tokenizer tokenizer, IReadOnlyList<string> stop)
{
    readonly StreamingDecoder _decoder = tokenizer.CreateStreamingDecoder();
    readonly StringBuilder _pending = new();
    readonly StringBuilder _text = new();

    /// <summary>Everything released so far.</summary>
    public string Text => _text.ToString();

    /// <summary>A stop string was found; nothing more is released.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The text that can be shown now that <paramref name="token"/> was sampled.</summary>
    public string Push(int token) => Stopped ? "" : Release(_decoder.Push(token), final: false);

    /// <summary>The rest, when the reply ends for another reason than a stop string.</summary>
    public string Finish() => Stopped ? "" : Release(_decoder.Flush(), final: true);

    string Release(string piece, bool final)
    {
        _pending.Append(piece);
        var s = _pending.ToString();
        int cut = -1;
        foreach (var st in stop)
        {
            int at = st.Length == 0 ? -1 : s.IndexOf(st, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return Emit(s[..cut]);
        }
        int hold = final ? 0 : HeldBack(s);
        _pending.Remove(0, s.Length - hold);
        return Emit(s[..^hold]);
    }

    /// <summary>Length of the longest tail of <paramref name="s"/> that is a proper prefix of some stop
    /// string.</summary>
    int HeldBack(string s)
    {
        int hold = 0;
        foreach (var st in stop)
            for (int n = Math.Min(st.Length - 1, s.Length); n > hold; n--)
                if (s.AsSpan(s.Length - n).SequenceEqual(st.AsSpan(0, n))) { hold = n; break; }
        return hold;
    }

    string Emit(string text)
    {
        _text.Append(text);
        return text;
    }
}
