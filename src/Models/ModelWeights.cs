using Weft.Models.Gguf;

namespace Weft.Models;

/// <summary>One transformer block's tensors (descriptors into the mapped file; no data is copied here).</summary>
public sealed record LayerWeights(
    GgufTensorInfo AttnNorm,
    GgufTensorInfo Wq, GgufTensorInfo Wk, GgufTensorInfo Wv, GgufTensorInfo Wo,
    GgufTensorInfo? Bq, GgufTensorInfo? Bk, GgufTensorInfo? Bv,
    GgufTensorInfo FfnNorm,
    GgufTensorInfo Gate, GgufTensorInfo Up, GgufTensorInfo Down);

/// <summary>
/// The tensors of a llama-family model, looked up by their GGUF names and checked against the config's shapes,
/// so a file with a missing or misshapen tensor fails at load rather than in the middle of a forward pass.
/// </summary>
public sealed record ModelWeights(GgufTensorInfo TokenEmbedding, GgufTensorInfo OutputNorm, GgufTensorInfo Output,
    LayerWeights[] Layers)
{
    /// <summary>Types a matrix may be stored in: those with a reference dequantizer; all are read by both
    /// backends.</summary>
    public static readonly IReadOnlySet<GgmlType> MatrixTypes =
        GgmlTypeTraits.All.Where(t => t.Dequantize is not null).Select(t => t.Type).ToHashSet();

    public static ModelWeights FromGguf(GgufFile f, ModelConfig c)
    {
        GgufTensorInfo Tensor(string name, bool vector, params long[] dims)
        {
            var t = f.GetTensor(name);
            if (!t.Dims.SequenceEqual(dims))
                throw f.Fail($"tensor '{name}' has shape [{string.Join(", ", t.Dims)}], " +
                    $"expected [{string.Join(", ", dims)}]");
            if (vector ? t.Type != GgmlType.F32 : !MatrixTypes.Contains(t.Type))
                throw f.Fail($"tensor '{name}' is stored as {t.Type}, which is not supported for a " +
                    $"{(vector ? "vector (f32 expected)" : "matrix")}");
            return t;
        }

        GgufTensorInfo? Optional(string name, bool vector, params long[] dims) =>
            f.TryGetTensor(name, out _) ? Tensor(name, vector, dims) : null;

        var layers = new LayerWeights[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"blk.{i}.";
            layers[i] = new LayerWeights(
                Tensor(p + "attn_norm.weight", true, c.Dim),
                Tensor(p + "attn_q.weight", false, c.Dim, c.QDim),
                Tensor(p + "attn_k.weight", false, c.Dim, c.KvDim),
                Tensor(p + "attn_v.weight", false, c.Dim, c.KvDim),
                Tensor(p + "attn_output.weight", false, c.QDim, c.Dim),
                c.QkvBias ? Tensor(p + "attn_q.bias", true, c.QDim) : Optional(p + "attn_q.bias", true, c.QDim),
                c.QkvBias ? Tensor(p + "attn_k.bias", true, c.KvDim) : Optional(p + "attn_k.bias", true, c.KvDim),
                c.QkvBias ? Tensor(p + "attn_v.bias", true, c.KvDim) : Optional(p + "attn_v.bias", true, c.KvDim),
                Tensor(p + "ffn_norm.weight", true, c.Dim),
                Tensor(p + "ffn_gate.weight", false, c.Dim, c.FfnDim),
                Tensor(p + "ffn_up.weight", false, c.Dim, c.FfnDim),
                Tensor(p + "ffn_down.weight", false, c.FfnDim, c.Dim));
        }
        var embd = Tensor("token_embd.weight", false, c.Dim, c.VocabSize);
        // Tied embeddings (no output.weight) reuse the embedding matrix as the output projection, as llama.cpp does.
        var output = Optional("output.weight", false, c.Dim, c.VocabSize) ?? embd;
        return new ModelWeights(embd, Tensor("output_norm.weight", true, c.Dim), output, layers);
    }
}
