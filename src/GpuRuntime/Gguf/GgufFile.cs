using System.IO.MemoryMappedFiles;
using System.Text;

namespace Weft.GpuRuntime.Gguf;

/// <summary>
/// A GGUF file (v2 or v3), memory-mapped read-only. Metadata and tensor descriptors are parsed up front with every
/// size checked against the bytes that remain, so a broken file fails with <see cref="GgufFormatException"/> before
/// anything is allocated from it; tensor data stays in the mapping and is read in place.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint DefaultAlignment = 32;
    const int MaxDims = 4;

    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    readonly Dictionary<string, GgufTensorInfo> _tensorsByName = new(StringComparer.Ordinal);

    public string Path { get; }
    public uint Version { get; }
    public long FileSize { get; }
    public long DataOffset { get; }
    public uint Alignment { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    GgufFile(string path)
    {
        Path = path;
        FileInfo info;
        try { info = new FileInfo(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { throw Fail(e.Message, e); }
        if (!info.Exists) throw Fail("file not found");
        FileSize = info.Length;
        if (FileSize < 24) throw Fail($"truncated: {FileSize} bytes is smaller than a GGUF header");
        try
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Dispose();
            throw Fail($"cannot open: {e.Message}", e);
        }

        try
        {
            var r = new Reader(this, _base, FileSize);
            uint magic = r.U32();
            if (magic != Magic) throw Fail($"not a GGUF file (magic 0x{magic:X8}, expected 0x{Magic:X8} \"GGUF\")");
            Version = r.U32();
            if (Version is 1) throw Fail("GGUF version 1 is not supported (re-convert the model; versions 2 and 3 are)");
            if (Version is not (2 or 3))
                throw Fail((Version & 0xFFFF) == 0 ? "big-endian GGUF is not supported" : $"unsupported GGUF version {Version}");

            long tensorCount = r.Count("tensor count", 8 + 4 + 8 + 4 + 8);
            long kvCount = r.Count("metadata count", 8 + 4 + 1);

            var metadata = new Dictionary<string, GgufValue>((int)Math.Min(kvCount, 4096), StringComparer.Ordinal);
            for (long i = 0; i < kvCount; i++)
            {
                string key = r.String("metadata key");
                var type = (GgufValueType)r.U32();
                var value = r.Value(type, key, depth: 0);
                if (!metadata.TryAdd(key, value)) throw Fail($"duplicate metadata key '{key}'");
            }
            Metadata = metadata;

            Alignment = DefaultAlignment;
            if (metadata.TryGetValue("general.alignment", out var al))
            {
                if (!al.IsInteger || al.AsInt64() is <= 0 or > 1 << 20 || !ulong.IsPow2((ulong)al.AsInt64()))
                    throw Fail($"general.alignment must be a power of two, got {al}");
                Alignment = (uint)al.AsInt64();
            }

            var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 65536));
            for (long i = 0; i < tensorCount; i++)
            {
                string name = r.String("tensor name");
                uint nDims = r.U32();
                if (nDims is 0 or > MaxDims) throw Fail($"tensor '{name}' has {nDims} dimensions (1 to {MaxDims} allowed)");
                var dims = new long[nDims];
                long elements = 1;
                for (int d = 0; d < nDims; d++)
                {
                    ulong dim = r.U64();
                    if (dim == 0 || dim > int.MaxValue) throw Fail($"tensor '{name}' has an impossible dimension {dim}");
                    dims[d] = (long)dim;
                    if (elements > long.MaxValue / (long)dim) throw Fail($"tensor '{name}' has too many elements");
                    elements *= (long)dim;
                }
                uint rawType = r.U32();
                var type = (GgmlType)rawType;
                var layout = GgmlTypeInfo.Layout(type) ?? throw Fail($"tensor '{name}' has unknown type {rawType}");
                if (dims[0] % layout.BlockSize != 0)
                    throw Fail($"tensor '{name}' row of {dims[0]} elements is not a whole number of {type} blocks of {layout.BlockSize}");
                ulong offset = r.U64();
                if (offset % Alignment != 0) throw Fail($"tensor '{name}' offset {offset} is not aligned to {Alignment}");
                if (offset > (ulong)FileSize) throw Fail($"tensor '{name}' offset {offset} lies beyond the end of the file");
                long bytes = elements / layout.BlockSize * layout.BlockBytes;
                var t = new GgufTensorInfo(name, type, dims, (long)offset, bytes);
                if (!_tensorsByName.TryAdd(name, t)) throw Fail($"duplicate tensor '{name}'");
                tensors.Add(t);
            }

            DataOffset = AlignUp(r.Position, Alignment);
            foreach (var t in tensors)
            {
                if (DataOffset + t.Offset + t.ByteSize > FileSize)
                    throw Fail($"truncated: tensor '{t.Name}' ({t.Type}, {t.Shape}) needs bytes up to {DataOffset + t.Offset + t.ByteSize} but the file has {FileSize}");
            }
            Tensors = tensors;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file; every failure is a <see cref="GgufFormatException"/> naming the file.</summary>
    public static GgufFile Open(string path) => new(path);

    public static long AlignUp(long x, long alignment) => (x + alignment - 1) / alignment * alignment;

    internal GgufFormatException Fail(string problem, Exception? inner = null) => new(Path, problem, inner);

    public bool TryGetTensor(string name, out GgufTensorInfo tensor) => _tensorsByName.TryGetValue(name, out tensor!);

    public GgufTensorInfo GetTensor(string name) =>
        _tensorsByName.TryGetValue(name, out var t) ? t : throw Fail($"missing tensor '{name}'");

    /// <summary>Address of a tensor's bytes inside the mapping; valid until this file is disposed.</summary>
    public byte* DataPointer(GgufTensorInfo t) => _base + DataOffset + t.Offset;

    public ReadOnlySpan<byte> Data(GgufTensorInfo t) =>
        t.ByteSize <= int.MaxValue ? new(DataPointer(t), (int)t.ByteSize) : throw Fail($"tensor '{t.Name}' is too large for a span");

    // ---- typed metadata access; a missing key or a wrong type is a format error naming the key ----

    public bool Has(string key) => Metadata.ContainsKey(key);

    public GgufValue Get(string key) => Metadata.TryGetValue(key, out var v) ? v : throw Fail($"missing metadata key '{key}'");

    public string GetString(string key) => Get(key).Value as string ?? throw Fail($"metadata '{key}' should be a string");

    public string? GetStringOrNull(string key) => Metadata.TryGetValue(key, out var v) ? v.Value as string ?? throw Fail($"metadata '{key}' should be a string") : null;

    public long GetInteger(string key)
    {
        var v = Get(key);
        return v.IsInteger ? v.AsInt64() : throw Fail($"metadata '{key}' should be an integer, got {v.Type}");
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

    public T[] GetArray<T>(string key) => Get(key).Value as T[] ?? throw Fail($"metadata '{key}' should be an array of {typeof(T).Name}");

    /// <summary>Integer array of any element width as int[] (token types and ids are stored as i32 or u32 by different tools).</summary>
    public int[] GetIntArray(string key)
    {
        var v = Get(key);
        if (v.Type != GgufValueType.Array) throw Fail($"metadata '{key}' should be an array");
        return v.Value switch
        {
            int[] a => a,
            uint[] a => a.Select(x => checked((int)x)).ToArray(),
            byte[] a => a.Select(x => (int)x).ToArray(),
            sbyte[] a => a.Select(x => (int)x).ToArray(),
            short[] a => a.Select(x => (int)x).ToArray(),
            ushort[] a => a.Select(x => (int)x).ToArray(),
            long[] a => a.Select(x => checked((int)x)).ToArray(),
            ulong[] a => a.Select(x => checked((int)x)).ToArray(),
            _ => throw Fail($"metadata '{key}' should be an integer array, got {v.ElementType}[]"),
        };
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            if (_base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }

    /// <summary>A bounds-checked cursor over the mapped header.</summary>
    ref struct Reader(GgufFile file, byte* p, long length)
    {
        long _pos;
        public readonly long Position => _pos;

        void Need(long n, string what)
        {
            if (n < 0 || n > length - _pos) throw file.Fail($"truncated: {what} needs {n} bytes at offset {_pos}, file has {length}");
        }

        T Read<T>(string what) where T : unmanaged
        {
            Need(sizeof(T), what);
            T v = *(T*)(p + _pos);
            _pos += sizeof(T);
            return v;
        }

        public uint U32() => Read<uint>("header field");
        public ulong U64() => Read<ulong>("header field");

        /// <summary>A count whose items take at least <paramref name="minItemBytes"/> each: checked against what remains.</summary>
        public long Count(string what, int minItemBytes)
        {
            ulong n = Read<ulong>(what);
            if (n > (ulong)((length - _pos) / minItemBytes))
                throw file.Fail($"{what} {n} is impossible for a file of {length} bytes");
            return (long)n;
        }

        public string String(string what)
        {
            ulong n = Read<ulong>(what);
            if (n > (ulong)(length - _pos)) throw file.Fail($"truncated: {what} of {n} bytes at offset {_pos}, file has {length}");
            var s = Encoding.UTF8.GetString(p + _pos, (int)Math.Min(n, int.MaxValue));
            _pos += (long)n;
            return s;
        }

        public GgufValue Value(GgufValueType type, string key, int depth) => type switch
        {
            GgufValueType.UInt8 => new(type, Read<byte>(key)),
            GgufValueType.Int8 => new(type, Read<sbyte>(key)),
            GgufValueType.UInt16 => new(type, Read<ushort>(key)),
            GgufValueType.Int16 => new(type, Read<short>(key)),
            GgufValueType.UInt32 => new(type, Read<uint>(key)),
            GgufValueType.Int32 => new(type, Read<int>(key)),
            GgufValueType.Float32 => new(type, Read<float>(key)),
            GgufValueType.Bool => Read<byte>(key) switch
            {
                0 => new(type, false),
                1 => new(type, true),
                var b => throw file.Fail($"metadata '{key}' has bool value {b}"),
            },
            GgufValueType.String => new(type, String(key)),
            GgufValueType.UInt64 => new(type, Read<ulong>(key)),
            GgufValueType.Int64 => new(type, Read<long>(key)),
            GgufValueType.Float64 => new(type, Read<double>(key)),
            GgufValueType.Array => Array(key, depth),
            _ => throw file.Fail($"metadata '{key}' has unknown value type {(uint)type}"),
        };

        GgufValue Array(string key, int depth)
        {
            if (depth > 2) throw file.Fail($"metadata '{key}' nests arrays too deeply");
            var et = (GgufValueType)Read<uint>(key);
            int minBytes = et switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
                GgufValueType.Array => 12,
                _ => throw file.Fail($"metadata '{key}' is an array of unknown type {(uint)et}"),
            };
            long n = Count($"length of array '{key}'", minBytes);
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
            Need(n * sizeof(T), key);
            var a = new ReadOnlySpan<T>(p + _pos, (int)n).ToArray();
            _pos += n * sizeof(T);
            return a;
        }

        bool[] Bools(long n, string key)
        {
            var a = new bool[n];
            for (long i = 0; i < n; i++) a[i] = (bool)Value(GgufValueType.Bool, key, 0).Value;
            return a;
        }

        string[] Strings(long n, string key)
        {
            var a = new string[n];
            for (long i = 0; i < n; i++) a[i] = String(key);
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
