using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Weft.Models.Gguf;

namespace Weft.Models.Tests.Gguf;

/// <summary>A scratch directory for test files, removed with everything in it on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("weft-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Write(string name, byte[] bytes)
    {
        string p = File(name);
        System.IO.File.WriteAllBytes(p, bytes);
        return p;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>
/// Writes GGUF fields one by one, so a test can produce exactly the (broken) file it needs without going through
/// <see cref="GgufWriter"/>, which refuses to write invalid files.
/// </summary>
public sealed class RawGguf
{
    readonly ArrayBufferWriter<byte> _b = new();

    /// <summary>Magic, version, tensor count and metadata count.</summary>
    public static RawGguf Header(ulong tensors, ulong kvs, uint version = 3) =>
        new RawGguf().U32(GgufFile.Magic).U32(version).U64(tensors).U64(kvs);

    public long Length => _b.WrittenCount;
    public RawGguf U8(byte v) => Bytes([v]);
    public RawGguf U32(uint v)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_b.GetSpan(4), v);
        _b.Advance(4);
        return this;
    }
    public RawGguf U64(ulong v)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_b.GetSpan(8), v);
        _b.Advance(8);
        return this;
    }
    public RawGguf Bytes(ReadOnlySpan<byte> v) { _b.Write(v); return this; }
    public RawGguf Str(string s) { var b = Encoding.UTF8.GetBytes(s); return U64((ulong)b.Length).Bytes(b); }

    /// <summary>A metadata key and its value type; the caller writes the value.</summary>
    public RawGguf Key(string key, GgufValueType type) => Str(key).U32((uint)type);

    public RawGguf KvU32(string key, uint v) => Key(key, GgufValueType.UInt32).U32(v);

    public RawGguf Tensor(string name, GgmlType type, ulong offset, params ulong[] dims)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims) U64(d);
        return U32((uint)type).U64(offset);
    }

    public RawGguf PadTo(long alignment) => Zeros((alignment - _b.WrittenCount % alignment) % alignment);

    public RawGguf Zeros(long n) => Bytes(new byte[n]);

    public byte[] ToArray() => _b.WrittenSpan.ToArray();
}

public static class GgufAssert
{
    public static byte[] ToBytes(this GgufWriter w)
    {
        var ms = new MemoryStream();
        w.Write(ms);
        return ms.ToArray();
    }

    /// <summary>Same GGUF type, same CLR type, and bit-identical contents (floats compared by their bits).</summary>
    public static void SameValue(GgufValue expected, GgufValue actual, string key)
    {
        Assert.True(expected.Type == actual.Type, $"{key}: type {actual.Type}, expected {expected.Type}");
        Assert.True(expected.Value.GetType() == actual.Value.GetType(),
            $"{key}: CLR type {actual.Value.GetType()}, expected {expected.Value.GetType()}");
        if (expected.Type != GgufValueType.Array)
        {
            Assert.True(Canonical(expected.Value).Equals(Canonical(actual.Value)),
                $"{key}: value {actual.Value}, expected {expected.Value}");
            return;
        }
        Assert.True(expected.ElementType == actual.ElementType,
            $"{key}: element type {actual.ElementType}, expected {expected.ElementType}");
        var e = (Array)expected.Value;
        var a = (Array)actual.Value;
        Assert.True(e.Length == a.Length, $"{key}: {a.Length} elements, expected {e.Length}");
        for (int i = 0; i < e.Length; i++)
        {
            if (e.GetValue(i) is GgufValue nested) SameValue(nested, (GgufValue)a.GetValue(i)!, $"{key}[{i}]");
            else Assert.True(Canonical(e.GetValue(i)!).Equals(Canonical(a.GetValue(i)!)),
                $"{key}[{i}]: {a.GetValue(i)}, expected {e.GetValue(i)}");
        }
    }

    static object Canonical(object v) => v switch
    {
        float f => BitConverter.SingleToUInt32Bits(f),
        double d => BitConverter.DoubleToUInt64Bits(d),
        _ => v,
    };

    /// <summary>Opens <paramref name="path"/> expecting a format error that names the file and contains
    /// <paramref name="problem"/>.</summary>
    public static GgufFormatException OpenFails(string path, string problem)
    {
        var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Equal(path, e.FilePath);
        Assert.Contains(problem, e.Message);
        return e;
    }
}
