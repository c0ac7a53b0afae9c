using Weft.Models.Gguf;
using static Weft.Models.Tests.Gguf.GgufAssert;

namespace Weft.Models.Tests.Gguf;

public sealed class GgufBadFileTests : IDisposable
{
    static readonly bool[] Bools = [true, false];
    readonly TempDir _dir = new();
    int _files;

    public void Dispose() => _dir.Dispose();

    string Write(byte[] bytes) => _dir.Write($"bad{_files++}.gguf", bytes);
    string Write(RawGguf raw) => Write(raw.ToArray());

    /// <summary>A small file that uses every structure the reader parses: scalars, strings, arrays of each kind, nested
    /// arrays, tensors of several types.</summary>
    static byte[] ValidFile()
    {
        var w = new GgufWriter();
        w.Add("general.architecture", "llama");
        w.Add("general.alignment", GgufValue.Of(32u));
        w.Add("u8", new GgufValue(GgufValueType.UInt8, (byte)7));
        w.Add("flag", true);
        w.Add("i64", GgufValue.Of(-5L));
        w.Add("f64", GgufValue.Of(0.5));
        w.Add("tokens", GgufValue.Of(["<s>", "a", "", "日本"]));
        w.Add("bools", new GgufValue(GgufValueType.Array, Bools, GgufValueType.Bool));
        w.Add("nested", new GgufValue(GgufValueType.Array, new[] { GgufValue.Of([1, 2]), GgufValue.Of(["x"]) },
            GgufValueType.Array));
        w.Add("scores", GgufValue.Of([0.5f, -1f]));
        w.AddTensor("a", GgmlType.F32, [3], [1f, 2, 3]);
        w.AddTensor("b", GgmlType.Q8_0, [32, 2], Enumerable.Range(0, 64).Select(i => i / 8f).ToArray());
        w.AddTensor("c", GgmlType.F16, [4, 2], [1f, 2, 3, 4, 5, 6, 7, 8]);
        w.AddTensor("d", GgmlType.Q4_0, [32], Enumerable.Range(0, 32).Select(i => i - 16f).ToArray());
        w.AddTensor("e", GgmlType.F64, [2], BitConverter.GetBytes(1.0).Concat(BitConverter.GetBytes(-2.0)).ToArray());
        return w.ToBytes();
    }

    // ---- the file itself ----

    [Fact]
    public void Missing_empty_and_directory_paths()
    {
        OpenFails(_dir.File("does-not-exist.gguf"), "file not found");
        OpenFails(Write([]), "empty file");
        OpenFails(_dir.Path, "is a directory");
    }

    [Fact]
    public void Header_problems()
    {
        OpenFails(Write("GGU"u8.ToArray()), "truncated: magic needs 4 bytes");
        OpenFails(Write("hello"u8.ToArray()), "not a GGUF file");
        OpenFails(Write([.. "GGML"u8, .. new byte[20]]), "not a GGUF file");
        OpenFails(Write([.. "GGUF"u8]), "truncated: version");
        OpenFails(Write(RawGguf.Header(0, 0, version: 1)), "version 1 is not supported");
        OpenFails(Write(RawGguf.Header(0, 0, version: 4)), "unsupported GGUF version 4");
        OpenFails(Write(RawGguf.Header(0, 0, version: 0)), "unsupported GGUF version 0");
        // A big-endian writer stores version 3 as 00 00 00 03, which reads little-endian as 0x03000000.
        OpenFails(Write([.. "GGUF"u8, 0, 0, 0, 3, .. new byte[16]]), "big-endian");
        OpenFails(Write(new RawGguf().U32(GgufFile.Magic).U32(3).U64(0)), "truncated: metadata count");
    }

    [Fact]
    public void Truncation_at_every_offset_is_a_format_error()
    {
        var bytes = ValidFile();
        long end;
        using (var f = GgufFile.Open(Write(bytes))) end = f.Tensors.Max(t => f.DataOffset + t.Offset + t.ByteSize);
        string path = _dir.File("cut.gguf");
        for (int n = 0; n < bytes.Length; n++)
        {
            File.WriteAllBytes(path, bytes[..n]);
            if (n >= end)
            {
                // Only padding after the last tensor is missing: still a complete file.
                GgufFile.Open(path).Dispose();
                continue;
            }
            var e = Assert.Throws<GgufFormatException>(() => GgufFile.Open(path).Dispose());
            Assert.StartsWith(path + ": ", e.Message);
            Assert.True(e.Problem.StartsWith(n == 0 ? "empty" : "truncated")
                || e.Problem.Contains("is impossible for a file of"), $"cut at {n}: {e.Message}");
        }
    }

    // ---- counts and lengths ----

    public static TheoryData<ulong> AbsurdCounts =>
        [1UL << 63, ulong.MaxValue, long.MaxValue, (1UL << 63) - 8, 1UL << 40, uint.MaxValue, 1000];

    [Theory]
    [MemberData(nameof(AbsurdCounts))]
    public void Absurd_counts_and_lengths(ulong n)
    {
        OpenFails(Write(RawGguf.Header(n, 0).Zeros(64)), $"tensor count {n} is impossible");
        OpenFails(Write(RawGguf.Header(0, n).Zeros(64)), $"metadata count {n} is impossible");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.UInt8).U64(n)
            .Zeros(64)), $"length of array 'a' {n} is impossible");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.String).U64(n)
            .Zeros(64)), $"length of array 'a' {n} is impossible");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.Array).U64(1)
            .U32((uint)GgufValueType.Int64).U64(n).Zeros(64)), $"length of array 'a' {n} is impossible");
        OpenFails(Write(RawGguf.Header(0, 1).Key("s", GgufValueType.String).U64(n).Zeros(64)),
            $"truncated: string value of 's' of {n} bytes");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.String).U64(1).U64(n)
            .Zeros(64)), $"truncated: string in array 'a' of {n} bytes");
        OpenFails(Write(RawGguf.Header(0, 1).U64(n).Zeros(64)), $"truncated: metadata key of {n} bytes");
        OpenFails(Write(RawGguf.Header(1, 0).U64(n).Zeros(64)), $"truncated: tensor name of {n} bytes");
    }

    /// <summary>A sparse file: its size is real to the reader but costs no disk.</summary>
    string WriteSparse(RawGguf head, long size)
    {
        string path = _dir.File($"sparse{_files++}.gguf");
        using var fs = new FileStream(path, FileMode.CreateNew);
        fs.Write(head.ToArray());
        fs.SetLength(size);
        return path;
    }

    [Fact]
    public void Lengths_that_fit_the_file_but_exceed_the_reader_limits()
    {
        OpenFails(WriteSparse(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.UInt8)
            .U64(1 << 25), 1L << 26),
            "length of array 'a' 33554432 exceeds the limit");
        OpenFails(WriteSparse(RawGguf.Header(0, 1).Key("s", GgufValueType.String).U64(1UL << 29), 1L << 30),
            "string value of 's' of 536870912 bytes exceeds the limit");
    }

    // ---- tensor descriptors ----

    /// <summary>One tensor descriptor followed by <paramref name="dataBytes"/> of data at the default
    /// alignment.</summary>
    string OneTensor(Func<RawGguf, RawGguf> descriptor, int dataBytes = 64) =>
        Write(descriptor(RawGguf.Header(1, 0)).PadTo(32).Zeros(dataBytes));

    [Fact]
    public void Impossible_tensor_shapes()
    {
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 1, 1, 1, 1, 1)), "tensor 't' has 5 dimensions");
        OpenFails(OneTensor(r => r.Str("t").U32(0).U32(0).U64(0).Zeros(16)), "tensor 't' has 0 dimensions");
        OpenFails(OneTensor(r => r.Str("t").U32(1000).Zeros(64)), "tensor 't' has 1000 dimensions");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 4, 0)), "tensor 't' has an impossible dimension 0");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 1UL << 40)), "impossible dimension 1099511627776");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, ulong.MaxValue)),
            $"impossible dimension {ulong.MaxValue}");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, int.MaxValue, int.MaxValue, int.MaxValue)),
            "tensor 't' has too many elements");
        // 2^62 elements fit a long but 8 bytes each would not: the byte size must be checked before it is computed.
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F64, 0, 1 << 31 - 1, 1 << 31 - 1)),
            "is larger than the whole file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.I64, 0, int.MaxValue, int.MaxValue, 2)),
            "is larger than the whole file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 1 << 30, 1 << 30)), "is larger than the whole file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.Q8_0, 0, 33)),
            "row of 33 elements is not a whole number of Q8_0 blocks of 32");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.Q4_K, 0, 32, 8)), "not a whole number of Q4_K blocks of 256");
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(5u)]
    [InlineData(31u)]
    [InlineData(99u)]
    [InlineData(uint.MaxValue)]
    public void Unknown_tensor_type(uint type) =>
        OpenFails(OneTensor(r => r.Tensor("t", (GgmlType)type, 0, 4)), $"tensor 't' has unknown type {type}");

    [Fact]
    public void Tensor_offsets_and_data()
    {
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 8, 4)), "tensor 't' offset 8 is not aligned to 32");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 1UL << 40, 4)),
            "offset 1099511627776 lies beyond the end of the file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, ulong.MaxValue - 31, 4)),
            "lies beyond the end of the file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 64), dataBytes: 16),
            "truncated: tensor 't' (F32, 64) is larger than the whole file");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 0, 16), dataBytes: 16),
            "truncated: tensor 't' (F32, 16) needs bytes up to 128 but the file has 80");
        OpenFails(OneTensor(r => r.Tensor("t", GgmlType.F32, 32, 8), dataBytes: 32), "truncated: tensor 't'");
        OpenFails(Write(RawGguf.Header(2, 0).Tensor("t", GgmlType.F32, 0, 4).Tensor("t", GgmlType.F32, 32, 4).PadTo(32)
            .Zeros(64)), "duplicate tensor 't'");
        // With general.alignment = 64 an offset of 32 is misaligned.
        OpenFails(Write(RawGguf.Header(1, 1).KvU32("general.alignment", 64).Tensor("t", GgmlType.F32, 32, 4).PadTo(64)
            .Zeros(128)), "offset 32 is not aligned to 64");
    }

    // ---- metadata values ----

    [Fact]
    public void Bad_metadata_values()
    {
        OpenFails(Write(RawGguf.Header(0, 2).KvU32("k", 1).KvU32("k", 2)), "duplicate metadata key 'k'");
        OpenFails(Write(RawGguf.Header(0, 1).Key("b", GgufValueType.Bool).U8(2).Zeros(8)),
            "metadata 'b' has bool value 2");
        OpenFails(Write(RawGguf.Header(0, 1).Key("b", GgufValueType.Array).U32((uint)GgufValueType.Bool).U64(3).U8(1)
            .U8(0).U8(255)), "metadata 'b' has bool value 255");
        OpenFails(Write(RawGguf.Header(0, 1).Key("v", (GgufValueType)13).Zeros(16)),
            "metadata 'v' has unknown value type 13");
        OpenFails(Write(RawGguf.Header(0, 1).Key("v", (GgufValueType)uint.MaxValue).Zeros(16)),
            $"unknown value type {uint.MaxValue}");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32(13).U64(0).Zeros(16)),
            "metadata 'a' is an array of unknown type 13");
        OpenFails(Write(RawGguf.Header(0, 1).Key("deep", GgufValueType.Array)
            .U32((uint)GgufValueType.Array).U64(1).U32((uint)GgufValueType.Array).U64(1)
            .U32((uint)GgufValueType.Array).U64(1)
            .U32((uint)GgufValueType.UInt8).U64(0).Zeros(32)), "metadata 'deep' nests arrays too deeply");
        OpenFails(Write(RawGguf.Header(0, 1).Key("v", GgufValueType.UInt64).U32(0)),
            "truncated: value of 'v' needs 8 bytes");
        OpenFails(Write(RawGguf.Header(0, 1).Key("a", GgufValueType.Array).U32((uint)GgufValueType.Int32).U64(3)
            .U32(0).U32(0).Zeros(3)), "length of array 'a' 3 is impossible for a file of");
    }

    public static TheoryData<GgufValueType, ulong> BadAlignments => new()
    {
        { GgufValueType.UInt32, 0 }, { GgufValueType.UInt32, 48 }, { GgufValueType.UInt32, 1 << 21 },
        { GgufValueType.UInt64, ulong.MaxValue }, { GgufValueType.UInt64, 1UL << 63 },
        { GgufValueType.Int32, unchecked((uint)-32) },
        { GgufValueType.Float32, BitConverter.SingleToUInt32Bits(32f) }, { GgufValueType.String, 0 },
    };

    [Theory]
    [MemberData(nameof(BadAlignments))]
    public void Bad_alignment(GgufValueType type, ulong raw)
    {
        var r = RawGguf.Header(0, 1).Key("general.alignment", type);
        r = type is GgufValueType.UInt64 or GgufValueType.String ? r.U64(raw) : r.U32((uint)raw);
        OpenFails(Write(r), "general.alignment must be a power of two");
    }

    [Fact]
    public void Typed_accessors_report_the_key_and_the_file()
    {
        var w = new GgufWriter();
        w.Add("str", "x");
        w.Add("u32", 1u);
        w.Add("u64.max", GgufValue.Of(ulong.MaxValue));
        w.Add("u32s.big", new GgufValue(GgufValueType.Array, new[] { 1u, uint.MaxValue }, GgufValueType.UInt32));
        w.Add("i64s.small", new GgufValue(GgufValueType.Array, new[] { long.MinValue }, GgufValueType.Int64));
        w.Add("u64s.big", new GgufValue(GgufValueType.Array, new[] { ulong.MaxValue }, GgufValueType.UInt64));
        w.Add("strs", GgufValue.Of(["a"]));
        w.Add("floats", GgufValue.Of([1f]));
        string path = Write(w.ToBytes());
        using var f = GgufFile.Open(path);

        void Fails(Action read, string problem)
        {
            var e = Assert.Throws<GgufFormatException>(read);
            Assert.StartsWith(path + ": ", e.Message);
            Assert.Contains(problem, e.Message);
        }
        Fails(() => f.Get("absent"), "missing metadata key 'absent'");
        Fails(() => f.GetTensor("absent"), "missing tensor 'absent'");
        Fails(() => f.GetInteger("str"), "metadata 'str' should be an integer, got String");
        Fails(() => f.GetInteger("u64.max"), $"metadata 'u64.max' = {ulong.MaxValue} is too large");
        Fails(() => f.GetNumber("str"), "metadata 'str' should be a number");
        Fails(() => f.GetString("u32"), "metadata 'u32' should be a string");
        Fails(() => f.GetStringOrNull("u32"), "metadata 'u32' should be a string");
        Fails(() => f.GetBoolOrNull("u32"), "metadata 'u32' should be a bool");
        Fails(() => f.GetArray<string>("floats"), "metadata 'floats' should be an array of String");
        Fails(() => f.GetArray<int>("u32s.big"), "metadata 'u32s.big' should be an array of Int32");
        Fails(() => f.GetArray<long>("u64s.big"), "metadata 'u64s.big' should be an array of Int64");
        Fails(() => f.GetIntArray("u32"), "metadata 'u32' should be an array");
        Fails(() => f.GetIntArray("strs"), "metadata 'strs' should be an integer array");
        Fails(() => f.GetIntArray("u32s.big"),
            $"metadata 'u32s.big' holds {uint.MaxValue}, which does not fit in an int");
        Fails(() => f.GetIntArray("i64s.small"), $"holds {long.MinValue}");
        Fails(() => f.GetIntArray("u64s.big"), $"holds {ulong.MaxValue}");
        Assert.Equal((double)ulong.MaxValue, f.GetNumber("u64.max"));
    }

    // ---- random corruption ----

    static readonly ulong[] Interesting = [0, 1, 4, 5, 13, 32, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1UL << 31, 1UL << 32,
        long.MaxValue, 1UL << 63, ulong.MaxValue];

    [Fact]
    public void Random_corruption_gives_a_format_error_or_a_usable_file()
    {
        var valid = ValidFile();
        var rng = new Random(20240607);
        string path = _dir.File("fuzz.gguf");
        int rejected = 0, accepted = 0;
        for (int iter = 0; iter < 2000; iter++)
        {
            var bytes = (byte[])valid.Clone();
            for (int k = 1 + rng.Next(4); k > 0; k--)
            {
                int at = rng.Next(bytes.Length);
                switch (rng.Next(5))
                {
                    case 0: bytes[at] ^= (byte)(1 << rng.Next(8)); break;
                    case 1: bytes[at] = (byte)rng.Next(256); break;
                    case 2:
                        BitConverter.TryWriteBytes(bytes.AsSpan(Math.Min(at, bytes.Length - 8)),
                            Interesting[rng.Next(Interesting.Length)]);
                        break;
                    case 3:
                        BitConverter.TryWriteBytes(bytes.AsSpan(Math.Min(at, bytes.Length - 4)),
                            (uint)Interesting[rng.Next(Interesting.Length)]);
                        break;
                    default: if (rng.Next(4) == 0) bytes = bytes[..at]; break;
                }
            }
            File.WriteAllBytes(path, bytes);

            long before = GC.GetAllocatedBytesForCurrentThread();
            GgufFile? f = null;
            try { f = GgufFile.Open(path); }
            catch (GgufFormatException e) { Assert.StartsWith(path + ": ", e.Message); rejected++; }
            catch (Exception e) { Assert.Fail($"iteration {iter}: {e.GetType().Name} escaped: {e}"); }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < 1 << 20,
                $"iteration {iter}: opening a {bytes.Length}-byte file allocated {allocated} bytes");

            if (f is null) continue;
            using (f)
            {
                accepted++;
                try { UseEverything(f); }
                catch (Exception e) { Assert.Fail($"iteration {iter}: reading an accepted file threw {e}"); }
            }
        }
        Assert.True(rejected > 1000 && accepted > 100,
            $"{rejected} rejected, {accepted} accepted: the corruption is not exercising both paths");
    }

    /// <summary>Reads every value through every accessor and every tensor's bytes: only format errors may come
    /// out.</summary>
    static void UseEverything(GgufFile f)
    {
        foreach (var (key, v) in f.Metadata)
        {
            _ = v.ToString();
            Try(() => f.GetString(key));
            Try(() => f.GetInteger(key));
            Try(() => f.GetNumber(key));
            Try(() => f.GetBoolOrNull(key));
            Try(() => f.GetIntArray(key));
            Try(() => f.GetArray<string>(key));
        }
        foreach (var t in f.Tensors)
        {
            var data = f.Data(t);
            if (data.Length > 0) _ = data[0] + data[^1];
            if (GgmlTypeTraits.Of(t.Type).Dequantize is not null && t.ElementCount <= 1 << 16)
                GgmlQuant.Dequantize(t.Type, data, t.ElementCount);
        }

        static void Try(Action read)
        {
            try { read(); }
            catch (GgufFormatException) { }
        }
    }
}
