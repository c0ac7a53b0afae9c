using LLama;
using LLama.Native;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Reference.Tests;

/// <summary>
/// Files quantized by llama.cpp's own quantizer from a random f32 model, run by the ILGPU engine on ILGPU's CPU
/// accelerator (the kernels CUDA runs) against the cpu backend: every matrix held on the device in no more bytes than
/// the file, and the same greedy generation.
/// </summary>
public sealed class IlgpuQuantizedTests(TempDirectory dir) : IClassFixture<TempDirectory>
{
    // the kernels sum in another order than the cpu backend's, so on these flat random-model logits a near-tie parts
    // the two now and then after ~36 tokens (q4_1 and q6_K at token 37 of 48)
    const int Generate = 32;

    /// <summary>The legacy formats' files keep an f32 output matrix, as <see cref="QuantizedParityTests"/>' do; the
    /// K-quant files get llama.cpp's q6_K one.</summary>
    [Theory]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_1, false)]
    [InlineData(LLamaFtype.MOSTLY_Q5_0, false)]
    [InlineData(LLamaFtype.MOSTLY_Q5_1, false)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_M, true)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_M, true)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, true)]
    [InlineData(LLamaFtype.MOSTLY_Q2_K, true)]
    [InlineData(LLamaFtype.MOSTLY_Q3_K_S, true)]
    [InlineData(LLamaFtype.MOSTLY_IQ4_NL, true)]
    [InlineData(LLamaFtype.MOSTLY_IQ4_XS, true)]
    public void Ilgpu_cpu_generates_as_the_cpu_backend_on_a_file_quantized_by_llama_cpp(LLamaFtype ftype,
        bool quantizeOutput)
    {
        // every matrix row a multiple of 256, so llama.cpp keeps the k-quant everywhere
        var shape = new DemoModelShape($"ilgpu-{ftype}", 256, 2, 8, 2, 768, 1024, 512, GgmlType.F32);
        string src = dir.File($"{shape.Name}-f32.gguf"), path = dir.File($"{shape.Name}.gguf");
        DemoModel.Write(src, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        LlamaCppModel.EnsureLoaded();
        Assert.True(LLamaQuantizer.Quantize(src, path, ftype, nthread: 1, quantizeOutputTensor: quantizeOutput));

        using (var file = GgufFile.Open(path))
        using (var gpu = new IlgpuBackend(EngineKind.IlgpuCpu))
            foreach (var t in file.Tensors.Where(t => t.Dims.Length == 2))
            {
                var w = (IlgpuWeight)gpu.LoadWeight(file, t);
                Assert.True(w.DeviceBytes <= t.ByteSize, $"{t.Name} ({t.Type}): {w.DeviceBytes} bytes on the "
                    + $"device for {t.ByteSize} in the file");
            }

        int[] prompt = [1, .. Enumerable.Range(0, 20).Select(i => 259 + (i * 37) % (shape.VocabSize - 259))];
        int[] cpu = ForwardParityTests.GreedyWeft(path, prompt, Generate, KvCacheType.F32);
        int[] ilgpu = ForwardParityTests.GreedyWeft(path, prompt, Generate, KvCacheType.F32, EngineKind.IlgpuCpu);
        Assert.True(cpu.SequenceEqual(ilgpu), $"{ftype}: diverged at token "
            + $"{ForwardParityTests.FirstDifference(cpu, ilgpu)}\ncpu:       {string.Join(",", cpu)}\n"
            + $"ilgpu-cpu: {string.Join(",", ilgpu)}");
        Assert.True(cpu.Distinct().Count() > Generate / 4,
            $"{ftype}: output too repetitive to be a meaningful comparison: {string.Join(",", cpu)}");
    }
}
