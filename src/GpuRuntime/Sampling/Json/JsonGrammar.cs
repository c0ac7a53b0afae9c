using System.Runtime.InteropServices;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>What a frame did with a byte.</summary>
enum Step
{
    /// <summary>Consumed; the frame stays.</summary>
    Consumed,
    /// <summary>Consumed, and the frame is complete: pop it.</summary>
    Done,
    /// <summary>Not consumed, the frame is complete without it: pop it and give the byte to the frame below.</summary>
    Pass,
    /// <summary>Not consumed: push <c>next</c> and give it the byte.</summary>
    Push,
    /// <summary>Not consumed: replace the frame with <c>next</c> and give it the byte (a tail call).</summary>
    Become,
    /// <summary>Consumed: replace the frame with <c>next</c>, which starts at the following byte.</summary>
    ConsumedBecome,
    Reject,
}

/// <summary>One node's progress on the matcher's stack. Plain data, so a state is copied by copying frames.</summary>
[StructLayout(LayoutKind.Auto)]
struct Frame
{
    public Node Node;
    public int State, Count, Pending, Lo, Hi;
    public ulong Alive;

    public static Frame Of(Node node) => new() { Node = node, Lo = 0x80, Hi = 0xBF };
}

/// <summary>A piece of the grammar. Nodes are immutable and shared by every sequence of a schema.</summary>
abstract class Node
{
    public abstract Step Feed(ref Frame f, byte b, out Node? next);

    /// <summary>The frame may end here (no byte more is needed).</summary>
    public virtual bool CanEnd(in Frame f) => false;

    /// <summary>Whether a fresh frame of this node accepts <paramref name="b"/> first.</summary>
    public abstract bool CanStart(byte b);
}

/// <summary>Fixed text.</summary>
sealed class Literal(byte[] text) : Node
{
    public byte[] Text { get; } = text;

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        if (b != Text[f.State]) return Step.Reject;
        return ++f.State == Text.Length ? Step.Done : Step.Consumed;
    }

    public override bool CanStart(byte b) => Text[0] == b;
}

/// <summary>Parts one after another; the last one replaces the sequence, so chains do not grow the stack.</summary>
sealed class Sequence(Node[] parts) : Node
{
    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = parts[f.State++];
        return f.State == parts.Length ? Step.Become : Step.Push;
    }

    public override bool CanStart(byte b) => parts[0].CanStart(b);
}

/// <summary>
/// One of several texts, each followed by its own continuation (or none): enum values, a property's key with its
/// value, an object's closing brace. Up to 64 alternatives, tracked as a bit set of those still matching; when one text
/// is a prefix of another, the longer one wins while the bytes match it.
/// </summary>
sealed class Choice : Node
{
    readonly byte[][] _texts;
    readonly Node?[] _then;
    readonly ulong _all;

    public Choice(byte[][] texts, Node?[] then)
    {
        if (texts.Length is 0 or > 64) throw new SchemaException("enum", "an enum takes 1 to 64 values");
        _texts = texts;
        _then = then;
        _all = texts.Length == 64 ? ulong.MaxValue : (1UL << texts.Length) - 1;
    }

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        ulong alive = f.State == 0 ? _all : f.Alive, matching = 0;
        int complete = -1;
        for (ulong m = alive; m != 0; m &= m - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(m);
            var t = _texts[i];
            if (t.Length > f.State && t[f.State] == b) matching |= 1UL << i;
            else if (t.Length == f.State) complete = i;
        }
        if (matching == 0)
        {
            if (complete < 0) return Step.Reject;
            next = _then[complete];
            return next is null ? Step.Pass : Step.Become;
        }
        f.State++;
        f.Alive = matching;
        if (System.Numerics.BitOperations.PopCount(matching) == 1)
        {
            int only = System.Numerics.BitOperations.TrailingZeroCount(matching);
            if (_texts[only].Length == f.State)
            {
                next = _then[only];
                return next is null ? Step.Done : Step.ConsumedBecome;
            }
        }
        return Step.Consumed;
    }

    public override bool CanEnd(in Frame f)
    {
        for (ulong m = f.Alive; m != 0; m &= m - 1)
        {
            int i = System.Numerics.BitOperations.TrailingZeroCount(m);
            if (_texts[i].Length == f.State && _then[i] is null) return true;
        }
        return false;
    }

    public override bool CanStart(byte b)
    {
        foreach (var t in _texts)
            if (t[0] == b) return true;
        return false;
    }
}

/// <summary>The first alternative that accepts the first byte (anyOf and type lists of different JSON types, whose
/// first bytes differ).</summary>
sealed class Switch(Node[] alternatives) : Node
{
    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        foreach (var a in alternatives)
            if (a.CanStart(b))
            {
                next = a;
                return Step.Become;
            }
        next = null;
        return Step.Reject;
    }

    public override bool CanStart(byte b)
    {
        foreach (var a in alternatives)
            if (a.CanStart(b)) return true;
        return false;
    }
}

/// <summary>
/// A JSON string of <c>min</c> to <c>max</c> characters (a character: a code point or an escape), as valid UTF-8 that
/// System.Text.Json reads back: no control characters, no overlong forms, no surrogates, and no \u escape of a
/// surrogate (\uD...), which could be half a pair.
/// </summary>
sealed class JsonString(int min, int max) : Node
{
    const int Open = 0, Body = 1, Escape = 2, Continuation = 3, Hex = 4;

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        switch (f.State)
        {
            case Open:
                if (b != '"') return Step.Reject;
                f.State = Body;
                return Step.Consumed;
            case Body:
                if (b == '"') return f.Count >= min ? Step.Done : Step.Reject;
                if (f.Count >= max || b < 0x20) return Step.Reject;
                f.Count++;
                if (b == '\\') f.State = Escape;
                else if (b >= 0x80) return Lead(ref f, b);
                return Step.Consumed;
            case Escape:
                if (b == 'u')
                {
                    f.State = Hex;
                    f.Pending = 4;
                    return Step.Consumed;
                }
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r'
                    or (byte)'t')
                {
                    f.State = Body;
                    return Step.Consumed;
                }
                return Step.Reject;
            case Continuation:
                if (b < f.Lo || b > f.Hi) return Step.Reject;
                (f.Lo, f.Hi) = (0x80, 0xBF);
                if (--f.Pending == 0) f.State = Body;
                return Step.Consumed;
            default:
                bool hex = b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f'
                    or >= (byte)'A' and <= (byte)'F';
                if (!hex || (f.Pending == 4 && b is (byte)'d' or (byte)'D')) return Step.Reject;
                if (--f.Pending == 0) f.State = Body;
                return Step.Consumed;
        }
    }

    /// <summary>Whether the character count cannot change what the next <paramref name="maxBytes"/> bytes may be: in
    /// the body, past minLength, and maxLength (a byte adds at most one character) out of their reach.</summary>
    public bool CountIrrelevant(in Frame f, int maxBytes) =>
        f.State == Body && f.Count >= min && (max == int.MaxValue || max - f.Count >= maxBytes);

    /// <summary>The lead byte of a multi-byte character, and the range its second byte must fall in (RFC 3629's
    /// table).</summary>
    static Step Lead(ref Frame f, byte b)
    {
        (int pending, int lo, int hi) = b switch
        {
            >= 0xC2 and <= 0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xED => (2, 0x80, 0x9F),
            >= 0xE1 and <= 0xEF => (2, 0x80, 0xBF),
            0xF0 => (3, 0x90, 0xBF),
            >= 0xF1 and <= 0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => (0, 0, 0),
        };
        if (pending == 0) return Step.Reject;
        (f.State, f.Pending, f.Lo, f.Hi) = (Continuation, pending, lo, hi);
        return Step.Consumed;
    }

    public override bool CanStart(byte b) => b == '"';
}

/// <summary>
/// A JSON number, or an integer. Digits are capped (15 before the point, 15 after, 3 in the exponent) so that a model
/// that keeps writing digits still ends its number, and an integer still fits a double exactly.
/// </summary>
sealed class JsonNumber(bool integer) : Node
{
    const int Start = 0, Minus = 1, Zero = 2, Int = 3, Point = 4, Frac = 5, E = 6, ESign = 7, Exp = 8;
    const int MaxInt = 15, MaxFrac = 15, MaxExp = 3;

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        switch (f.State)
        {
            case Start or Minus:
                if (b == '-' && f.State == Start) { f.State = Minus; return Step.Consumed; }
                if (!digit) return Step.Reject;
                f.State = b == '0' ? Zero : Int;
                f.Count = 1;
                return Step.Consumed;
            case Zero or Int:
                if (digit && f.State == Int && f.Count < MaxInt) { f.Count++; return Step.Consumed; }
                if (!integer && b == '.') { f.State = Point; f.Count = 0; return Step.Consumed; }
                if (!integer && b is (byte)'e' or (byte)'E') { f.State = E; f.Count = 0; return Step.Consumed; }
                return Step.Pass;
            case Point or Frac:
                if (digit && f.Count < MaxFrac) { f.State = Frac; f.Count++; return Step.Consumed; }
                if (f.State == Point) return Step.Reject;
                if (b is (byte)'e' or (byte)'E') { f.State = E; f.Count = 0; return Step.Consumed; }
                return Step.Pass;
            case E or ESign:
                if (f.State == E && b is (byte)'+' or (byte)'-') { f.State = ESign; return Step.Consumed; }
                if (!digit) return Step.Reject;
                f.State = Exp;
                f.Count = 1;
                return Step.Consumed;
            default:
                if (digit && f.Count < MaxExp) { f.Count++; return Step.Consumed; }
                return Step.Pass;
        }
    }

    public override bool CanEnd(in Frame f) => f.State is Zero or Int or Frac or Exp;

    public override bool CanStart(byte b) => b == '-' || b is >= (byte)'0' and <= (byte)'9';
}

/// <summary>A JSON array of <c>min</c> to <c>max</c> items of one node.</summary>
sealed class JsonArray(Node item, int min, int max) : Node
{
    const int Open = 0, First = 1, After = 2, Next = 3;

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        switch (f.State)
        {
            case Open:
                if (b != '[') return Step.Reject;
                f.State = First;
                return Step.Consumed;
            case First or Next:
                if (f.State == First && b == ']' && min == 0) return Step.Done;
                if (f.Count >= max || !item.CanStart(b)) return Step.Reject;
                f.Count++;
                f.State = After;
                next = item;
                return Step.Push;
            default:
                if (b == ',' && f.Count < max) { f.State = Next; return Step.Consumed; }
                return b == ']' && f.Count >= min ? Step.Done : Step.Reject;
        }
    }

    public override bool CanStart(byte b) => b == '[';
}

/// <summary>Any JSON object: string keys, values of <see cref="JsonAny"/>.</summary>
sealed class JsonAnyObject : Node
{
    const int Open = 0, First = 1, After = 2, Next = 3;
    readonly Node _member;

    public JsonAnyObject(JsonAny any) =>
        _member = new Sequence([new JsonString(0, int.MaxValue), new Literal(":"u8.ToArray()), any]);

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        next = null;
        switch (f.State)
        {
            case Open:
                if (b != '{') return Step.Reject;
                f.State = First;
                return Step.Consumed;
            case First or Next:
                if (f.State == First && b == '}') return Step.Done;
                if (b != '"') return Step.Reject;
                f.State = After;
                next = _member;
                return Step.Push;
            default:
                if (b == ',') { f.State = Next; return Step.Consumed; }
                return b == '}' ? Step.Done : Step.Reject;
        }
    }

    public override bool CanStart(byte b) => b == '{';
}

/// <summary>Any JSON value (json_object's values, a schema without a type).</summary>
sealed class JsonAny : Node
{
    readonly Node[] _kinds;

    public JsonAny()
    {
        var any = this;
        _kinds =
        [
            new JsonAnyObject(any), new JsonArray(any, 0, int.MaxValue), new JsonString(0, int.MaxValue),
            new JsonNumber(integer: false), new Literal("true"u8.ToArray()), new Literal("false"u8.ToArray()),
            new Literal("null"u8.ToArray()),
        ];
    }

    public override Step Feed(ref Frame f, byte b, out Node? next)
    {
        foreach (var k in _kinds)
            if (k.CanStart(b))
            {
                next = k;
                return Step.Become;
            }
        next = null;
        return Step.Reject;
    }

    public override bool CanStart(byte b)
    {
        foreach (var k in _kinds)
            if (k.CanStart(b)) return true;
        return false;
    }
}

/// <summary>A schema feature the compiler does not support, named by its keyword.</summary>
public sealed class SchemaException(string keyword, string message) : Exception(message)
{
    public string Keyword { get; } = keyword;
}
