namespace Weft.Models.Gguf;

/// <summary>Converts one row of <c>dst.Length</c> elements stored in a ggml type to f32.</summary>
public delegate void RowDequantizer(ReadOnlySpan<byte> src, Span<float> dst);

/// <summary>Converts one row of f32 values to a ggml type (<c>dst</c> holds exactly the row's bytes).</summary>
public delegate void RowQuantizer(ReadOnlySpan<float> src, Span<byte> dst);

/// <summary>
/// What a ggml type is, as ggml's type traits say it: its name, its block layout, the type its dot product takes the
/// other operand in (ggml-cpu's vec_dot_type; null where ggml has no dot product for it), and the reference
/// conversions this project has for it. Every size computation in the solution goes through <see cref="Of"/>.
/// </summary>
public sealed record GgmlTypeTraits(GgmlType Type, string Name, int BlockSize, int BlockBytes, GgmlType? VecDotType,
    RowDequantizer? Dequantize, RowQuantizer? Quantize)
{
    static readonly Dictionary<GgmlType, GgmlTypeTraits> Table = new GgmlTypeTraits[]
    {
        new(GgmlType.F32, "f32", 1, sizeof(float), GgmlType.F32, GgmlQuant.DequantizeF32, GgmlQuant.QuantizeF32),
        new(GgmlType.F16, "f16", 1, 2, GgmlType.F16, GgmlQuant.DequantizeF16, GgmlQuant.QuantizeF16),
        new(GgmlType.BF16, "bf16", 1, 2, GgmlType.BF16, GgmlQuant.DequantizeBF16, GgmlQuant.QuantizeBF16),
        // block layouts written as ggml declares them: f16 scale(s), then the packed quants
        new(GgmlType.Q4_0, "q4_0", 32, 2 + 32 / 2, GgmlType.Q8_0, GgmlQuant.DequantizeQ4_0, GgmlQuant.QuantizeQ4_0),
        new(GgmlType.Q4_1, "q4_1", 32, 2 * 2 + 32 / 2, GgmlType.Q8_1, GgmlQuant.DequantizeQ4_1, null),
        new(GgmlType.Q5_0, "q5_0", 32, 2 + 4 + 32 / 2, GgmlType.Q8_0, GgmlQuant.DequantizeQ5_0, null),
        new(GgmlType.Q5_1, "q5_1", 32, 2 * 2 + 4 + 32 / 2, GgmlType.Q8_1, GgmlQuant.DequantizeQ5_1,
            null),
        new(GgmlType.Q8_0, "q8_0", 32, 2 + 32, GgmlType.Q8_0, GgmlQuant.DequantizeQ8_0, GgmlQuant.QuantizeQ8_0),
        new(GgmlType.Q8_1, "q8_1", 32, 2 * 2 + 32, GgmlType.Q8_1, null, null),
        new(GgmlType.Q2_K, "q2_K", 256, 2 * 2 + 256 / 16 + 256 / 4, GgmlType.Q8_K, GgmlQuant.DequantizeQ2_K, null),
        new(GgmlType.Q3_K, "q3_K", 256, 2 + 256 / 8 + 256 / 4 + 12, GgmlType.Q8_K, GgmlQuant.DequantizeQ3_K, null),
        new(GgmlType.Q4_K, "q4_K", 256, 2 * 2 + 12 + 256 / 2, GgmlType.Q8_K, GgmlQuant.DequantizeQ4_K, null),
        new(GgmlType.Q5_K, "q5_K", 256, 2 * 2 + 12 + 256 / 8 + 256 / 2, GgmlType.Q8_K, GgmlQuant.DequantizeQ5_K,
            null),
        new(GgmlType.Q6_K, "q6_K", 256, 2 + 256 / 16 + 3 * 256 / 4, GgmlType.Q8_K, GgmlQuant.DequantizeQ6_K, null),
        new(GgmlType.Q8_K, "q8_K", 256, 4 + 256 + 256 / 16 * 2, null, null, null),
        new(GgmlType.IQ4_NL, "iq4_nl", 32, 2 + 32 / 2, GgmlType.Q8_0, GgmlQuant.DequantizeIQ4_NL, null),
        new(GgmlType.IQ4_XS, "iq4_xs", 256, 2 + 2 + 256 / 64 + 256 / 2, GgmlType.Q8_K, GgmlQuant.DequantizeIQ4_XS,
            null),
        new(GgmlType.I8, "i8", 1, 1, null, null, null),
        new(GgmlType.I16, "i16", 1, 2, null, null, null),
        new(GgmlType.I32, "i32", 1, 4, null, null, null),
        new(GgmlType.I64, "i64", 1, 8, null, null, null),
        new(GgmlType.F64, "f64", 1, 8, null, null, null),
    }.ToDictionary(t => t.Type);

    public static IEnumerable<GgmlTypeTraits> All => Table.Values;

    /// <summary>The traits of a type number this reader knows; null for any other.</summary>
    public static GgmlTypeTraits? Find(GgmlType type) => Table.GetValueOrDefault(type);

    public static GgmlTypeTraits Of(GgmlType type) =>
        Find(type) ?? throw new ArgumentException($"unknown ggml type {(uint)type}");

    /// <summary>The activation blocks of q8_0 weights (and of the formats the backends repack into q8_0).</summary>
    public static readonly GgmlTypeTraits Q8_0 = Of(GgmlType.Q8_0);

    /// <summary>Bytes taken by <paramref name="elements"/> elements (a whole number of blocks).</summary>
    public long RowBytes(long elements)
    {
        if (elements % BlockSize != 0)
            throw new ArgumentException($"{elements} elements is not a whole number of {Type} blocks of {BlockSize}");
        return elements / BlockSize * BlockBytes;
    }

    /// <summary>Bytes taken by <paramref name="elements"/> elements of <paramref name="type"/>.</summary>
    public static long RowBytes(GgmlType type, long elements) => Of(type).RowBytes(elements);
}
