using System.Runtime.InteropServices;
using Weft.Models.Gguf;

namespace Weft.Models.Tests.Gguf;

public sealed class GgufRoundTripTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    static GgufValue Arr<T>(GgufValueType et, params T[] items) => new(GgufValueType.Array, items, et);

    /// <summary>Every value type at its extremes, empty and unicode strings, empty arrays, and arrays of
    /// arrays.</summary>
    static readonly (string Key, GgufValue Value)[] AllValues =
    [
        ("u8", new(GgufValueType.UInt8, byte.MaxValue)),
        ("i8", new(GgufValueType.Int8, sbyte.MinValue)),
        ("u16", new(GgufValueType.UInt16, ushort.MaxValue)),
        ("i16", new(GgufValueType.Int16, short.MinValue)),
        ("u32", GgufValue.Of(uint.MaxValue)),
        ("i32", GgufValue.Of(int.MinValue)),
        ("f32", GgufValue.Of(3.14159274f)),
        ("f32.nan", GgufValue.Of(BitConverter.UInt32BitsToSingle(0x7FC12345))),
        ("f32.negzero", GgufValue.Of(-0f)),
        ("f32.subnormal", GgufValue.Of(float.Epsilon)),
        ("f32.inf", GgufValue.Of(float.NegativeInfinity)),
        ("bool.true", GgufValue.Of(true)),
        ("bool.false", GgufValue.Of(false)),
        ("str", GgufValue.Of("hello")),
        ("str.empty", GgufValue.Of("")),
        ("str.unicode", GgufValue.Of("héllo ✓ 日本語 🦙 \u0000 tab\tnewline\n")),
        ("u64", GgufValue.Of(ulong.MaxValue)),
        ("i64", GgufValue.Of(long.MinValue)),
        ("f64", GgufValue.Of(-1.0 / 3.0)),
        ("f64.subnormal", GgufValue.Of(double.Epsilon)),
        ("arr.u8", Arr<byte>(GgufValueType.UInt8, 0, 1, 255)),
        ("arr.i8", Arr<sbyte>(GgufValueType.Int8, -128, 0, 127)),
        ("arr.u16", Arr<ushort>(GgufValueType.UInt16, 0, 65535)),
        ("arr.i16", Arr<short>(GgufValueType.Int16, -32768, 32767)),
        ("arr.u32", Arr<uint>(GgufValueType.UInt32, 0, uint.MaxValue)),
        ("arr.i32", GgufValue.Of([int.MinValue, -1, 0, int.MaxValue])),
        ("arr.f32", GgufValue.Of([1.5f, float.NaN, -0f, float.PositiveInfinity, float.Epsilon])),
        ("arr.bool", Arr(GgufValueType.Bool, true, false, true)),
        ("arr.str", GgufValue.Of(["a", "", "ü日🦙", "<0x0A>"])),
        ("arr.u64", Arr<ulong>(GgufValueType.UInt64, 0, ulong.MaxValue)),
        ("arr.i64", Arr<long>(GgufValueType.Int64, long.MinValue, long.MaxValue)),
        ("arr.f64", Arr(GgufValueType.Float64, double.MaxValue, double.NegativeInfinity, 0.1)),
        ("arr.empty.u8", Arr<byte>(GgufValueType.UInt8)),
        ("arr.empty.str", Arr<string>(GgufValueType.String)),
        ("arr.empty.arr", Arr<GgufValue>(GgufValueType.Array)),
        ("arr.arr", Arr(GgufValueType.Array,
            GgufValue.Of([1, 2, 3]),
            Arr<string>(GgufValueType.String),
            GgufValue.Of(["x", "ÿ"]),
            Arr(GgufValueType.Array, Arr<byte>(GgufValueType.UInt8, 7), Arr(GgufValueType.Bool, false)))),
        ("日本語.key", GgufValue.Of(1u)),
    ];

    [Fact]
    public void Metadata_of_every_type_reads_back_identically()
    {
        var w = new GgufWriter();
        foreach (var (k, v) in AllValues) w.Add(k, v);
        string path = _dir.File("meta.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal(GgufFile.DefaultAlignment, f.Alignment);
        Assert.Empty(f.Tensors);
        Assert.Equal(AllValues.Length, f.Metadata.Count);
        foreach (var (k, v) in AllValues) GgufAssert.SameValue(v, f.Get(k), k);
    }

    [Fact]
    public void Typed_accessors_widen_and_convert()
    {
        var w = new GgufWriter();
        foreach (var (k, v) in AllValues) w.Add(k, v);
        string path = _dir.File("typed.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(255, f.GetInteger("u8"));
        Assert.Equal(-128, f.GetInteger("i8"));
        Assert.Equal(uint.MaxValue, f.GetInteger("u32"));
        Assert.Equal(long.MinValue, f.GetInteger("i64"));
        Assert.Equal((double)ulong.MaxValue, f.GetNumber("u64"));
        Assert.Equal(3.14159274f, (float)f.GetNumber("f32"));
        Assert.Equal(-1.0 / 3.0, f.GetNumber("f64"));
        Assert.Equal("héllo ✓ 日本語 🦙 \u0000 tab\tnewline\n", f.GetString("str.unicode"));
        Assert.Equal("", f.GetString("str.empty"));
        Assert.Null(f.GetStringOrNull("absent"));
        Assert.Null(f.GetIntegerOrNull("absent"));
        Assert.True(f.GetBoolOrNull("bool.true"));
        Assert.False(f.GetBoolOrNull("bool.false"));
        Assert.Equal(["a", "", "ü日🦙", "<0x0A>"], f.GetArray<string>("arr.str"));
        Assert.Equal([0, 1, 255], f.GetIntArray("arr.u8"));
        Assert.Equal([-32768, 32767], f.GetIntArray("arr.i16"));
        Assert.Equal([int.MinValue, -1, 0, int.MaxValue], f.GetIntArray("arr.i32"));
        Assert.Empty(f.GetIntArray("arr.empty.u8"));
    }

    /// <summary>Odd sizes so that every tensor needs padding; several ranks; every type the writer produces.</summary>
    static readonly (string Name, GgmlType Type, long[] Dims)[] Tensors =
    [
        ("f32.vec", GgmlType.F32, [3]),
        ("f16.mat", GgmlType.F16, [5, 3]),
        ("bf16.vec", GgmlType.BF16, [7]),
        ("q8_0.mat", GgmlType.Q8_0, [64, 3]),
        ("q4_0.3d", GgmlType.Q4_0, [32, 5, 2]),
        ("f32.4d", GgmlType.F32, [2, 1, 3, 1]),
    ];

    static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(1u)]
    [InlineData(64u)]
    [InlineData(4096u)]
    public void Tensors_read_back_with_identical_bytes_at_aligned_offsets(uint alignment)
    {
        var w = new GgufWriter { Alignment = alignment };
        w.Add("general.name", "round trip");
        var written = new Dictionary<string, (float[] Values, byte[] Bytes)>();
        for (int i = 0; i < Tensors.Length; i++)
        {
            var (name, type, dims) = Tensors[i];
            var values = Values((int)dims.Aggregate(1L, (a, d) => a * d), i);
            var bytes = GgmlQuant.Quantize(type, values);
            w.AddTensor(name, type, dims, values);
            written[name] = (values, bytes);
        }
        string path = _dir.File($"tensors-{alignment}.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(alignment, f.Alignment);
        if (alignment != GgufFile.DefaultAlignment) Assert.Equal(alignment, f.GetInteger("general.alignment"));
        else Assert.False(f.Has("general.alignment"));
        Assert.Equal(0, f.DataOffset % alignment);
        Assert.Equal(Tensors.Select(t => t.Name), f.Tensors.Select(t => t.Name));
        foreach (var (name, type, dims) in Tensors)
        {
            var t = f.GetTensor(name);
            Assert.Equal(type, t.Type);
            Assert.Equal(dims, t.Dims);
            Assert.Equal(0, (f.DataOffset + t.Offset) % alignment);
            Assert.Equal(written[name].Bytes, f.Data(t).ToArray());
            Assert.Equal(GgmlQuant.Dequantize(type, written[name].Bytes, t.ElementCount),
                GgmlQuant.Dequantize(type, f.Data(t), t.ElementCount));
            unsafe { Assert.Equal(0, (long)f.DataPointer(t) % Math.Min(alignment, 4096)); }
        }
        // f32 is stored verbatim.
        Assert.Equal(written["f32.4d"].Values, MemoryMarshal.Cast<byte, float>(f.Data(f.GetTensor("f32.4d")))
            .ToArray());
    }

    [Fact]
    public void Streamed_tensor_data_is_written_in_place()
    {
        var w = new GgufWriter();
        byte[] raw = Enumerable.Range(0, 34 * 2).Select(i => (byte)(i * 7)).ToArray();
        w.AddTensor("streamed", GgmlType.Q8_0, [64], s => s.Write(raw));
        string path = _dir.File("streamed.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path);
        Assert.Equal(raw, f.Data(f.GetTensor("streamed")).ToArray());
    }

    [Fact]
    public void Version_2_files_read_the_same()
    {
        var w = new GgufWriter();
        foreach (var (k, v) in AllValues) w.Add(k, v);
        w.AddTensor("t", GgmlType.F16, [4, 2], [1f, 2, 3, 4, 5, 6, 7, 8]);
        var bytes = w.ToBytes();
        bytes[4] = 2; // version field; v2 differs from v3 only in its number (v1 had 32-bit counts)
        string path = _dir.Write("v2.gguf", bytes);

        using var f = GgufFile.Open(path);
        Assert.Equal(2u, f.Version);
        foreach (var (k, v) in AllValues) GgufAssert.SameValue(v, f.Get(k), k);
        Assert.Equal([1f, 2, 3, 4, 5, 6, 7, 8], GgmlQuant.Dequantize(GgmlType.F16, f.Data(f.GetTensor("t")), 8));
    }

    [Fact]
    public void Writer_rejects_what_the_reader_would_reject()
    {
        var w = new GgufWriter();
        w.Add("k", 1u);
        Assert.Throws<ArgumentException>(() => w.Add("k", 2u));
        // The tag would say u8 while the bytes written are an int's: a corrupt file.
        Assert.Throws<ArgumentException>(() => w.Add("mismatch", new GgufValue(GgufValueType.UInt8, 5)));
        Assert.Throws<ArgumentException>(() => w.Add("arr.mismatch",
            new GgufValue(GgufValueType.Array, new byte[] { 1 }, GgufValueType.Int32)));
        Assert.Throws<ArgumentException>(() => w.Add("nested.mismatch",
            new GgufValue(GgufValueType.Array, new[] { GgufValue.Of(1) }, GgufValueType.Array)));
        Assert.Throws<ArgumentException>(() => w.Add("general.alignment", 64u));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter { Alignment = 48 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new GgufWriter { Alignment = 0 });
        Assert.Throws<ArgumentException>(() => w.AddTensor("zero", GgmlType.F32, [4, 0], Array.Empty<byte>()));
        Assert.Throws<ArgumentException>(() => w.AddTensor("rank0", GgmlType.F32, [], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("rank5", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("partial", GgmlType.Q8_0, [33], new byte[34]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("short", GgmlType.F32, [4], new byte[15]));
        w.AddTensor("liar", GgmlType.F32, [4], s => s.Write(new byte[12]));
        Assert.Throws<InvalidOperationException>(() => w.Write(new MemoryStream()));
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(4096u)]
    public void A_file_read_into_memory_keeps_its_tensors_when_the_file_is_overwritten(uint alignment)
    {
        var w = new GgufWriter { Alignment = alignment };
        float[] values = Values(256, 3);
        w.AddTensor("t", GgmlType.F32, [256], values);
        string path = _dir.File($"read-{alignment}.gguf");
        w.Write(path);

        using var f = GgufFile.Open(path, map: false);
        var t = f.GetTensor("t");
        // in place and shorter: a mapping would read zeros, then fault past the new end
        File.WriteAllBytes(path, new byte[16]);
        Assert.Equal(values, MemoryMarshal.Cast<byte, float>(f.Data(t)).ToArray());
        unsafe { Assert.Equal(0, (long)f.DataPointer(t) % alignment); }
    }

    [Fact]
    public void Disposed_file_refuses_to_hand_out_pointers()
    {
        var w = new GgufWriter();
        w.AddTensor("t", GgmlType.F32, [2], [1f, 2f]);
        string path = _dir.File("disposed.gguf");
        w.Write(path);
        var f = GgufFile.Open(path);
        var t = f.GetTensor("t");
        f.Dispose();
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.Data(t).Length);
    }
}
