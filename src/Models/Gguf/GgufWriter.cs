using System.Text;

namespace Weft.Models.Gguf;

/// <summary>
/// Writes GGUF v3 files: metadata in insertion order, then tensor descriptors, then aligned tensor data.
/// Tensor data is produced on demand while writing, so a multi-gigabyte model never sits in memory whole.
/// </summary>
public sealed class GgufWriter
{
    const string AlignmentKey = "general.alignment";

    readonly List<(string Key, GgufValue Value)> _metadata = [];
    readonly List<(string Name, GgmlType Type, long[] Dims, long Bytes, Action<Stream> Write)> _tensors = [];

    /// <summary>Tensor data alignment; a value other than the default is recorded as general.alignment so readers
    /// agree.</summary>
    public uint Alignment
    {
        get;
        init => field = value is > 0 and <= 1 << 20 && uint.IsPow2(value) ? value
            : throw new ArgumentOutOfRangeException(nameof(Alignment), value,
                "alignment must be a power of two up to 2^20");
    } = GgufFile.DefaultAlignment;

    public GgufWriter Add(string key, GgufValue value)
    {
        if (_metadata.Any(m => m.Key == key)) throw new ArgumentException($"duplicate metadata key '{key}'");
        // The tag written is value.Type but the bytes come from the CLR value: a mismatch would write a corrupt file.
        if (!IsConsistent(value))
            throw new ArgumentException($"metadata '{key}': {value.Value.GetType().Name} value does not match its " +
                $"GGUF type {value.Type}/{value.ElementType}");
        if (key == AlignmentKey && !(value.TryGetInt64(out long a) && a == Alignment))
            throw new ArgumentException(
                $"{AlignmentKey} is written from the {nameof(Alignment)} property ({Alignment}); set that instead");
        _metadata.Add((key, value));
        return this;
    }

    public GgufWriter Add(string key, string value) => Add(key, GgufValue.Of(value));
    public GgufWriter Add(string key, uint value) => Add(key, GgufValue.Of(value));
    public GgufWriter Add(string key, float value) => Add(key, GgufValue.Of(value));
    public GgufWriter Add(string key, bool value) => Add(key, GgufValue.Of(value));

    /// <summary>Adds a tensor whose bytes <paramref name="write"/> emits when the file is written.</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, Action<Stream> write)
    {
        if (_tensors.Any(t => t.Name == name)) throw new ArgumentException($"duplicate tensor '{name}'");
        if (dims.Length is 0 or > 4 || dims.Any(d => d is <= 0 or > int.MaxValue))
            throw new ArgumentException(
                $"tensor '{name}' dims [{string.Join(", ", dims)}]: 1 to 4 dims of 1 to {int.MaxValue} each");
        long elements = dims.Aggregate(1L, (a, d) => a * d);
        _tensors.Add((name, type, dims, GgmlTypeTraits.RowBytes(type, elements), write));
        return this;
    }

    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, byte[] data)
    {
        long expected = GgmlTypeTraits.RowBytes(type, dims.Aggregate(1L, (a, d) => a * d));
        if (data.Length != expected) throw new ArgumentException(
            $"tensor '{name}' has {data.Length} bytes, {type} {string.Join('×', dims)} needs {expected}");
        return AddTensor(name, type, dims, s => s.Write(data));
    }

    /// <summary>Adds f32 values stored as <paramref name="type"/> (f32, f16, bf16, q8_0 or q4_0).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dims, float[] values) =>
        AddTensor(name, type, dims, GgmlQuant.Quantize(type, values));

    /// <param name="progress">Told the fraction of the tensors' bytes written after each tensor, 1 at the
    /// end.</param>
    public void Write(string path, Action<double>? progress = null)
    {
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        string tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Write(fs, progress);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <inheritdoc cref="Write(string, Action{double})"/>
    public void Write(Stream stream, Action<double>? progress = null)
    {
        var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        var metadata = Alignment == GgufFile.DefaultAlignment || _metadata.Any(m => m.Key == AlignmentKey)
            ? _metadata : [.. _metadata, (AlignmentKey, GgufValue.Of(Alignment))];
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, value) in metadata)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (var d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = GgufFile.AlignUp(offset + t.Bytes, Alignment);
        }
        w.Flush();
        Pad(stream);
        long total = _tensors.Sum(t => t.Bytes), written = 0;
        foreach (var t in _tensors)
        {
            long start = stream.Position;
            t.Write(stream);
            if (stream.Position - start != t.Bytes)
                throw new InvalidOperationException(
                    $"tensor '{t.Name}' wrote {stream.Position - start} bytes, expected {t.Bytes}");
            Pad(stream);
            written += t.Bytes;
            if (total > 0) progress?.Invoke((double)written / total);
        }
        stream.Flush();
        progress?.Invoke(1);
    }

    void Pad(Stream s)
    {
        long pad = GgufFile.AlignUp(s.Position, Alignment) - s.Position;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    static bool IsConsistent(GgufValue v) => v.Type == GgufValueType.Array
        ? v.ElementType == GgufValueType.Array
            ? v.Value is GgufValue[] nested && nested.All(n => n.Type == GgufValueType.Array && IsConsistent(n))
            : v.Value.GetType() == ClrType(v.ElementType)?.MakeArrayType()
        : v.Value.GetType() == ClrType(v.Type);

    static Type? ClrType(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => typeof(byte),
        GgufValueType.Int8 => typeof(sbyte),
        GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short),
        GgufValueType.UInt32 => typeof(uint),
        GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float),
        GgufValueType.Bool => typeof(bool),
        GgufValueType.String => typeof(string),
        GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long),
        GgufValueType.Float64 => typeof(double),
        _ => null,
    };

    static void WriteArray(BinaryWriter w, GgufValueType elementType, Array items)
    {
        w.Write((uint)elementType);
        w.Write((ulong)items.Length);
        foreach (var item in items)
        {
            if (item is GgufValue nested) WriteArray(w, nested.ElementType, (Array)nested.Value);
            else WriteValue(w, new GgufValue(elementType, item));
        }
    }

    static void WriteValue(BinaryWriter w, GgufValue v)
    {
        switch (v.Value)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
            case Array a: WriteArray(w, v.ElementType, a); break;
            default: throw new ArgumentException($"cannot write metadata value of type {v.Value.GetType()}");
        }
    }
}
