using Weft.Models.Gguf;
using Weft.Models.Tests.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Models.Tests;

/// <summary>The settings each family beyond llama reads from a file, as llama.cpp reads them, on files written by
/// <see cref="DemoModel"/>.</summary>
public sealed class ArchitectureLoadTests : IDisposable
{
    readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    (ModelConfig, ModelWeights) Write(string arch, int layers = 7, int window = 16, float linear = 0)
    {
        var shape = new DemoModelShape(arch, 64, layers, 4, 2, 96, 300, 128, GgmlType.F32, Architecture: arch,
            SlidingWindow: window, RopeLinearFactor: linear);
        string path = _dir.File($"{arch}-{layers}-{window}-{linear}.gguf");
        DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        using var f = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(f);
        return (c, ModelWeights.FromGguf(f, c));
    }

    [Fact]
    public void Qwen3_norms_q_and_k_per_head_and_scales_the_score()
    {
        var (c, w) = Write("qwen3");
        Assert.Equal((true, false, RopeStyle.Neox, FfnActivation.Silu), (c.QkNorm, c.PostNorms, c.Rope, c.Activation));
        Assert.Equal((1f, 0.25f, 0), (c.QueryScale, c.ScoreScale, c.SlidingWindow));
        Assert.Equal(16, w.Layers[0].QNorm!.Dims[0]);
        Assert.Null(w.Layers[0].AttnPostNorm);
    }

    [Fact]
    public void Gemma2_slides_on_every_other_layer_and_caps_scores_and_logits()
    {
        var (c, w) = Write("gemma2");
        Assert.Equal([true, false, true, false, true, false, true],
            Enumerable.Range(0, 7).Select(c.IsSliding));
        Assert.Equal((16, 0), (c.Window(0), c.Window(1)));
        Assert.Equal((50f, 30f), (c.AttentionSoftCap, c.FinalSoftCap));
        Assert.Equal((8f, 0.25f, 1f), (c.EmbeddingScale, c.QueryScale, c.ScoreScale));
        Assert.Equal((false, true, FfnActivation.GeluTanh), (c.QkNorm, c.PostNorms, c.Activation));
        Assert.Same(w.TokenEmbedding, w.Output);
        Assert.Equal("blk.6.post_ffw_norm.weight", w.Layers[6].FfnPostNorm!.Name);
    }

    [Fact]
    public void Gemma3_slides_on_five_layers_of_six_with_its_own_rope_base()
    {
        var (c, _) = Write("gemma3");
        Assert.Equal([true, true, true, true, true, false, true], Enumerable.Range(0, 7).Select(c.IsSliding));
        Assert.Equal((10000f, 10000f, 10000f), (c.RopeBase(0), c.RopeBase(5), c.RopeFreqBaseSliding));
        Assert.Equal((0f, 0f, true), (c.AttentionSoftCap, c.FinalSoftCap, c.QkNorm));
        // without a window in the file no layer slides, as llama.cpp reads gemma3
        var (full, _) = Write("gemma3", window: 0);
        Assert.DoesNotContain(true, Enumerable.Range(0, 7).Select(full.IsSliding));
    }

    [Fact]
    public void Linear_rope_scaling_scales_gemma3s_global_layers_and_every_layer_elsewhere()
    {
        var (gemma, _) = Write("gemma3", linear: 8);
        Assert.Equal((1f, 0.125f, 1f), (gemma.RopeScale(0), gemma.RopeScale(5), gemma.RopeScale(6)));
        // the same base on every layer here, so the sliding layers need angles of their own for the scale alone
        Assert.Equal([true, true, true, true, true, false, true], Enumerable.Range(0, 7).Select(gemma.OwnRope));
        var (qwen, _) = Write("qwen3", linear: 4);
        Assert.All(Enumerable.Range(0, 7), l => Assert.Equal(0.25f, qwen.RopeScale(l)));
        Assert.Equal(1f, Write("qwen3").Item1.RopeScale(0));
    }

    [Fact]
    public void Phi3_fused_tensors_are_split_into_rows_over_the_same_bytes()
    {
        var (c, w) = Write("phi3", layers: 1);
        Assert.Equal((0.25f, 1f, RopeStyle.Neox), (c.QueryScale, c.ScoreScale, c.Rope));
        var l = w.Layers[0];
        long row = GgmlTypeTraits.RowBytes(GgmlType.F32, 64);
        Assert.Equal([64L, 64, 32, 32], new long[] { 64, l.Wq.Rows, l.Wk.Rows, l.Wv.Rows });
        Assert.Equal((l.Wq.Offset + 64 * row, l.Wk.Offset + 32 * row), (l.Wk.Offset, l.Wv.Offset));
        Assert.Equal((96L, 96L, l.Gate.Offset + 96 * row), (l.Gate.Rows, l.Up.Rows, l.Up.Offset));
    }

    [Fact]
    public void LongRoPE_takes_the_long_factors_only_for_sequences_beyond_the_original_context()
    {
        var shape = new DemoModelShape("phi3", 64, 1, 4, 2, 96, 300, 1024, GgmlType.F32, Architecture: "phi3",
            LongRopeOriginalContext: 128);
        string path = _dir.File("longrope.gguf");
        DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        using var f = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(f);

        Assert.Equal(128, c.RopeOriginalContext);
        // the converter's √(1 + ln(1024 / 128) / ln 128)
        Assert.Equal(MathF.Sqrt(1f + MathF.Log(8f) / MathF.Log(128f)), c.RopeAttentionFactor, 1e-6f);
        Assert.Same(c.RopeFactorsLong, c.RopeFreqFactors);
        Assert.Same(c.RopeFactorsShort, c.ForContext(128).RopeFreqFactors);
        Assert.Same(c.RopeFactorsLong, c.ForContext(129).RopeFreqFactors);
        Assert.Equal(8, c.RopeFactorsShort!.Length);
        Assert.True(c.RopeFactorsLong![7] > c.RopeFactorsShort[7]);
    }

    [Fact]
    public void Partial_RoPE_rotates_the_files_dimension_count_with_one_LongRoPE_factor_per_rotated_pair()
    {
        // Phi-4-mini's proportions: 3/4 of each head rotates
        var shape = new DemoModelShape("phi4", 64, 1, 4, 2, 96, 300, 1024, GgmlType.F32, Architecture: "phi3",
            LongRopeOriginalContext: 128, RopeDims: 12);
        string path = _dir.File("partial.gguf");
        DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize));
        using var f = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(f);

        Assert.Equal((16, 12), (c.HeadDim, c.RopeDim));
        Assert.Equal((6, 6, 6), (c.RopeFactorsLong!.Length, c.RopeFactorsShort!.Length, c.RopeFreqFactors!.Length));
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen3")]
    public void Partial_RoPE_on_an_architecture_llama_cpp_does_not_run_it_on_is_not_written(string arch)
    {
        var shape = new DemoModelShape(arch, 64, 1, 4, 2, 96, 300, 128, GgmlType.F32, Architecture: arch,
            RopeDims: 8);
        var e = Assert.Throws<ArgumentException>(() =>
            DemoModel.Write(_dir.File($"{arch}-partial.gguf"), shape, DemoVocabulary.SentencePiece(shape.VocabSize)));
        Assert.Equal($"partial RoPE needs one of gemma2, gemma3, phi3: llama.cpp does not run it on {arch}", e.Message);
        e = Assert.Throws<ArgumentException>(() => DemoModel.Write(_dir.File("odd.gguf"),
            shape with { Architecture = "phi3", RopeDims = 7 }, DemoVocabulary.SentencePiece(shape.VocabSize)));
        Assert.Equal("rope dimensions 7 must be even and within the head dimension 16", e.Message);
    }

    [Fact]
    public void A_qwen3_file_with_partial_RoPE_stops_the_load_with_one_line()
    {
        var m = new TinyModel();
        m.Architecture("qwen3");
        m.Meta["qwen3.rope.dimension_count"] = GgufValue.Of(4u);
        using var f = GgufFile.Open(m.Write(_dir.File("qwen3-partial.gguf")));
        var e = Assert.Throws<GgufFormatException>(() => ModelConfig.FromGguf(f));
        Assert.Contains("partial RoPE (rope.dimension_count 4 < head dimension 8) in a qwen3 file, " +
            "which llama.cpp does not run either", e.Message);
    }

    [Fact]
    public void LongRoPE_factors_in_a_file_of_another_architecture_stop_the_load_with_one_line()
    {
        var m = new TinyModel();
        m.Tensors["rope_factors_long.weight"] = (GgmlType.F32, [4]);
        m.Tensors["rope_factors_short.weight"] = (GgmlType.F32, [4]);
        using var f = GgufFile.Open(m.Write(_dir.File("longrope.gguf")));
        var e = Assert.Throws<GgufFormatException>(() => ModelConfig.FromGguf(f));
        Assert.Contains("LongRoPE factors (rope_factors_long/short.weight) in a llama file", e.Message);
    }
}
