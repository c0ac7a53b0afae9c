using System.Runtime.Intrinsics.X86;
using LLama;
using LLama.Native;
using Weft.GpuRuntime.Engine;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Reference.Tests;

/// <summary>
/// Greedy generation against llama.cpp on files made by llama.cpp's own quantizer from a random f32 model: the
/// weights are exactly the ones llama.cpp multiplies, so only the kernels' numerics can part the two outputs.
/// </summary>
public sealed class QuantizedParityTests : IClassFixture<TempDirectory>
{
    const int Generate = 48;
    readonly TempDirectory _dir;

    public QuantizedParityTests(TempDirectory dir) => _dir = dir;

    /// <summary>
    /// ftype, the types of the file's non-f32 tensors, the model's shape (every row a multiple of 256). The output
    /// matrix is q6_K, as llama-quantize makes it for these presets; the token embedding gets the ftype's type like
    /// every other matrix.
    /// </summary>
    public static TheoryData<LLamaFtype, GgmlType[], DemoModelShape> Files => new()
    {
        { LLamaFtype.MOSTLY_Q4_0, [GgmlType.Q4_0, GgmlType.Q6_K],
            new DemoModelShape("q4_0", 256, 2, 8, 2, 768, 1024, 512, GgmlType.F32) },
        { LLamaFtype.MOSTLY_Q4_1, [GgmlType.Q4_1, GgmlType.Q6_K],
            new DemoModelShape("q4_1", 256, 2, 8, 2, 768, 1024, 512, GgmlType.F32) },
        { LLamaFtype.MOSTLY_Q5_0, [GgmlType.Q5_0, GgmlType.Q6_K],
            new DemoModelShape("q5_0", 256, 2, 8, 2, 768, 1024, 512, GgmlType.F32) },
        { LLamaFtype.MOSTLY_Q5_1, [GgmlType.Q5_1, GgmlType.Q6_K],
            new DemoModelShape("q5_1", 256, 2, 8, 2, 768, 1024, 512, GgmlType.F32) },
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void Greedy_on_a_file_quantized_by_llama_cpp_matches_llama_cpp(LLamaFtype ftype, GgmlType[] types,
        DemoModelShape shape)
    {
        // Under llama.cpp's AVX2 build (LLamaSharp loads it without AVX-512) the q4_0 file parts at token 14: the
        // attention output follows its AVX-512 build's order (sixteen lanes) and, as a guess, eight lanes on AVX2, and
        // a last-bit difference left somewhere flips a q8_0 quant of the attention output. Not found yet.
        Assert.SkipWhen(ftype == LLamaFtype.MOSTLY_Q4_0 && Avx2.IsSupported && !Avx512F.IsSupported,
            "llama.cpp's AVX2 build parts from Weft at token 14 on the q4_0 file");
        string src = _dir.File($"{shape.Name}-f32.gguf"), path = _dir.File($"{shape.Name}.gguf");
        DemoModel.Write(src, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        LlamaCppModel.EnsureLoaded();
        Assert.True(LLamaQuantizer.Quantize(src, path, ftype, nthread: 1, quantizeOutputTensor: true),
            $"llama.cpp failed to quantize to {ftype}");
        using (var file = GgufFile.Open(path))
            Assert.Equal(types.Order(), file.Tensors.Where(t => t.Type != GgmlType.F32).Select(t => t.Type).Distinct()
                .Order());
        int[] prompt = [1, .. Enumerable.Range(0, 20).Select(i => 259 + (i * 37) % (shape.VocabSize - 259))];

        int[] ours = ForwardParityTests.GreedyWeft(path, prompt, Generate, KvCacheType.F32);
        using var llama = new LlamaCppModel(path, contextSize: 256, f16Cache: false);
        int[] theirs = llama.Greedy(prompt, Generate);

        Assert.True(ours.SequenceEqual(theirs), $"{ftype}: diverged at token {ForwardParityTests.FirstDifference(ours,
            theirs)}\nweft:      {string.Join(",", ours)}\nllama.cpp: {string.Join(",", theirs)}");
        Assert.True(ours.Distinct().Count() > Generate / 4,
            $"{ftype}: output too repetitive to be a meaningful comparison: {string.Join(",", ours)}");
    }
}
