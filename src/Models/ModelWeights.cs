using Weft.Models.Gguf;

namespace Weft.Models;

/// <summary>One transformer block's tensors (descriptors into the mapped file; no data is copied here). The norms
/// after the first line are present only where the architecture has them.</summary>
public sealed record LayerWeights(
    GgufTensorInfo AttnNorm,
    GgufTensorInfo Wq, GgufTensorInfo Wk, GgufTensorInfo Wv, GgufTensorInfo Wo,
    GgufTensorInfo? Bq, GgufTensorInfo? Bk, GgufTensorInfo? Bv,
    GgufTensorInfo FfnNorm,
    GgufTensorInfo Gate, GgufTensorInfo Up, GgufTensorInfo Down,
    GgufTensorInfo? QNorm = null, GgufTensorInfo? KNorm = null,
    GgufTensorInfo? AttnPostNorm = null, GgufTensorInfo? FfnPostNorm = null);

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
            // phi3 stores q, k, v as one matrix and gate, up as another: their rows are split here, which leaves
            // every output's dot product as it was
            var qkv = Optional(p + "attn_qkv.weight", false, c.Dim, c.QDim + 2 * c.KvDim);
            bool fusedGateUp = !f.TryGetTensor(p + "ffn_gate.weight", out _)
                && f.TryGetTensor(p + "ffn_up.weight", out var up) && up.Dims.SequenceEqual([c.Dim, 2L * c.FfnDim]);
            var gateUp = fusedGateUp ? Tensor(p + "ffn_up.weight", false, c.Dim, 2 * c.FfnDim) : null;
            layers[i] = new LayerWeights(
                Tensor(p + "attn_norm.weight", true, c.Dim),
                qkv is null ? Tensor(p + "attn_q.weight", false, c.Dim, c.QDim) : Rows(qkv, 0, c.QDim),
                qkv is null ? Tensor(p + "attn_k.weight", false, c.Dim, c.KvDim) : Rows(qkv, c.QDim, c.KvDim),
                qkv is null ? Tensor(p + "attn_v.weight", false, c.Dim, c.KvDim)
                    : Rows(qkv, c.QDim + c.KvDim, c.KvDim),
                Tensor(p + "attn_output.weight", false, c.QDim, c.Dim),
                c.QkvBias ? Tensor(p + "attn_q.bias", true, c.QDim) : Optional(p + "attn_q.bias", true, c.QDim),
                c.QkvBias ? Tensor(p + "attn_k.bias", true, c.KvDim) : Optional(p + "attn_k.bias", true, c.KvDim),
                c.QkvBias ? Tensor(p + "attn_v.bias", true, c.KvDim) : Optional(p + "attn_v.bias", true, c.KvDim),
                Tensor(p + "ffn_norm.weight", true, c.Dim),
                gateUp is null ? Tensor(p + "ffn_gate.weight", false, c.Dim, c.FfnDim) : Rows(gateUp, 0, c.FfnDim),
                gateUp is null ? Tensor(p + "ffn_up.weight", false, c.Dim, c.FfnDim)
                    : Rows(gateUp, c.FfnDim, c.FfnDim),
                Tensor(p + "ffn_down.weight", false, c.FfnDim, c.Dim),
                c.QkNorm ? Tensor(p + "attn_q_norm.weight", true, c.HeadDim) : null,
                c.QkNorm ? Tensor(p + "attn_k_norm.weight", true, c.HeadDim) : null,
                c.PostNorms ? Tensor(p + "post_attention_norm.weight", true, c.Dim) : null,
                c.PostNorms ? Tensor(p + "post_ffw_norm.weight", true, c.Dim) : null);
        }
        var embd = Tensor("token_embd.weight", false, c.Dim, c.VocabSize);
        // Tied embeddings (no output.weight) reuse the embedding matrix as the output projection, as llama.cpp does.
        var output = Optional("output.weight", false, c.Dim, c.VocabSize) ?? embd;
        return new ModelWeights(embd, Tensor("output_norm.weight", true, c.Dim), output, layers);
    }

    /// <summary>Rows [row0, row0 + rows) of a matrix, as a tensor of its own over the same bytes.</summary>
    static GgufTensorInfo Rows(GgufTensorInfo t, long row0, long rows)
    {
        long rowBytes = GgmlTypeTraits.RowBytes(t.Type, t.Columns);
        return new GgufTensorInfo($"{t.Name}[{row0}..{row0 + rows})", t.Type, [t.Columns, rows],
            t.Offset + row0 * rowBytes, rows * rowBytes);
    }
}
