namespace Weft.Models.Gguf;

/// <summary>
/// A tensor's descriptor. <see cref="Dims"/> are in ggml order: Dims[0] is the innermost (contiguous) axis,
/// so a weight matrix of <c>Rows</c> outputs × <c>Columns</c> inputs has Dims = [Columns, Rows].
/// </summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dims, long Offset, long ByteSize)
{
    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);
    public long Columns => Dims[0];
    public long Rows => ElementCount / Math.Max(1, Dims[0]);
    public string Shape => string.Join(" × ", Dims);
}
