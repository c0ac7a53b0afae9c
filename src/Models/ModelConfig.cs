using Weft.Models.Gguf;

namespace Weft.Models;

/// <summary>How RoPE pairs dimensions: Norm rotates adjacent pairs (llama), Neox rotates the two halves (qwen2,
/// gpt-neox).</summary>
public enum RopeStyle { Norm, Neox }

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
    public required int RopeDim { get; init; }
    /// <summary>Per-pair divisors of the RoPE angle (rope_freqs.weight: how llama.cpp's converter stores Llama 3.1's
    /// long-context scaling), or null.</summary>
    public float[]? RopeFreqFactors { get; init; }
    public required bool QkvBias { get; init; }

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    /// <summary>Architectures whose weights this forward pass computes exactly as llama.cpp does.</summary>
    public static readonly IReadOnlySet<string> SupportedArchitectures =
        new HashSet<string> { "llama", "mistral", "qwen2" };

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
        int ropeDim = f.Has($"{arch}.rope.dimension_count") ? Int("rope.dimension_count", 2, headDim) : headDim;
        if (ropeDim != headDim)
            throw f.Fail($"partial RoPE (rope.dimension_count {ropeDim} < head dimension {headDim}) is not supported");

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
        if (f.Has($"{arch}.rope.scaling.type") && f.GetString($"{arch}.rope.scaling.type") is not ("none" or ""))
            throw f.Fail($"RoPE scaling '{f.GetString($"{arch}.rope.scaling.type")}' is not supported");

        float[]? freqFactors = null;
        if (f.TryGetTensor("rope_freqs.weight", out var freqs))
        {
            if (freqs.Type != GgmlType.F32 || freqs.Dims.Length != 1 || freqs.Dims[0] != ropeDim / 2)
                throw f.Fail($"rope_freqs.weight must be {ropeDim / 2} f32 values " +
                    $"(got {freqs.Type} [{string.Join(", ", freqs.Dims)}])");
            freqFactors = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(f.Data(freqs)).ToArray();
            if (freqFactors.Any(x => !(x > 0 && float.IsFinite(x))))
                throw f.Fail("rope_freqs.weight holds a value that is not a positive number");
        }

        return new ModelConfig
        {
            Architecture = arch,
            Dim = dim,
            Layers = Int("block_count", 1, 1024),
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            FfnDim = Int("feed_forward_length", 1, 1 << 20),
            VocabSize = vocab,
            ContextLength = Int("context_length", 2, 1 << 24),
            RmsEps = (float)eps,
            RopeFreqBase = (float)ropeBase,
            Rope = arch == "qwen2" ? RopeStyle.Neox : RopeStyle.Norm,
            RopeDim = ropeDim,
            RopeFreqFactors = freqFactors,
            QkvBias = arch == "qwen2",
        };
    }
}
