using Weft.Models.Gguf;

namespace Weft.Models;

/// <summary>How RoPE pairs dimensions: Norm rotates adjacent pairs (llama), Neox rotates the two halves (qwen2,
/// gpt-neox).</summary>
public enum RopeStyle { Norm, Neox }

/// <summary>The gated feed-forward's activation: SwiGLU (llama, qwen, phi3) or GeGLU with tanh-approximated GELU
/// (gemma).</summary>
public enum FfnActivation { Silu, GeluTanh }

/// <summary>Hyper-parameters of a llama-family decoder, read from GGUF metadata and validated.</summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }
    public required int Dim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int FfnDim { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    public required float RmsEps { get; init; }
    public required float RopeFreqBase { get; init; }
    public required RopeStyle Rope { get; init; }
    /// <summary>Dimensions of each head that RoPE rotates, from its start (rope.dimension_count); the rest pass
    /// unrotated. HeadDim except with partial RoPE (Phi-4-mini's partial_rotary_factor 0.75: 96 of 128).</summary>
    public required int RopeDim { get; init; }
    /// <summary>Per-pair divisors of the RoPE angle (rope_freqs.weight: how llama.cpp's converter stores Llama 3.1's
    /// long-context scaling), or null.</summary>
    public float[]? RopeFreqFactors { get; init; }
    /// <summary>LongRoPE's divisors (Phi-3.5, Phi-4-mini: rope_factors_long/short.weight) for an engine whose
    /// sequences may outgrow <see cref="RopeOriginalContext"/>, and for one whose sequences stay within it; null
    /// without LongRoPE. <see cref="ForContext"/> puts one of them in <see cref="RopeFreqFactors"/>.</summary>
    public float[]? RopeFactorsLong { get; init; }
    public float[]? RopeFactorsShort { get; init; }
    /// <summary>The context the model was pre-trained on before its RoPE was scaled (rope.scaling.
    /// original_context_length), or the context length where the file does not say.</summary>
    public int RopeOriginalContext { get; init; }
    /// <summary>Factor on RoPE's cos and sin, so on q · k squared (rope.scaling.attn_factor; LongRoPE's converter
    /// writes √(1 + ln s / ln original) for s = context / original), or 1.</summary>
    public float RopeAttentionFactor { get; init; } = 1f;
    public required bool QkvBias { get; init; }

    /// <summary>Per-head RMSNorm of q and k before RoPE (attn_q_norm / attn_k_norm: qwen3, gemma3).</summary>
    public bool QkNorm { get; init; }
    /// <summary>RMSNorm of the attention and FFN outputs before they join the residual (gemma2, gemma3).</summary>
    public bool PostNorms { get; init; }
    public FfnActivation Activation { get; init; } = FfnActivation.Silu;
    /// <summary>Factor on the embedding rows (gemma: √dim), or 1.</summary>
    public float EmbeddingScale { get; init; } = 1f;
    /// <summary>Factor on q after RoPE (gemma, phi3 scale q itself, so the score's factor is 1), or 1.</summary>
    public float QueryScale { get; init; } = 1f;
    /// <summary>Factor on q · k (llama: 1/√headDim; 1 where q is scaled instead).</summary>
    public required float ScoreScale { get; init; }
    /// <summary>Attention scores become cap · tanh(score / cap) (gemma2), or 0 for none.</summary>
    public float AttentionSoftCap { get; init; }
    /// <summary>Logits become cap · tanh(logit / cap) (gemma2), or 0 for none.</summary>
    public float FinalSoftCap { get; init; }
    /// <summary>Keys a sliding-window layer sees, the query's own included, or 0 where no layer slides.</summary>
    public int SlidingWindow { get; init; }
    /// <summary>Every layer i with i % period &lt; period - 1 slides (gemma2: 2, gemma3: 6), as llama.cpp's
    /// set_swa_pattern; 0: every layer.</summary>
    public int SlidingPeriod { get; init; } = 1;
    /// <summary>RoPE base of the sliding-window layers (gemma3's local layers: 10000).</summary>
    public float RopeFreqBaseSliding { get; init; }
    /// <summary>Factor on RoPE's angles, 1 / rope.scaling.factor of linear scaling (positions divided by the factor),
    /// or 1.</summary>
    public float RopeFreqScale { get; init; } = 1f;
    /// <summary>The sliding-window layers' <see cref="RopeFreqScale"/> (gemma3's local layers: 1).</summary>
    public float RopeFreqScaleSliding { get; init; } = 1f;

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    public bool IsSliding(int layer) =>
        SlidingWindow > 0 && (SlidingPeriod == 0 || layer % SlidingPeriod < SlidingPeriod - 1);

    /// <summary>Keys layer <paramref name="layer"/> sees behind a query, itself included; 0 for all.</summary>
    public int Window(int layer) => IsSliding(layer) ? SlidingWindow : 0;

    public float RopeBase(int layer) => IsSliding(layer) ? RopeFreqBaseSliding : RopeFreqBase;
    public float RopeScale(int layer) => IsSliding(layer) ? RopeFreqScaleSliding : RopeFreqScale;
    /// <summary>Whether layer <paramref name="layer"/> rotates otherwise than the global layers (its own base or
    /// scale), so it needs RoPE angles of its own.</summary>
    public bool OwnRope(int layer) => RopeBase(layer) != RopeFreqBase || RopeScale(layer) != RopeFreqScale;

    /// <summary>
    /// This config for an engine whose sequences reach <paramref name="maxModelLen"/> tokens: LongRoPE's long
    /// factors where that exceeds the original context, else the short ones. llama.cpp decides the same way once per
    /// context (by n_ctx / n_seq_max, in get_rope_factors) rather than per sequence length as transformers does, so
    /// the keys in the KV cache never mix two RoPEs.
    /// </summary>
    public ModelConfig ForContext(int maxModelLen) => RopeFactorsLong is null ? this
        : this with { RopeFreqFactors = maxModelLen > RopeOriginalContext ? RopeFactorsLong : RopeFactorsShort };

    /// <summary>Architectures whose weights this forward pass computes exactly as llama.cpp does.</summary>
    public static readonly IReadOnlySet<string> SupportedArchitectures =
        new HashSet<string> { "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3" };

    /// <summary>Architectures whose rope.dimension_count may be less than the head dimension.</summary>
    public static readonly IReadOnlySet<string> PartialRopeArchitectures =
        new HashSet<string> { "gemma2", "gemma3", "phi3" };

    public static ModelConfig FromGguf(GgufFile f)
    {
        string arch = f.GetString("general.architecture");
        if (!SupportedArchitectures.Contains(arch))
            throw f.Fail($"architecture '{arch}' is not supported " +
                $"(supported: {string.Join(", ", SupportedArchitectures)})");

        int Int(string key, long min, long max)
        {
            long v = f.GetInteger($"{arch}.{key}");
            return v >= min && v <= max ? (int)v
                : throw f.Fail($"metadata '{arch}.{key}' = {v} is out of range [{min}, {max}]");
        }

        int dim = Int("embedding_length", 1, 1 << 16);
        int heads = Int("attention.head_count", 1, 1024);
        int kvHeads = f.Has($"{arch}.attention.head_count_kv") ? Int("attention.head_count_kv", 1, 1024) : heads;
        if (heads % kvHeads != 0) throw f.Fail($"head_count {heads} is not a multiple of head_count_kv {kvHeads}");
        int headDim = f.Has($"{arch}.attention.key_length") ? Int("attention.key_length", 1, 1024) : dim / heads;
        if (!f.Has($"{arch}.attention.key_length") && dim % heads != 0)
            throw f.Fail($"embedding_length {dim} is not a multiple of head_count {heads}");
        if (f.Has($"{arch}.attention.value_length") && Int("attention.value_length", 1, 1024) != headDim)
            throw f.Fail("attention.value_length differs from key_length, which this engine does not support");
        if (headDim % 2 != 0) throw f.Fail($"head dimension {headDim} must be even for RoPE");
        // partial RoPE (Phi-4-mini: 96 of 128) rotates a head's first ropeDim dimensions; llama.cpp refuses it for
        // llama files ("invalid n_rot") and aborts on qwen2/qwen3 ones (GGML_ASSERT(n_embd_head == n_rot)), so only
        // phi3's and gemma's graphs have one to compare with
        int ropeDim = f.Has($"{arch}.rope.dimension_count") ? Int("rope.dimension_count", 2, headDim) : headDim;
        if (ropeDim % 2 != 0) throw f.Fail($"rope.dimension_count {ropeDim} must be even");
        if (ropeDim != headDim && !PartialRopeArchitectures.Contains(arch))
            throw f.Fail($"partial RoPE (rope.dimension_count {ropeDim} < head dimension {headDim}) in a {arch} " +
                "file, which llama.cpp does not run either");

        var tokens = f.Has("tokenizer.ggml.tokens") ? f.GetArray<string>("tokenizer.ggml.tokens") : null;
        var embd = f.GetTensor("token_embd.weight");
        if (embd.Dims.Length != 2 || embd.Dims[0] != dim)
            throw f.Fail($"tensor 'token_embd.weight' has shape [{string.Join(", ", embd.Dims)}], " +
                $"expected [{dim}, vocabulary size]");
        int vocab = (int)embd.Dims[1];
        if (f.Has($"{arch}.vocab_size") && f.GetInteger($"{arch}.vocab_size") != vocab)
            throw f.Fail($"{arch}.vocab_size {f.GetInteger($"{arch}.vocab_size")} " +
                $"differs from token_embd rows {vocab}");
        if (tokens is not null && tokens.Length != vocab)
            throw f.Fail($"tokenizer has {tokens.Length} tokens but token_embd.weight has {vocab} rows");

        double eps = f.GetNumberOrNull($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5;
        double ropeBase = f.GetNumberOrNull($"{arch}.rope.freq_base") ?? 10000.0;
        if (!(eps is > 0 and <= 1)) throw f.Fail($"layer_norm_rms_epsilon {eps} is out of range");
        if (!(ropeBase > 1 && double.IsFinite(ropeBase))) throw f.Fail($"rope.freq_base {ropeBase} is out of range");
        string scaling = f.Has($"{arch}.rope.scaling.type") ? f.GetString($"{arch}.rope.scaling.type") : "";
        if (scaling is not ("none" or "" or "linear"))
            throw f.Fail($"RoPE scaling '{scaling}' is not supported (only linear)");
        // linear scaling (Gemma 3 4B to 27B: 8) divides positions by the factor, as llama.cpp's freq_scale = 1/factor
        double linear = scaling == "linear" ? f.GetNumberOrNull($"{arch}.rope.scaling.factor")
            ?? throw f.Fail("rope.scaling.type linear needs rope.scaling.factor") : 1.0;
        if (!(linear is >= 1 and <= 1 << 16)) throw f.Fail($"rope.scaling.factor {linear} is out of range");

        float[]? Factors(string tensor)
        {
            if (!f.TryGetTensor(tensor, out var t)) return null;
            if (t.Type != GgmlType.F32 || t.Dims.Length != 1 || t.Dims[0] != ropeDim / 2)
                throw f.Fail($"{tensor} must be {ropeDim / 2} f32 values " +
                    $"(got {t.Type} [{string.Join(", ", t.Dims)}])");
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.Data(t)).ToArray();
            return values.All(x => x > 0 && float.IsFinite(x)) ? values
                : throw f.Fail($"{tensor} holds a value that is not a positive number");
        }
        // llama.cpp reads the LongRoPE pair for phi3 only (another architecture's file with them fails its tensor
        // count)
        bool hasLong = f.TryGetTensor("rope_factors_long.weight", out _);
        bool hasShort = f.TryGetTensor("rope_factors_short.weight", out _);
        if ((hasLong || hasShort) && arch != "phi3")
            throw f.Fail($"LongRoPE factors (rope_factors_long/short.weight) in a {arch} file");
        if (hasLong != hasShort)
            throw f.Fail("LongRoPE needs both rope_factors_long.weight and rope_factors_short.weight");
        float[]? freqFactors = Factors("rope_freqs.weight");
        float[]? longFactors = Factors("rope_factors_long.weight"), shortFactors = Factors("rope_factors_short.weight");
        double attnFactor = f.GetNumberOrNull($"{arch}.rope.scaling.attn_factor") ?? 1.0;
        if (!(attnFactor is > 0 and < 100)) throw f.Fail($"rope.scaling.attn_factor {attnFactor} is out of range");

        int layers = Int("block_count", 1, 1024);
        bool gemma = arch is "gemma2" or "gemma3";
        // llama.cpp: gemma and phi3 scale q itself; gemma's 27B sizes (told apart by layer count) by 1/√(dim/heads),
        // the others by 1/√headDim
        bool scalesQuery = gemma || arch == "phi3";
        int scaleDim = (arch, layers) is ("gemma2", 46) or ("gemma3", 62) ? dim / heads : headDim;
        float Float(string key, float fallback) => (float)(f.GetNumberOrNull($"{arch}.{key}") ?? fallback);
        // gemma2 slides on every other layer (window 4096 unless the file says); gemma3 on five of six, only if
        // the file gives a window; phi3's window is ignored, as llama.cpp does
        bool hasWindow = f.Has($"{arch}.attention.sliding_window");
        int window = arch switch
        {
            "gemma2" => hasWindow ? Int("attention.sliding_window", 0, 1 << 24) : 4096,
            "gemma3" => hasWindow ? Int("attention.sliding_window", 0, 1 << 24) : 0,
            _ => 0,
        };
        int period = arch == "gemma2" && f.Has($"{arch}.attention.sliding_window_pattern")
            ? Int("attention.sliding_window_pattern", 0, 1024)
            : arch == "gemma3" ? 6 : 2;
        float attnCap = arch == "gemma2" ? Float("attn_logit_softcapping", 50f) : 0f;
        float finalCap = arch switch
        {
            "gemma2" => Float("final_logit_softcapping", 30f),
            "gemma3" => Float("final_logit_softcapping", 0f),
            _ => 0f,
        };
        if (!(attnCap >= 0 && finalCap >= 0 && float.IsFinite(attnCap) && float.IsFinite(finalCap)))
            throw f.Fail($"logit soft-capping {attnCap}, {finalCap} is out of range");

        int contextLength = Int("context_length", 2, 1 << 24);
        var config = new ModelConfig
        {
            Architecture = arch,
            Dim = dim,
            Layers = layers,
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            FfnDim = Int("feed_forward_length", 1, 1 << 20),
            VocabSize = vocab,
            ContextLength = contextLength,
            RmsEps = (float)eps,
            RopeFreqBase = (float)ropeBase,
            Rope = arch is "llama" or "mistral" ? RopeStyle.Norm : RopeStyle.Neox,
            RopeDim = ropeDim,
            RopeFreqFactors = freqFactors,
            // rope_freqs wins over the pair where a file has both, as in llama.cpp
            RopeFactorsLong = freqFactors is null ? longFactors : null,
            RopeFactorsShort = freqFactors is null ? shortFactors : null,
            RopeOriginalContext = f.Has($"{arch}.rope.scaling.original_context_length")
                ? Int("rope.scaling.original_context_length", 1, 1 << 24) : contextLength,
            RopeAttentionFactor = (float)attnFactor,
            QkvBias = arch == "qwen2",
            QkNorm = arch is "qwen3" or "gemma3",
            PostNorms = gemma,
            Activation = gemma ? FfnActivation.GeluTanh : FfnActivation.Silu,
            EmbeddingScale = gemma ? MathF.Sqrt(dim) : 1f,
            QueryScale = scalesQuery ? 1f / MathF.Sqrt(scaleDim) : 1f,
            ScoreScale = scalesQuery ? 1f : 1f / MathF.Sqrt(headDim),
            AttentionSoftCap = attnCap,
            FinalSoftCap = finalCap,
            SlidingWindow = window,
            SlidingPeriod = period,
            RopeFreqBaseSliding = Float("rope.freq_base_swa", arch == "gemma3" ? 10000f : (float)ropeBase),
            RopeFreqScale = (float)(1 / linear),
            // gemma3's local layers keep unscaled RoPE, as llama.cpp's rope_freq_scale_train_swa = 1
            RopeFreqScaleSliding = arch == "gemma3" ? 1f : (float)(1 / linear),
        };
        // llama.cpp's own default context is the file's
        return config.ForContext(contextLength);
    }
}
