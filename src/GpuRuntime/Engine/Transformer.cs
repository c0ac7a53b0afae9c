using Weft.Models;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// The llama forward pass over a batch of flattened token rows from many sequences, written once over
/// <see cref="IBackend"/> for every architecture: the config switches on the steps a family adds (embedding scale,
/// q/k norms, post-norms, GeGLU, logit soft-capping); RoPE and attention read their per-layer settings from it.
/// Weights are loaded and activations allocated in the constructor for the largest step; <see cref="Forward"/>
/// allocates nothing.
/// </summary>
public sealed class Transformer
{
    sealed record Layer(DeviceWeight AttnNorm, DeviceWeight Wq, DeviceWeight Wk, DeviceWeight Wv, DeviceWeight Wo,
        DeviceWeight? Bq, DeviceWeight? Bk, DeviceWeight? Bv,
        DeviceWeight FfnNorm, DeviceWeight Gate, DeviceWeight Up, DeviceWeight Down,
        DeviceWeight? QNorm, DeviceWeight? KNorm, DeviceWeight? AttnPostNorm, DeviceWeight? FfnPostNorm);

    readonly IBackend _b;
    readonly ModelConfig _c;
    readonly DeviceWeight _embedding, _outputNorm, _output;
    readonly Layer[] _layers;
    readonly DeviceTensor _x, _xb, _q, _k, _v, _att, _hb, _hb2, _xl, _logits;

    public int MaxTokens { get; }
    public int MaxLogitRows { get; }

    /// <param name="progress">Told the fraction of the file's tensor bytes loaded after each weight; the file's few
    /// tensors read elsewhere (RoPE factors) keep it just short of 1.</param>
    public Transformer(IBackend backend, GgufFile file, ModelConfig config, ModelWeights weights, int maxTokens,
        int maxLogitRows, Action<double>? progress = null)
    {
        _b = backend;
        _c = config;
        MaxTokens = maxTokens;
        MaxLogitRows = maxLogitRows;
        long total = Math.Max(1, file.Tensors.Sum(t => t.ByteSize)), loaded = 0;
        DeviceWeight Load(GgufTensorInfo t)
        {
            var weight = backend.LoadWeight(file, t);
            loaded += t.ByteSize;
            progress?.Invoke((double)loaded / total);
            return weight;
        }
        DeviceWeight? LoadOptional(GgufTensorInfo? t) => t is null ? null : Load(t);

        _embedding = Load(weights.TokenEmbedding);
        _outputNorm = Load(weights.OutputNorm);
        _output = ReferenceEquals(weights.Output, weights.TokenEmbedding) ? _embedding : Load(weights.Output);
        _layers = weights.Layers.Select(l => new Layer(Load(l.AttnNorm), Load(l.Wq), Load(l.Wk), Load(l.Wv), Load(l.Wo),
            LoadOptional(l.Bq), LoadOptional(l.Bk), LoadOptional(l.Bv),
            Load(l.FfnNorm), Load(l.Gate), Load(l.Up), Load(l.Down), LoadOptional(l.QNorm), LoadOptional(l.KNorm),
            LoadOptional(l.AttnPostNorm), LoadOptional(l.FfnPostNorm))).ToArray();

        long T = maxTokens;
        _x = backend.Allocate(T * config.Dim);
        _xb = backend.Allocate(T * Math.Max(config.Dim, config.QDim));
        _q = backend.Allocate(T * config.QDim);
        _k = backend.Allocate(T * config.KvDim);
        _v = backend.Allocate(T * config.KvDim);
        _att = backend.Allocate(T * config.QDim);
        _hb = backend.Allocate(T * config.FfnDim);
        _hb2 = backend.Allocate(T * config.FfnDim);
        _xl = backend.Allocate((long)maxLogitRows * config.Dim);
        _logits = backend.Allocate((long)maxLogitRows * config.VocabSize);
    }

    /// <summary>Runs the step described by <paramref name="s"/> and samples one token per logits row into
    /// <paramref name="sampled"/>.</summary>
    public void Forward(StepInputs s, Span<int> sampled, StepLogprobs logprobs)
    {
        var c = _c;
        int T = s.NumTokens;
        _b.BeginStep(s);
        if (s.NumBlockCopies > 0) _b.CopyKvBlocks(s.BlockCopies.AsSpan(0, s.NumBlockCopies));

        _b.Embed(_embedding, _x, c.Dim);                                              // x   [T, dim]
        if (c.EmbeddingScale != 1f) _b.Scale(_x, T, c.Dim, c.EmbeddingScale);         // x  *= √dim (gemma)
        for (int l = 0; l < _layers.Length; l++)
        {
            var L = _layers[l];
            _b.RmsNormForMatMul(_x, L.AttnNorm, _xb, T, c.Dim, c.RmsEps, L.Wq);       // xb  [T, dim]
            _b.QkvProjection(_xb, L.Wq, L.Wk, L.Wv, L.Bq, L.Bk, L.Bv, _q, _k, _v, T); // q [T, qDim], k, v [T, kvDim]
            if (L.QNorm is { } qn) _b.QkNorm(_q, _k, qn, L.KNorm!, T, c.RmsEps);      // per head, in place
            _b.RopeAndStoreKv(l, _q, _k, _v);                                         // pool[l] ← k, v at each slot
            _b.Attention(l, _q, _att);                                                // att [T, qDim]
            AddToResidual(_att, L.Wo, L.AttnPostNorm, T);                             // x  += (norm) Wo · att

            _b.RmsNormForMatMul(_x, L.FfnNorm, _xb, T, c.Dim, c.RmsEps, L.Gate);      // xb  [T, dim]
            if (c.Activation == FfnActivation.GeluTanh)
                _b.GateUpGeGlu(_xb, L.Gate, L.Up, _hb, _hb2, T);                      // hb  [T, ffn] gelu(G·xb)·U·xb
            else _b.GateUpSwiGlu(_xb, L.Gate, L.Up, _hb, _hb2, T);                    // hb  [T, ffn] silu(G·xb)·U·xb
            AddToResidual(_hb, L.Down, L.FfnPostNorm, T);                             // x  += (norm) Wdown · hb
        }

        int n = s.NumLogitRows;
        if (n == 0)
        {
            // a step of prefill chunks only: its work is done when it returns, as a sampling step's is, so the next
            // step may refill the inputs and a device error belongs to the step that caused it
            _b.Synchronize();
            return;
        }
        _b.GatherNormLogitRows(_x, _outputNorm, _xl, c.Dim, c.RmsEps, _output);      // xl     [n, dim]
        _b.MatMul(_xl, _output, _logits, n);                                          // logits [n, vocab]
        if (c.FinalSoftCap > 0) _b.SoftCap(_logits, n, c.VocabSize, c.FinalSoftCap);
        _b.Sample(_logits, c.VocabSize, sampled[..n], logprobs);                      // sampled[i] ← logits[i]
    }

    void AddToResidual(DeviceTensor x, DeviceWeight w, DeviceWeight? postNorm, int rows)
    {
        if (postNorm is null) _b.MatMulAddResidual(x, w, _xb, _x, rows);
        else _b.MatMulNormAddResidual(x, w, _xb, postNorm, _c.RmsEps, _x, rows);
    }

    /// <summary>The logits of the last step (for tests and parity checks), row i of [NumLogitRows, vocab].</summary>
    public DeviceTensor Logits => _logits;
}
