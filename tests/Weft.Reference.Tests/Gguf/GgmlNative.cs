using System.Runtime.InteropServices;
using Weft.LlamaCpp;
using Weft.Models.Gguf;

namespace Weft.Reference.Tests.Gguf;

/// <summary>
/// ggml's own reference row conversions, called in the libggml-base that llama.cpp links against, so that our
/// conversions can be compared with llama.cpp's bit for bit. Function pointers rather than [DllImport] because the
/// library lives in a LLamaSharp runtime folder that only LLamaSharp's own loader knows.
/// </summary>
static unsafe class GgmlNative
{
    static readonly nint Lib = Load();

    static nint Load()
    {
        LlamaCppModel.EnsureLoaded(); // llama.cpp, and with it ggml-base
        // Already loaded as a dependency of llama.cpp, so the bare name resolves to that copy.
        string name = OperatingSystem.IsWindows() ? "ggml-base.dll"
            : OperatingSystem.IsMacOS() ? "libggml-base.dylib" : "libggml-base.so";
        return NativeLibrary.Load(name);
    }

    static readonly nint CpuLib = NativeLibrary.Load(OperatingSystem.IsWindows() ? "ggml-cpu.dll"
        : OperatingSystem.IsMacOS() ? "libggml-cpu.dylib" : "libggml-cpu.so");

    /// <summary>ggml-cpu's GELU table (the f16 GELU of every f16 input, GGML_GELU_FP16), as ggml_cpu_init fills
    /// it.</summary>
    public static ushort[] GeluTable()
    {
        ((delegate* unmanaged<void>)NativeLibrary.GetExport(CpuLib, "ggml_cpu_init"))();
        return new ReadOnlySpan<ushort>((void*)NativeLibrary.GetExport(CpuLib, "ggml_table_gelu_f16"), 1 << 16)
            .ToArray();
    }

    /// <summary>ggml-cpu's quantize_row_q8_K: activations as its K-quant dot products take them (block_q8_K: f32 d,
    /// int8 qs[256], int16 bsums[16]; 292 bytes).</summary>
    public static byte[] QuantizeQ8K(ReadOnlySpan<float> x)
    {
        var fn = (delegate* unmanaged<float*, void*, long, void>)NativeLibrary.GetExport(CpuLib, "quantize_row_q8_K");
        var dst = new byte[x.Length / 256 * 292];
        fixed (float* s = x)
        fixed (byte* d = dst)
            fn(s, d, x.Length);
        return dst;
    }

    /// <summary>ggml-cpu's dot product of one row of <paramref name="type"/> with q8_K activations
    /// (ggml_vec_dot_*_q8_K, the build's SIMD path).</summary>
    public static float VecDotQ8K(GgmlType type, ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8k, int n)
    {
        var fn = (delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void>)
            NativeLibrary.GetExport(CpuLib, $"ggml_vec_dot_{GgmlTypeTraits.Of(type).Name}_q8_K");
        float s;
        fixed (byte* pw = w)
        fixed (byte* px = xq8k)
            fn(n, &s, 0, pw, 0, px, 0, 1);
        return s;
    }

    /// <summary>ggml-cpu's quantize_row_q8_0: activations as its q8_0 dot products take them (block_q8_0: f16 d,
    /// int8 qs[32]; 34 bytes).</summary>
    public static byte[] QuantizeQ8_0(ReadOnlySpan<float> x)
    {
        var fn = (delegate* unmanaged<float*, void*, long, void>)NativeLibrary.GetExport(CpuLib, "quantize_row_q8_0");
        var dst = new byte[x.Length / 32 * 34];
        fixed (float* s = x)
        fixed (byte* d = dst)
            fn(s, d, x.Length);
        return dst;
    }

    /// <summary>ggml-cpu's dot product of one iq4_nl row with q8_0 activations (the build's vec_dot).</summary>
    public static float VecDotIQ4NL(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8, int n)
    {
        var fn = (delegate* unmanaged<int, float*, nuint, void*, nuint, void*, nuint, int, void>)
            NativeLibrary.GetExport(CpuLib, "ggml_vec_dot_iq4_nl_q8_0");
        float s;
        fixed (byte* pw = w)
        fixed (byte* px = xq8)
            fn(n, &s, 0, pw, 0, px, 0, 1);
        return s;
    }

    /// <summary>
    /// ggml-cpu's gemv over eight iq4_nl rows repacked as its AVX2 builds repack them (block_iq4_nlx8: the eight f16
    /// scales of a block column, then its quants in runs of 8 bytes taking the rows in turn) against one q8_0 row.
    /// </summary>
    public static float[] GemvIQ4NL8x8(ReadOnlySpan<byte> rows8, ReadOnlySpan<byte> xq8, int n)
    {
        int blocks = n / 32;
        var packed = new byte[blocks * 144];
        for (int b = 0; b < blocks; b++)
            for (int row = 0; row < 8; row++)
            {
                var block = rows8.Slice((row * blocks + b) * 18, 18);
                block[..2].CopyTo(packed.AsSpan(b * 144 + 2 * row));
                for (int half = 0; half < 2; half++)
                    block.Slice(2 + 8 * half, 8).CopyTo(packed.AsSpan(b * 144 + 16 + 64 * half + 8 * row));
            }
        var fn = (delegate* unmanaged<int, float*, nuint, void*, void*, int, int, void>)
            NativeLibrary.GetExport(CpuLib, "ggml_gemv_iq4_nl_8x8_q8_0");
        var s = new float[8];
        fixed (float* ps = s)
        fixed (byte* pw = packed)
        fixed (byte* px = xq8)
            fn(n, ps, 8, pw, px, 1, 8);
        return s;
    }

    /// <summary>
    /// ggml-cpu's gemv over eight q2_K rows repacked as its AVX-512 builds repack them (block_q2_Kx8: the eight d, the
    /// eight dmin, the scale bytes of sub-block pairs row by row, then the quants in runs of 8 bytes taking the rows
    /// in turn) against one q8_K row.
    /// </summary>
    public static float[] GemvQ2K8x8(byte[] rows8, ReadOnlySpan<byte> xq8k, int n)
    {
        const int packedBytes = 16 + 16 + 128 + 512;
        int blocks = n / 256;
        var packed = new byte[blocks * packedBytes];
        for (int b = 0; b < blocks; b++)
        {
            var dst = packed.AsSpan(b * packedBytes, packedBytes);
            ReadOnlySpan<byte> Block(int row) => rows8.AsSpan((row * blocks + b) * 84, 84);
            for (int row = 0; row < 8; row++)
            {
                Block(row).Slice(80, 2).CopyTo(dst[(2 * row)..]);
                Block(row).Slice(82, 2).CopyTo(dst[(16 + 2 * row)..]);
            }
            for (int i = 0; i < 128; i++) dst[32 + i] = Block(i % 16 / 2)[i / 16 * 2 + i % 2];
            for (int i = 0; i < 64; i++) Block(i % 8).Slice(16 + i / 8 * 8, 8).CopyTo(dst[(160 + 8 * i)..]);
        }
        var fn = (delegate* unmanaged<int, float*, nuint, void*, void*, int, int, void>)
            NativeLibrary.GetExport(CpuLib, "ggml_gemv_q2_K_8x8_q8_K");
        var s = new float[8];
        fixed (float* ps = s)
        fixed (byte* pw = packed)
        fixed (byte* px = xq8k)
            fn(n, ps, 8, pw, px, 1, 8);
        return s;
    }

    static delegate* unmanaged<void*, void*, long, void> Row(string symbol) =>
        (delegate* unmanaged<void*, void*, long, void>)NativeLibrary.GetExport(Lib, symbol);

    public static float[] Dequantize(GgmlType type, ReadOnlySpan<byte> src, int n)
    {
        var fn = Row(type switch
        {
            GgmlType.F16 => "ggml_fp16_to_fp32_row",
            GgmlType.BF16 => "ggml_bf16_to_fp32_row",
            GgmlType.Q8_0 => "dequantize_row_q8_0",
            GgmlType.Q4_0 => "dequantize_row_q4_0",
            GgmlType.Q4_1 => "dequantize_row_q4_1",
            GgmlType.Q5_0 => "dequantize_row_q5_0",
            GgmlType.Q5_1 => "dequantize_row_q5_1",
            GgmlType.Q2_K => "dequantize_row_q2_K",
            GgmlType.Q3_K => "dequantize_row_q3_K",
            GgmlType.Q4_K => "dequantize_row_q4_K",
            GgmlType.Q5_K => "dequantize_row_q5_K",
            GgmlType.Q6_K => "dequantize_row_q6_K",
            GgmlType.IQ4_NL => "dequantize_row_iq4_nl",
            GgmlType.IQ4_XS => "dequantize_row_iq4_xs",
            _ => throw new ArgumentException($"no ggml dequantizer wired up for {type}"),
        });
        if (src.Length < GgmlTypeTraits.RowBytes(type, n)) throw new ArgumentException("source too short");
        var dst = new float[n];
        fixed (byte* s = src)
        fixed (float* d = dst)
            fn(s, d, n);
        return dst;
    }

    public static byte[] Quantize(GgmlType type, ReadOnlySpan<float> x)
    {
        var fn = Row(type switch
        {
            GgmlType.F16 => "ggml_fp32_to_fp16_row",
            GgmlType.BF16 => "ggml_fp32_to_bf16_row_ref",
            GgmlType.Q8_0 => "quantize_row_q8_0_ref",
            GgmlType.Q4_0 => "quantize_row_q4_0_ref",
            GgmlType.Q2_K => "quantize_row_q2_K_ref",
            GgmlType.Q3_K => "quantize_row_q3_K_ref",
            GgmlType.Q4_K => "quantize_row_q4_K_ref",
            GgmlType.Q5_K => "quantize_row_q5_K_ref",
            GgmlType.Q6_K => "quantize_row_q6_K_ref",
            GgmlType.IQ4_NL => "quantize_row_iq4_nl_ref",
            GgmlType.IQ4_XS => "quantize_row_iq4_xs_ref",
            _ => throw new ArgumentException($"no ggml quantizer wired up for {type}"),
        });
        var dst = new byte[GgmlTypeTraits.RowBytes(type, x.Length)];
        fixed (float* s = x)
        fixed (byte* d = dst)
            fn(s, d, x.Length);
        return dst;
    }

    /// <summary>ggml's own type traits: name, elements per block, bytes per block (ggml_type_name, ggml_blck_size,
    /// ggml_type_size).</summary>
    public static (string Name, long BlockSize, long BlockBytes) Traits(GgmlType type)
    {
        var name = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(Lib, "ggml_type_name");
        var blockSize = (delegate* unmanaged<int, long>)NativeLibrary.GetExport(Lib, "ggml_blck_size");
        var typeSize = (delegate* unmanaged<int, nuint>)NativeLibrary.GetExport(Lib, "ggml_type_size");
        return (Marshal.PtrToStringUTF8((nint)name((int)type))!, blockSize((int)type), (long)typeSize((int)type));
    }
}
