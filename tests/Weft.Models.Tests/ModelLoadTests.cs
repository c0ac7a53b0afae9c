using Weft.Models.Gguf;
using Weft.Models.Tests.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Models.Tests;

/// <summary>A one-layer llama file (dim 32, 4 heads, 2 kv heads, ffn 64, 8 tokens) that a test edits before
/// writing.</summary>
sealed class TinyModel
{
    public const int Dim = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Ffn = 64, Vocab = 8;

    public Dictionary<string, GgufValue> Meta { get; } = new()
    {
        ["general.architecture"] = GgufValue.Of("llama"),
        ["llama.context_length"] = GgufValue.Of(64u),
        ["llama.embedding_length"] = GgufValue.Of((uint)Dim),
        ["llama.block_count"] = GgufValue.Of(1u),
        ["llama.feed_forward_length"] = GgufValue.Of((uint)Ffn),
        ["llama.attention.head_count"] = GgufValue.Of((uint)Heads),
        ["llama.attention.head_count_kv"] = GgufValue.Of((uint)KvHeads),
        ["llama.attention.layer_norm_rms_epsilon"] = GgufValue.Of(1e-6f),
        ["llama.rope.freq_base"] = GgufValue.Of(500000f),
        ["llama.vocab_size"] = GgufValue.Of((uint)Vocab),
        ["tokenizer.ggml.tokens"] = GgufValue.Of(Enumerable.Range(0, Vocab).Select(i => $"t{i}").ToArray()),
    };

    // Every matrix type the engine reads that fits a 32-wide row, spread over the matrices.
    public Dictionary<string, (GgmlType Type, long[] Dims)> Tensors { get; } = new()
    {
        ["token_embd.weight"] = (GgmlType.F16, [Dim, Vocab]),
        ["blk.0.attn_norm.weight"] = (GgmlType.F32, [Dim]),
        ["blk.0.attn_q.weight"] = (GgmlType.F16, [Dim, Heads * HeadDim]),
        ["blk.0.attn_k.weight"] = (GgmlType.Q8_0, [Dim, KvHeads * HeadDim]),
        ["blk.0.attn_v.weight"] = (GgmlType.Q4_0, [Dim, KvHeads * HeadDim]),
        ["blk.0.attn_output.weight"] = (GgmlType.BF16, [Heads * HeadDim, Dim]),
        ["blk.0.ffn_norm.weight"] = (GgmlType.F32, [Dim]),
        ["blk.0.ffn_gate.weight"] = (GgmlType.F32, [Dim, Ffn]),
        ["blk.0.ffn_up.weight"] = (GgmlType.F16, [Dim, Ffn]),
        ["blk.0.ffn_down.weight"] = (GgmlType.Q8_0, [Ffn, Dim]),
        ["output_norm.weight"] = (GgmlType.F32, [Dim]),
        ["output.weight"] = (GgmlType.Q8_0, [Dim, Vocab]),
    };

    /// <summary>Renames the architecture, moving every "llama." key to the new prefix.</summary>
    public void Architecture(string arch)
    {
        foreach (var key in Meta.Keys.Where(k => k.StartsWith("llama.")).ToList())
        {
            Meta[arch + key["llama".Length..]] = Meta[key];
            Meta.Remove(key);
        }
        Meta["general.architecture"] = GgufValue.Of(arch);
    }

    public string Write(string path)
    {
        var w = new GgufWriter();
        foreach (var (k, v) in Meta) w.Add(k, v);
        foreach (var (name, (type, dims)) in Tensors)
            w.AddTensor(name, type, dims, new byte[GgmlTypeTraits.RowBytes(type, dims.Aggregate(1L, (a, d) => a * d))]);
        w.Write(path);
        return path;
    }
}

public sealed class ModelLoadTests : IDisposable
{
    readonly TempDir _dir = new();
    int _files;

    public void Dispose() => _dir.Dispose();

    (ModelConfig, ModelWeights) Load(TinyModel m)
    {
        using var f = GgufFile.Open(m.Write(_dir.File($"m{_files++}.gguf")));
        var c = ModelConfig.FromGguf(f);
        return (c, ModelWeights.FromGguf(f, c));
    }

    void Fails(Action<TinyModel> edit, string problem)
    {
        var m = new TinyModel();
        edit(m);
        string path = m.Write(_dir.File($"m{_files++}.gguf"));
        using var f = GgufFile.Open(path);
        var e = Assert.Throws<GgufFormatException>(() => ModelWeights.FromGguf(f, ModelConfig.FromGguf(f)));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Valid_file_gives_config_and_weights()
    {
        var (c, w) = Load(new TinyModel());

        Assert.Equal(("llama", 32, 1, 4, 2, 8, 64, 8, 64),
            (c.Architecture, c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize, c.ContextLength));
        Assert.Equal((1e-6f, 500000f, RopeStyle.Norm, 8, false),
            (c.RmsEps, c.RopeFreqBase, c.Rope, c.RopeDim, c.QkvBias));
        Assert.Equal((32, 16), (c.QDim, c.KvDim));
        Assert.Equal("output.weight", w.Output.Name);
        Assert.Equal("token_embd.weight", w.TokenEmbedding.Name);
        var l = Assert.Single(w.Layers);
        Assert.Equal([GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.BF16],
            new[] { l.Wq, l.Wk, l.Wv, l.Wo }.Select(t => t.Type));
        Assert.Null(l.Bq);
    }

    [Fact]
    public void Optional_metadata_and_tied_output_fall_back_as_llama_cpp_does()
    {
        var m = new TinyModel();
        m.Tensors.Remove("output.weight");
        foreach (var k in new[] { "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base", "llama.vocab_size",
            "tokenizer.ggml.tokens" }) m.Meta.Remove(k);
        var (c, w) = Load(m);
        Assert.Same(w.TokenEmbedding, w.Output);
        Assert.Equal((1e-5f, 10000f, 8), (c.RmsEps, c.RopeFreqBase, c.VocabSize));
    }

    [Fact]
    public void Qwen2_needs_qkv_biases_and_rotates_halves()
    {
        var m = new TinyModel();
        m.Architecture("qwen2");
        m.Tensors["blk.0.attn_q.bias"] = (GgmlType.F32, [32]);
        m.Tensors["blk.0.attn_k.bias"] = (GgmlType.F32, [16]);
        m.Tensors["blk.0.attn_v.bias"] = (GgmlType.F32, [16]);
        var (c, w) = Load(m);
        Assert.Equal((RopeStyle.Neox, true), (c.Rope, c.QkvBias));
        Assert.Equal("blk.0.attn_v.bias", w.Layers[0].Bv!.Name);

        Fails(m => { m.Architecture("qwen2"); }, "missing tensor 'blk.0.attn_q.bias'");
        Fails(m =>
        {
            m.Architecture("qwen2");
            m.Tensors["blk.0.attn_q.bias"] = (GgmlType.F32, [32]);
            m.Tensors["blk.0.attn_k.bias"] = (GgmlType.F32, [32]);
        }, "tensor 'blk.0.attn_k.bias' has shape [32], expected [16]");
    }

    [Fact]
    public void Every_required_tensor_missing()
    {
        foreach (var name in new TinyModel().Tensors.Keys.Where(n => n != "output.weight"))
            Fails(m => m.Tensors.Remove(name), $"missing tensor '{name}'");
    }

    [Theory]
    [InlineData("general.architecture")]
    [InlineData("llama.embedding_length")]
    [InlineData("llama.block_count")]
    [InlineData("llama.feed_forward_length")]
    [InlineData("llama.attention.head_count")]
    [InlineData("llama.context_length")]
    public void Required_metadata_missing(string key) =>
        Fails(m => m.Meta.Remove(key), $"missing metadata key '{key}'");

    [Fact]
    public void Metadata_of_the_wrong_type_or_range()
    {
        Fails(m => m.Meta["general.architecture"] = GgufValue.Of(1u),
            "metadata 'general.architecture' should be a string");
        Fails(m => m.Meta["llama.block_count"] = GgufValue.Of("1"),
            "metadata 'llama.block_count' should be an integer, got String");
        Fails(m => m.Meta["llama.attention.head_count_kv"] = GgufValue.Of([2, 2]),
            "metadata 'llama.attention.head_count_kv' should be an integer, got Array");
        Fails(m => m.Meta["llama.context_length"] = GgufValue.Of(ulong.MaxValue),
            "metadata 'llama.context_length' = 18446744073709551615 is too large");
        Fails(m => m.Meta["llama.block_count"] = GgufValue.Of(0u), "metadata 'llama.block_count' = 0 is out of range");
        Fails(m => m.Meta["llama.embedding_length"] = GgufValue.Of(-32),
            "metadata 'llama.embedding_length' = -32 is out of range");
        Fails(m => m.Meta["llama.attention.layer_norm_rms_epsilon"] = GgufValue.Of(0f),
            "layer_norm_rms_epsilon 0 is out of range");
        Fails(m => m.Meta["llama.rope.freq_base"] = GgufValue.Of("10000"),
            "metadata 'llama.rope.freq_base' should be a number");
        Fails(m => m.Meta["llama.rope.scaling.type"] = GgufValue.Of("yarn"),
            "RoPE scaling 'yarn' is not supported (only linear)");
        Fails(m => m.Meta["llama.rope.scaling.type"] = GgufValue.Of("linear"),
            "rope.scaling.type linear needs rope.scaling.factor");
        Fails(m =>
        {
            m.Meta["llama.rope.scaling.type"] = GgufValue.Of("linear");
            m.Meta["llama.rope.scaling.factor"] = GgufValue.Of(0.5f);
        }, "rope.scaling.factor 0.5 is out of range");
        Fails(m => m.Meta["tokenizer.ggml.tokens"] = GgufValue.Of([1, 2]),
            "metadata 'tokenizer.ggml.tokens' should be an array of String");
    }

    [Theory]
    [InlineData("falcon")]
    [InlineData("gpt2")]
    [InlineData("gemma")]
    [InlineData("")]
    public void Unsupported_architecture(string arch) =>
        Fails(m => m.Architecture(arch), $"architecture '{arch}' is not supported");

    [Fact]
    public void Head_geometry_that_does_not_work()
    {
        Fails(m => m.Meta["llama.attention.head_count_kv"] = GgufValue.Of(3u),
            "head_count 4 is not a multiple of head_count_kv 3");
        Fails(m =>
        {
            m.Meta["llama.attention.head_count"] = GgufValue.Of(3u);
            m.Meta["llama.attention.head_count_kv"] = GgufValue.Of(1u);
        }, "embedding_length 32 is not a multiple of head_count 3");
        Fails(m => m.Meta["llama.attention.key_length"] = GgufValue.Of(7u), "head dimension 7 must be even");
        Fails(m => m.Meta["llama.attention.value_length"] = GgufValue.Of(16u), "value_length differs from key_length");
        Fails(m => m.Meta["llama.rope.dimension_count"] = GgufValue.Of(4u),
            "partial RoPE (rope.dimension_count 4 < head dimension 8) in a llama file, which llama.cpp does not run " +
            "either");
        Fails(m => m.Meta["llama.rope.dimension_count"] = GgufValue.Of(5u), "rope.dimension_count 5 must be even");
        // key_length overrides dim / heads, and the tensors must then follow it.
        Fails(m => m.Meta["llama.attention.key_length"] = GgufValue.Of(16u),
            "tensor 'blk.0.attn_q.weight' has shape [32, 32], expected [32, 64]");
    }

    [Fact]
    public void Vocabulary_size_disagreeing_with_the_embedding()
    {
        Fails(m => m.Meta["llama.vocab_size"] = GgufValue.Of(9u), "llama.vocab_size 9 differs from token_embd rows 8");
        Fails(m => m.Meta["tokenizer.ggml.tokens"] = GgufValue.Of(["a", "b", "c"]),
            "tokenizer has 3 tokens but token_embd.weight has 8 rows");
        Fails(m => m.Tensors["output.weight"] = (GgmlType.Q8_0, [32, 9]),
            "tensor 'output.weight' has shape [32, 9], expected [32, 8]");
    }

    [Fact]
    public void Shape_mismatches()
    {
        Fails(m => m.Tensors["blk.0.attn_q.weight"] = (GgmlType.F16, [32, 16]),
            "tensor 'blk.0.attn_q.weight' has shape [32, 16], expected [32, 32]");
        Fails(m => m.Tensors["blk.0.ffn_down.weight"] = (GgmlType.F32, [32, 64]),
            "tensor 'blk.0.ffn_down.weight' has shape [32, 64], expected [64, 32]");
        Fails(m => m.Tensors["blk.0.attn_norm.weight"] = (GgmlType.F32, [32, 1]),
            "tensor 'blk.0.attn_norm.weight' has shape [32, 1], expected [32]");
        Fails(m => m.Tensors["token_embd.weight"] = (GgmlType.F16, [16, 8]),
            "tensor 'token_embd.weight' has shape [16, 8], expected [32, vocabulary size]");
        Fails(m => m.Tensors["token_embd.weight"] = (GgmlType.F16, [32, 8, 1]),
            "tensor 'token_embd.weight' has shape [32, 8, 1]");
        Fails(m => m.Meta["llama.block_count"] = GgufValue.Of(2u), "missing tensor 'blk.1.attn_norm.weight'");
    }

    [Theory]
    [InlineData(GgmlType.Q8_1)]
    [InlineData(GgmlType.I32)]
    [InlineData(GgmlType.F64)]
    public void Unsupported_matrix_type(GgmlType type) =>
        Fails(m => m.Tensors["blk.0.attn_k.weight"] = (type, [32, 16]),
            $"tensor 'blk.0.attn_k.weight' is stored as {type}, which is not supported for a matrix");

    [Fact]
    public void Vectors_must_be_f32() =>
        Fails(m => m.Tensors["output_norm.weight"] = (GgmlType.F16, [32]),
            "tensor 'output_norm.weight' is stored as F16, which is not supported for a vector (f32 expected)");

    [Theory]
    [InlineData(GgmlType.F32, null)]
    [InlineData(GgmlType.F16, null)]
    [InlineData(GgmlType.BF16, null)]
    [InlineData(GgmlType.Q8_0, 16)]
    public void Demo_models_load_with_the_shape_they_were_written_with(GgmlType type, int? headDim)
    {
        var shape = new DemoModelShape("t", 64, 2, 4, 2, 96, 300, 128, type, 20000f, headDim);
        var vocab = new VocabularySpec("llama", Enumerable.Range(0, 300).Select(i => $"p{i}").ToArray(),
            Enumerable.Repeat((int)TokenType.Normal, 300).ToArray(), new float[300], null, null, 1, 2, 0, null, true,
            true, null);
        string path = _dir.File($"demo-{type}-{headDim}.gguf");
        DemoModel.Write(path, shape, vocab);

        using var f = GgufFile.Open(path);
        var c = ModelConfig.FromGguf(f);
        var w = ModelWeights.FromGguf(f, c);
        Assert.Equal((64, 2, 4, 2, headDim ?? 16, 96, 300, 128, 20000f),
            (c.Dim, c.Layers, c.Heads, c.KvHeads, c.HeadDim, c.FfnDim, c.VocabSize, c.ContextLength, c.RopeFreqBase));
        Assert.All(w.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down }),
            t => Assert.Equal(type, t.Type));
        Assert.Equal(2, w.Layers.Length);
    }
}
