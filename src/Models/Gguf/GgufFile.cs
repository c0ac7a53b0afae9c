using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;

namespace Weft.Models.Gguf;

/// <summary>
/// A GGUF file (v2 or v3), memory-mapped read-only or read whole into native memory. Metadata and tensor descriptors
/// are parsed up front with every size checked against the bytes that remain, so a broken file fails with
/// <see cref="GgufFormatException"/> before anything is allocated from it; tensor data is read in place. A mapping
/// shares the page cache but follows the file: overwriting a mapped file in place changes the weights under the
/// reader, and truncating it makes the next read of a lost page kill the process (SIGBUS); a copy in memory does not
/// care what happens to the file.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;
    const int MaxDims = 4;
    // Far above anything a real model stores (vocabularies are < 1M entries, templates and tokenizer JSON a few MB),
    // and small enough that every length fits an int and no single corrupted length costs more than about a GB.
    const int MaxArrayLength = 1 << 24;
    const int MaxStringBytes = 1 << 28;

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    /// <summary>The copy in memory when the file is read rather than mapped.</summary>
    readonly byte* _copy;
    readonly Dictionary<string, GgufTensorInfo> _tensorsByName = new(StringComparer.Ordinal);
    bool _disposed;

    public string Path { get; }
    public uint Version { get; }
    public long FileSize { get; }
    public long DataOffset { get; }
    public uint Alignment { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    GgufFile(string path, bool map)
    {
        Path = path;
        FileInfo info;
        try { info = new FileInfo(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        { throw Fail(e.Message, e); }
        if (!info.Exists) throw Fail(Directory.Exists(path) ? "is a directory, not a GGUF file" : "file not found");
        FileSize = info.Length;
        // A zero-length file cannot be mapped; anything shorter than a header fails in the reader with the field it
        // lacks.
        if (FileSize == 0) throw Fail("empty file (0 bytes)");
        try
        {
            if (map)
            {
                _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
                _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _base = p + _view.PointerOffset;
            }
            else _base = _copy = ReadAll(path, FileSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Dispose();
            throw Fail($"cannot open: {e.Message}", e);
        }

        try
        {
            var r = new Reader(this, _base, FileSize);
            uint magic = r.U32("magic");
            if (magic != Magic) throw Fail($"not a GGUF file (magic 0x{magic:X8}, expected 0x{Magic:X8} \"GGUF\")");
            Version = r.U32("version");
            if (Version is 1)
                throw Fail("GGUF version 1 is not supported (re-convert the model; versions 2 and 3 are)");
            if (Version is not (2 or 3))
                throw Fail(Version != 0 && (Version & 0xFFFF) == 0 ? "big-endian GGUF is not supported"
                    : $"unsupported GGUF version {Version}");

            long tensorCount = r.Count("tensor count", 8 + 4 + 8 + 4 + 8);
            long kvCount = r.Count("metadata count", 8 + 4 + 1);

            var metadata = new Dictionary<string, GgufValue>((int)Math.Min(kvCount, 4096), StringComparer.Ordinal);
            for (long i = 0; i < kvCount; i++)
            {
                string key = r.String("metadata key");
                var type = (GgufValueType)r.U32("value type of", key);
                var value = r.Value(type, key, depth: 0);
                if (!metadata.TryAdd(key, value)) throw Fail($"duplicate metadata key '{key}'");
            }
            Metadata = metadata;

            Alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out var al))
            {
                if (!al.TryGetInt64(out long a) || a is <= 0 or > 1 << 20 || !long.IsPow2(a))
                    throw Fail($"general.alignment must be a power of two up to 2^20, got {al.Type} {al}");
                Alignment = (uint)a;
            }

            var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 65536));
            for (long i = 0; i < tensorCount; i++)
            {
                string name = r.String("tensor name");
                uint nDims = r.U32("dimension count of tensor", name);
                if (nDims is 0 or > MaxDims)
                    throw Fail($"tensor '{name}' has {nDims} dimensions (1 to {MaxDims} allowed)");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    ulong dim = r.U64("dimension of tensor", name);
                    if (dim == 0 || dim > int.MaxValue)
                        throw Fail($"tensor '{name}' has an impossible dimension {dim}");
                    dims[d] = (long)dim;
                    if (elements > long.MaxValue / (long)dim) throw Fail($"tensor '{name}' has too many elements");
                    elements *= (long)dim;
                }
                uint rawType = r.U32("type of tensor", name);
                var type = (GgmlType)rawType;
                var layout = GgmlTypeTraits.Find(type) ?? throw Fail($"tensor '{name}' has unknown type {rawType}");
                if (dims[0] % layout.BlockSize != 0)
                    throw Fail($"tensor '{name}' row of {dims[0]} elements is not a whole number of {type} blocks " +
                        $"of {layout.BlockSize}");
                ulong offset = r.U64("offset of tensor", name);
                if (offset % Alignment != 0)
                    throw Fail($"tensor '{name}' offset {offset} is not aligned to {Alignment}");
                if (offset > (ulong)FileSize)
                    throw Fail($"tensor '{name}' offset {offset} lies beyond the end of the file");
                // Checked before multiplying: a huge element count times the block size would overflow a long.
                if (elements / layout.BlockSize > FileSize / layout.BlockBytes)
                    throw Fail($"truncated: tensor '{name}' ({type}, {string.Join(" × ", dims)}) is larger than the " +
                        $"whole file of {FileSize} bytes");
                long bytes = elements / layout.BlockSize * layout.BlockBytes;
                var t = new GgufTensorInfo(name, type, dims, (long)offset, bytes);
                if (!_tensorsByName.TryAdd(name, t)) throw Fail($"duplicate tensor '{name}'");
                tensors.Add(t);
            }

            DataOffset = AlignUp(r.Position, Alignment);
            foreach (var t in tensors)
            {
                if (DataOffset + t.Offset + t.ByteSize > FileSize)
                    throw Fail($"truncated: tensor '{t.Name}' ({t.Type}, {t.Shape}) needs bytes up " +
                        $"to {DataOffset + t.Offset + t.ByteSize} but the file has {FileSize}");
            }
            Tensors = tensors;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file; every failure is a <see cref="GgufFormatException"/> naming the
    /// file.</summary>
    /// <param name="map">Map the file (the default: reading a header costs nothing); false reads it whole into
    /// memory, so that it can be replaced while its tensors are in use.</param>
    public static GgufFile Open(string path, bool map = true) => new(path, map);

    /// <summary>The file's first <paramref name="size"/> bytes in native memory, page-aligned as a mapping is (the
    /// kernels read tensors in place and count on their alignment within the file).</summary>
    static byte* ReadAll(string path, long size)
    {
        const int Chunk = 1 << 30;
        byte* p = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            for (long done = 0; done < size;)
            {
                int n = RandomAccess.Read(handle, new Span<byte>(p + done, (int)Math.Min(size - done, Chunk)), done);
                if (n == 0) throw new IOException($"the file ended after {done} of {size} bytes while it was read");
                done += n;
            }
            return p;
        }
        catch
        {
            NativeMemory.AlignedFree(p);
            throw;
        }
    }

    public static long AlignUp(long x, long alignment) => (x + alignment - 1) / alignment * alignment;

    /// <summary>An error naming this file and the problem, for loaders that find a tensor they cannot use.</summary>
    public GgufFormatException Fail(string problem, Exception? inner = null) => new(Path, problem, inner);

    public bool TryGetTensor(string name, out GgufTensorInfo tensor) => _tensorsByName.TryGetValue(name, out tensor!);

    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var t) ? t : throw Fail($"missing tensor '{name}'");

    /// <summary>Address of a tensor's bytes inside the mapping; valid until this file is disposed.</summary>
    public byte* DataPointer(GgufTensorInfo t)
    {
        // Reading through a pointer into an unmapped view would crash the process rather than throw.
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _base + DataOffset + t.Offset;
    }

    public ReadOnlySpan<byte> Data(GgufTensorInfo t) =>
        t.ByteSize <= int.MaxValue ? new(DataPointer(t), (int)t.ByteSize)
            : throw Fail($"tensor '{t.Name}' is too large for a span");

    // ---- typed metadata access; a missing key or a wrong type is a format error naming the key ----

    public bool Has(string key) => Metadata.ContainsKey(key);

    public GgufValue Get(string key) =>
        Metadata.TryGetValue(key, out var v) ? v : throw Fail($"missing metadata key '{key}'");

    public string GetString(string key) =>
        Get(key).Value as string ?? throw Fail($"metadata '{key}' should be a string");

    public string? GetStringOrNull(string key) => Metadata.TryGetValue(key, out var v)
        ? v.Value as string ?? throw Fail($"metadata '{key}' should be a string") : null;

    public long GetInteger(string key)
    {
        var v = Get(key);
        if (!v.IsInteger) throw Fail($"metadata '{key}' should be an integer, got {v.Type}");
        return v.TryGetInt64(out long x) ? x : throw Fail($"metadata '{key}' = {v} is too large");
    }

    public long? GetIntegerOrNull(string key) => Has(key) ? GetInteger(key) : null;

    public double GetNumber(string key)
    {
        var v = Get(key);
        return v.IsInteger || v.Type is GgufValueType.Float32 or GgufValueType.Float64
            ? v.AsDouble() : throw Fail($"metadata '{key}' should be a number, got {v.Type}");
    }

    public double? GetNumberOrNull(string key) => Has(key) ? GetNumber(key) : null;

    public bool? GetBoolOrNull(string key) => Metadata.TryGetValue(key, out var v)
        ? v.Value as bool? ?? throw Fail($"metadata '{key}' should be a bool, got {v.Type}") : null;

    // An exact type test: the CLR lets a uint[] pass as an int[] (and byte[] as sbyte[], ulong[] as long[]).
    public T[] GetArray<T>(string key) => Get(key).Value is T[] a && a.GetType() == typeof(T[])
        ? a : throw Fail($"metadata '{key}' should be an array of {typeof(T).Name}");

    /// <summary>Integer array of any element width as int[] (token types and ids are stored as i32 or u32 by different
    /// tools).</summary>
    public int[] GetIntArray(string key)
    {
        var v = Get(key);
        if (v.Type != GgufValueType.Array) throw Fail($"metadata '{key}' should be an array");
        // Switch on the GGUF element type, not the CLR array type: a uint[] would match an int[] pattern.
        return v.ElementType switch
        {
            GgufValueType.Int32 => (int[])v.Value,
            GgufValueType.UInt32 => ((uint[])v.Value).Select(x => x <= int.MaxValue ? (int)x : OutOfRange(x)).ToArray(),
            GgufValueType.UInt8 => ((byte[])v.Value).Select(x => (int)x).ToArray(),
            GgufValueType.Int8 => ((sbyte[])v.Value).Select(x => (int)x).ToArray(),
            GgufValueType.Int16 => ((short[])v.Value).Select(x => (int)x).ToArray(),
            GgufValueType.UInt16 => ((ushort[])v.Value).Select(x => (int)x).ToArray(),
            GgufValueType.Int64 => ((long[])v.Value)
                .Select(x => x is >= int.MinValue and <= int.MaxValue ? (int)x : OutOfRange(x)).ToArray(),
            GgufValueType.UInt64 => ((ulong[])v.Value)
                .Select(x => x <= int.MaxValue ? (int)x : OutOfRange(x)).ToArray(),
            _ => throw Fail($"metadata '{key}' should be an integer array, got {v.ElementType}[]"),
        };

        int OutOfRange(object x) => throw Fail($"metadata '{key}' holds {x}, which does not fit in an int");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            if (_base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        if (_copy != null) NativeMemory.AlignedFree(_copy);
    }

    /// <summary>A bounds-checked cursor over the mapped header.</summary>
    ref struct Reader(GgufFile file, byte* p, long length)
    {
        long _pos;
        public readonly long Position => _pos;

        // Messages name the field as "<what> '<name>'"; they are only formatted on failure, as this runs per token.
        static string Field(string what, string? name) => name is null ? what : $"{what} '{name}'";

        void Need(long n, string what, string? name)
        {
            if (n < 0 || n > length - _pos)
                throw file.Fail($"truncated: {Field(what, name)} needs {n} bytes at offset {_pos}, file has {length}");
        }

        T Read<T>(string what, string? name = null) where T : unmanaged
        {
            Need(sizeof(T), what, name);
            T v = *(T*)(p + _pos);
            _pos += sizeof(T);
            return v;
        }

        public uint U32(string what, string? name = null) => Read<uint>(what, name);
        public ulong U64(string what, string? name = null) => Read<ulong>(what, name);

        /// <summary>A count whose items take at least <paramref name="minItemBytes"/> each: checked against what
        /// remains.</summary>
        public long Count(string what, int minItemBytes, string? name = null, long max = long.MaxValue)
        {
            ulong n = Read<ulong>(what, name);
            if (n > (ulong)((length - _pos) / minItemBytes))
                throw file.Fail($"{Field(what, name)} {n} is impossible for a file of {length} bytes");
            if (n > (ulong)max) throw file.Fail($"{Field(what, name)} {n} exceeds the limit of {max}");
            return (long)n;
        }

        public string String(string what, string? name = null)
        {
            ulong n = Read<ulong>("length of " + what, name);
            if (n > (ulong)(length - _pos))
                throw file.Fail($"truncated: {Field(what, name)} of {n} bytes at offset {_pos}, file has {length}");
            if (n > MaxStringBytes)
                throw file.Fail($"{Field(what, name)} of {n} bytes exceeds the limit of {MaxStringBytes}");
            var s = Encoding.UTF8.GetString(p + _pos, (int)n);
            _pos += (long)n;
            return s;
        }

        public GgufValue Value(GgufValueType type, string key, int depth) => type switch
        {
            GgufValueType.UInt8 => new(type, Read<byte>("value of", key)),
            GgufValueType.Int8 => new(type, Read<sbyte>("value of", key)),
            GgufValueType.UInt16 => new(type, Read<ushort>("value of", key)),
            GgufValueType.Int16 => new(type, Read<short>("value of", key)),
            GgufValueType.UInt32 => new(type, Read<uint>("value of", key)),
            GgufValueType.Int32 => new(type, Read<int>("value of", key)),
            GgufValueType.Float32 => new(type, Read<float>("value of", key)),
            GgufValueType.Bool => new(type, Bool(key)),
            GgufValueType.String => new(type, String("string value of", key)),
            GgufValueType.UInt64 => new(type, Read<ulong>("value of", key)),
            GgufValueType.Int64 => new(type, Read<long>("value of", key)),
            GgufValueType.Float64 => new(type, Read<double>("value of", key)),
            GgufValueType.Array => Array(key, depth),
            _ => throw file.Fail($"metadata '{key}' has unknown value type {(uint)type}"),
        };

        bool Bool(string key) => Read<byte>("value of", key) switch
        {
            0 => false,
            1 => true,
            var b => throw file.Fail($"metadata '{key}' has bool value {b} (0 or 1 expected)"),
        };

        GgufValue Array(string key, int depth)
        {
            if (depth > 2) throw file.Fail($"metadata '{key}' nests arrays too deeply");
            var et = (GgufValueType)Read<uint>("element type of array", key);
            int minBytes = et switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                GgufValueType.Array => 12,
                _ => throw file.Fail($"metadata '{key}' is an array of unknown type {(uint)et}"),
            };
            long n = Count("length of array", minBytes, key, MaxArrayLength);
            object arr = et switch
            {
                GgufValueType.UInt8 => Fixed<byte>(n, key),
                GgufValueType.Int8 => Fixed<sbyte>(n, key),
                GgufValueType.UInt16 => Fixed<ushort>(n, key),
                GgufValueType.Int16 => Fixed<short>(n, key),
                GgufValueType.UInt32 => Fixed<uint>(n, key),
                GgufValueType.Int32 => Fixed<int>(n, key),
                GgufValueType.Float32 => Fixed<float>(n, key),
                GgufValueType.UInt64 => Fixed<ulong>(n, key),
                GgufValueType.Int64 => Fixed<long>(n, key),
                GgufValueType.Float64 => Fixed<double>(n, key),
                GgufValueType.Bool => Bools(n, key),
                GgufValueType.String => Strings(n, key),
                _ => Nested(n, key, depth),
            };
            return new GgufValue(GgufValueType.Array, arr, et);
        }

        T[] Fixed<T>(long n, string key) where T : unmanaged
        {
            Need(n * sizeof(T), "elements of array", key);
            var a = new ReadOnlySpan<T>(p + _pos, (int)n).ToArray();
            _pos += n * sizeof(T);
            return a;
        }

        bool[] Bools(long n, string key)
        {
            var a = new bool[n];
            for (long i = 0; i < n; i++) a[i] = Bool(key);
            return a;
        }

        string[] Strings(long n, string key)
        {
            var a = new string[n];
            for (long i = 0; i < n; i++) a[i] = String("string in array", key);
            return a;
        }

        GgufValue[] Nested(long n, string key, int depth)
        {
            var a = new GgufValue[n];
            for (long i = 0; i < n; i++) a[i] = Array(key, depth + 1);
            return a;
        }
    }
}
