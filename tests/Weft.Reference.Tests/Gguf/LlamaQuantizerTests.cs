using LLama;
using LLama.Native;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Reference.Tests.Gguf;

/// <summary>
/// Files quantized by llama.cpp itself: we must load them, and our dequantized weights must equal ggml's and stay
/// within the quantization error of the f32 weights they came from.
/// </summary>
public sealed class LlamaQuantizerTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("weft-quant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A minimal SentencePiece-style vocabulary: unk, bos, eos, the 256 byte tokens and a few
    /// pieces.</summary>
    static VocabularySpec Vocabulary()
    {
        string[] pieces = ["▁", "▁a", "▁the", "e", "t"];
        string[] tokens = ["<unk>", "<s>", "</s>", .. Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>"), .. pieces];
        int[] types = [(int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control,
            .. Enumerable.Repeat((int)TokenType.Byte, 256), .. Enumerable.Repeat((int)TokenType.Normal, pieces.Length)];
        float[] scores = [0, 0, 0, .. new float[256], .. Enumerable.Range(0, pieces.Length).Select(i => -(float)i)];
        return new VocabularySpec("llama", tokens, types, scores, null, null, BosId: 1, EosId: 2, UnkId: 0, PadId: null,
            AddBos: true, AddSpacePrefix: true, ChatTemplate: null);
    }

    // Every matrix row is a multiple of 256 so llama.cpp has no reason to fall back from the k-quants.
    static readonly DemoModelShape Shape = new("quant-ref", Dim: 256, Layers: 1, Heads: 2, KvHeads: 1, FfnDim: 512,
        VocabSize: 264, ContextLength: 256, Type: GgmlType.F32);

    /// <summary>Largest relative RMS error and largest error per 256 values (relative to their largest magnitude) each
    /// type may show.</summary>
    static (double Rms, double Max) Tolerance(GgmlType t) => t switch
    {
        GgmlType.Q8_0 => (0.01, 0.01),
        GgmlType.Q6_K => (0.04, 0.05),
        GgmlType.Q4_K => (0.15, 0.2),
        _ => throw new InvalidOperationException($"llama.cpp produced {t}, which this test does not expect"),
    };

    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, new[] { GgmlType.Q8_0 })]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, new[] { GgmlType.Q6_K })]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, new[] { GgmlType.Q4_K, GgmlType.Q6_K })]
    public void Quantized_by_llama_cpp_reads_back_within_the_quantization_error(LLamaFtype ftype,
        GgmlType[] expectedTypes)
    {
        string src = Path.Combine(_dir, "f32.gguf"), dst = Path.Combine(_dir, $"{ftype}.gguf");
        DemoModel.Write(src, Shape, Vocabulary());
        LlamaCppModel.EnsureLoaded();
        Assert.True(LLamaQuantizer.Quantize(src, dst, ftype, nthread: 1, quantizeOutputTensor: true),
            $"llama.cpp failed to quantize to {ftype}");

        using var original = GgufFile.Open(src);
        using var quantized = GgufFile.Open(dst);
        var config = ModelConfig.FromGguf(quantized);
        ModelWeights.FromGguf(quantized, config);
        Assert.Equal(ModelConfig.FromGguf(original), config);

        var seen = new HashSet<GgmlType>();
        foreach (var t in quantized.Tensors)
        {
            var o = original.GetTensor(t.Name);
            Assert.Equal(o.Dims, t.Dims);
            if (t.Type == GgmlType.F32)
            {
                Assert.Equal(original.Data(o).ToArray(), quantized.Data(t).ToArray());
                continue;
            }
            seen.Add(t.Type);
            var x = GgmlQuant.Dequantize(GgmlType.F32, original.Data(o), o.ElementCount);
            var y = GgmlQuant.Dequantize(t.Type, quantized.Data(t), t.ElementCount);
            Assert.Equal(GgmlNative.Dequantize(t.Type, quantized.Data(t), (int)t.ElementCount), y);
            if (t.Type == GgmlType.Q8_0)
                Assert.Equal(GgmlQuant.Quantize(GgmlType.Q8_0, x), quantized.Data(t).ToArray());

            var (rmsTol, maxTol) = Tolerance(t.Type);
            double errSq = 0, sq = 0;
            for (int i = 0; i < x.Length; i++)
            { errSq += (x[i] - y[i]) * (double)(x[i] - y[i]); sq += x[i] * (double)x[i]; }
            Assert.True(Math.Sqrt(errSq / sq) <= rmsTol,
                $"{t.Name} ({t.Type}): relative RMS error {Math.Sqrt(errSq / sq):F4} > {rmsTol}");
            for (int b = 0; b < x.Length / 256; b++)
            {
                double amax = 0, err = 0;
                for (int i = b * 256; i < b * 256 + 256; i++)
                { amax = Math.Max(amax, Math.Abs(x[i])); err = Math.Max(err, Math.Abs(x[i] - y[i])); }
                Assert.True(err <= maxTol * amax,
                    $"{t.Name} ({t.Type}) values {b * 256}..: max error {err:G4} > {maxTol} × {amax:G4}");
            }
        }
        Assert.Equal(expectedTypes.Order(), seen.Order());
    }
}
