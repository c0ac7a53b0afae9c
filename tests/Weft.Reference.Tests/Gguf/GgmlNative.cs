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
            GgmlType.Q4_K => "dequantize_row_q4_K",
            GgmlType.Q6_K => "dequantize_row_q6_K",
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
            GgmlType.Q4_K => "quantize_row_q4_K_ref",
            GgmlType.Q6_K => "quantize_row_q6_K_ref",
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
