namespace Weft.Models.Gguf;

/// <summary>Metadata value types as numbered by the GGUF format.</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars hold their CLR type (byte, sbyte, ushort, short, uint, int, float, bool, string,
/// ulong, long, double); arrays hold a typed CLR array of the element type (arrays of arrays: GgufValue[]).
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public static GgufValue Of(string v) => new(GgufValueType.String, v);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(long v) => new(GgufValueType.Int64, v);
    public static GgufValue Of(double v) => new(GgufValueType.Float64, v);
    public static GgufValue Of(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Of(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue Of(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);

    public bool IsInteger => Type is GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.UInt16
        or GgufValueType.Int16 or GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.UInt64
        or GgufValueType.Int64;

    /// <summary>Any integer type widened to long (files differ in which width they use for the same key).</summary>
    public long AsInt64() => TryGetInt64(out long v) ? v
        : throw (IsInteger ? new OverflowException($"{Value} does not fit in a long")
            : new InvalidCastException($"{Type} is not an integer"));

    /// <summary>False for a non-integer and for a u64 above <see cref="long.MaxValue"/>.</summary>
    public bool TryGetInt64(out long value)
    {
        (bool ok, value) = Value switch
        {
            byte b => (true, b),
            sbyte s => (true, s),
            ushort us => (true, us),
            short sh => (true, sh),
            uint u => (true, u),
            int i => (true, i),
            ulong ul => (ul <= long.MaxValue, (long)ul),
            long l => (true, l),
            _ => (false, 0L),
        };
        if (!ok) value = 0;
        return ok;
    }

    public double AsDouble() => Value switch
    {
        float f => f,
        double d => d,
        ulong ul => ul,
        _ when IsInteger => AsInt64(),
        _ => throw new InvalidCastException($"{Type} is not a number"),
    };

    public override string ToString() => Value switch
    {
        string s => s,
        Array a => $"[{ElementType} × {a.Length}]",
        bool b => b ? "true" : "false",
        _ => Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
    };
}
