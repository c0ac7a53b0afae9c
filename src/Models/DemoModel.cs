using System.Runtime.InteropServices;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Models;

/// <summary>The shape of a generated model of <see cref="Architecture"/> (one of
/// <see cref="DemoModel.Architectures"/>); <see cref="SlidingWindow"/> is gemma's window (0: gemma2's 4096, none for
/// gemma3); a phi3 shape with <see cref="LongRopeOriginalContext"/> gets LongRoPE factors (Phi-3.5-mini's and
/// Phi-4-mini's scaling) from that original context up to <see cref="ContextLength"/>; <see cref="RopeDims"/> other
/// than 0 rotates only that many of each head's dimensions (partial RoPE: Phi-4-mini's 96 of 128);
/// <see cref="RopeLinearFactor"/> other than 0 writes linear RoPE scaling by that factor (Gemma 3 4B to 27B: 8).
/// </summary>
public sealed record DemoModelShape(string Name, int Dim, int Layers, int Heads, int KvHeads, int FfnDim, int VocabSize,
    int ContextLength, GgmlType Type, float RopeFreqBase = 10000f, int? HeadDim = null, bool RopeFreqFactors = false,
    string Architecture = "llama", int SlidingWindow = 0, int LongRopeOriginalContext = 0, int RopeDims = 0,
    float RopeLinearFactor = 0)
{
    public static readonly DemoModelShape Tiny = new("tiny", 128, 2, 4, 2, 384, 2048, 2048, GgmlType.F32);
    public static readonly DemoModelShape Small = new("small", 256, 4, 8, 4, 768, 8192, 4096, GgmlType.F16);
    public static readonly DemoModelShape M300 = new("300m", 1024, 16, 16, 4, 4096, 32000, 4096, GgmlType.F16);
    /// <summary>TinyLlama 1.1B's shape.</summary>
    public static readonly DemoModelShape B1 = new("1b", 2048, 22, 32, 4, 5632, 32000, 2048, GgmlType.F16);

    public static IReadOnlyList<DemoModelShape> Presets { get; } = [Tiny, Small, M300, B1];

    /// <summary>This shape, or an <see cref="ArgumentException"/> naming what a llama-family model cannot
    /// have.</summary>
    public DemoModelShape Validated()
    {
        if (Dim <= 0 || Layers <= 0 || Heads <= 0 || KvHeads <= 0 || FfnDim <= 0 || ContextLength <= 0)
            throw new ArgumentException("dim, layers, heads, kv-heads, ffn and context must be positive");
        if (HeadDim is null && Dim % Heads != 0)
            throw new ArgumentException($"dim {Dim} is not a multiple of {Heads} heads");
        if ((HeadDim ?? Dim / Heads) % 2 != 0)
            throw new ArgumentException($"head dimension {HeadDim ?? Dim / Heads} must be even (RoPE rotates pairs)");
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"{Heads} heads cannot share {KvHeads} key/value heads evenly");
        return this;
    }

    public static DemoModelShape Preset(string name) => Presets.FirstOrDefault(p => p.Name == name)
        ?? throw new ArgumentException($"unknown preset '{name}' " +
            $"(known: {string.Join(", ", Presets.Select(p => p.Name))})");
}

/// <summary>
/// Writes deterministic random-weight models of the llama family and its relatives: the same shape, vocabulary and
/// seed always give the same file.
/// Weights are scaled so activations stay in a healthy range through every layer and the logits are peaked enough
/// that greedy decoding is not decided by rounding noise.
/// </summary>
public static class DemoModel
{
    /// <summary>The architectures <see cref="Write"/> can generate, with the metadata and tensors llama.cpp reads for
    /// each.</summary>
    public static IReadOnlyList<string> Architectures { get; } =
        ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"];

    /// <summary>Writes a shape with the vocabulary and chat template its family ships (<see
    /// cref="DemoVocabulary.Family"/>): the llama presets with the demo SentencePiece-style vocabulary and TinyLlama's
    /// template.</summary>
    /// <param name="progress">Told the fraction written (of the tensors' bytes) after each tensor, 1 at the end: a
    /// 1b file takes a while.</param>
    public static void Create(string path, DemoModelShape shape, ulong seed = 42, Action<double>? progress = null) =>
        Write(path, shape, DemoVocabulary.Family(shape.Architecture, shape.VocabSize), seed, progress: progress);

    /// <summary>The default cache folder for generated models.</summary>
    public static string DefaultCacheDirectory { get; } =
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "weft");

    /// <summary>A preset's file in <paramref name="cacheDirectory"/>, generated there on first use (no
    /// download).</summary>
    public static string Cached(string preset, string cacheDirectory, Action<double>? progress = null)
    {
        var shape = DemoModelShape.Preset(preset);
        string path = Path.Combine(cacheDirectory, $"weft-demo-{shape.Name}.gguf");
        if (!File.Exists(path)) Create(path, shape, progress: progress);
        return path;
    }

    /// <param name="matrixType">Overrides the storage type per matrix (real quantized files mix types).</param>
    /// <param name="progress">See <see cref="Create"/>.</param>
    public static void Write(string path, DemoModelShape shape, VocabularySpec vocab, ulong seed = 42,
        string? name = null, Func<string, GgmlType>? matrixType = null, Action<double>? progress = null)
    {
        if (vocab.Tokens.Length != shape.VocabSize)
            throw new ArgumentException($"vocabulary has {vocab.Tokens.Length} tokens, " +
                $"shape {shape.Name} needs {shape.VocabSize}");
        string arch = shape.Architecture;
        if (!Architectures.Contains(arch))
            throw new ArgumentException($"unknown architecture '{arch}' (known: {string.Join(", ", Architectures)})");
        bool gemma = arch is "gemma2" or "gemma3";
        int headDim = shape.HeadDim ?? shape.Dim / shape.Heads;
        int qDim = shape.Heads * headDim, kvDim = shape.KvHeads * headDim;
        if (arch == "phi3" && qDim != shape.Dim)
            throw new ArgumentException($"phi3 needs heads × head size = dim ({qDim} ≠ {shape.Dim})");
        if (shape.LongRopeOriginalContext != 0 && (arch != "phi3" || shape.LongRopeOriginalContext < 2))
            throw new ArgumentException("LongRoPE needs the phi3 architecture and an original context of 2 or more");
        int ropeDims = shape.RopeDims == 0 ? headDim : shape.RopeDims;
        if (ropeDims < 2 || ropeDims % 2 != 0 || ropeDims > headDim)
            throw new ArgumentException($"rope dimensions {ropeDims} must be even and within the head dimension " +
                $"{headDim}");
        if (ropeDims != headDim && !ModelConfig.PartialRopeArchitectures.Contains(arch))
            throw new ArgumentException($"partial RoPE needs one of " +
                $"{string.Join(", ", ModelConfig.PartialRopeArchitectures)}: llama.cpp does not run it on {arch}");
        var t = shape.Type;

        var w = new GgufWriter();
        w.Add("general.architecture", arch);
        w.Add("general.name", name ?? $"weft-demo-{shape.Name}");
        w.Add("general.file_type", (uint)(t switch
        {
            GgmlType.F32 => 0,
            GgmlType.F16 => 1,
            GgmlType.Q8_0 => 7,
            GgmlType.BF16 => 32,
            _ => 0,
        }));
        w.Add($"{arch}.context_length", (uint)shape.ContextLength);
        w.Add($"{arch}.embedding_length", (uint)shape.Dim);
        w.Add($"{arch}.block_count", (uint)shape.Layers);
        w.Add($"{arch}.feed_forward_length", (uint)shape.FfnDim);
        w.Add($"{arch}.attention.head_count", (uint)shape.Heads);
        w.Add($"{arch}.attention.head_count_kv", (uint)shape.KvHeads);
        if (shape.HeadDim is { } hd)
        {
            w.Add($"{arch}.attention.key_length", (uint)hd);
            w.Add($"{arch}.attention.value_length", (uint)hd);
        }
        w.Add($"{arch}.rope.dimension_count", (uint)ropeDims);
        w.Add($"{arch}.rope.freq_base", shape.RopeFreqBase);
        // one factor per rotated pair, as llama.cpp's loader sizes them (n_rot / 2)
        int pairs = ropeDims / 2;
        if (shape.RopeFreqFactors)
            // Llama 3.1's shape of scaling: high frequencies kept, low ones divided by up to 8
            w.AddTensor("rope_freqs.weight", GgmlType.F32, [pairs],
                Enumerable.Range(0, pairs).Select(i => 1f + 7f * i / Math.Max(1, pairs - 1)).ToArray());
        if (shape.LongRopeOriginalContext > 0)
            WriteLongRope(w, arch, pairs, shape.LongRopeOriginalContext, shape.ContextLength);
        if (shape.RopeLinearFactor != 0)
        {
            w.Add($"{arch}.rope.scaling.type", "linear");
            w.Add($"{arch}.rope.scaling.factor", shape.RopeLinearFactor);
        }
        w.Add($"{arch}.attention.layer_norm_rms_epsilon", gemma ? 1e-6f : 1e-5f);
        // the shape's window (tests take one that a few dozen tokens slide past), else Gemma 2's 4096; a gemma3 file
        // without one slides on no layer
        if (arch == "gemma2" || arch == "gemma3" && shape.SlidingWindow > 0)
            w.Add($"{arch}.attention.sliding_window", (uint)(shape.SlidingWindow > 0 ? shape.SlidingWindow : 4096));
        if (arch == "gemma2")
        {
            w.Add($"{arch}.attn_logit_softcapping", 50f);
            w.Add($"{arch}.final_logit_softcapping", 30f);
        }
        w.Add($"{arch}.vocab_size", (uint)shape.VocabSize);
        vocab.WriteTo(w);

        void Matrix(string tensor, GgmlType type, int cols, int rows, float std)
        {
            type = matrixType?.Invoke(tensor) ?? type;
            w.AddTensor(tensor, type, [cols, rows],
                s => WriteRandom(s, type, (long)rows * cols, cols, Seed(seed, tensor), std, 0));
        }
        void Vector(string tensor, int n, float mean, float std) =>
            w.AddTensor(tensor, GgmlType.F32, [n],
                s => WriteRandom(s, GgmlType.F32, n, n, Seed(seed, tensor), std, mean));

        // Embeddings of unit variance; every projection scaled by 1/sqrt(fan_in) so each sub-layer's output has about
        // unit scale. The output projection is larger so the logits have a standard deviation of ~4. Gemma ties the
        // output to the embedding and scales the embedding by √dim in the graph: its embedding is drawn small (rms
        // 1/8 after the scale) and its final norm large (32) instead, and its post-norms (3) make each sub-layer
        // outweigh the embedding in the residual; with rms-1 embeddings the tied output mostly predicted the input
        // token again (5 distinct tokens of 48 on the gemma3 test model, 32 now).
        Matrix("token_embd.weight", t, shape.Dim, shape.VocabSize, gemma ? 0.125f / MathF.Sqrt(shape.Dim) : 1f);
        for (int i = 0; i < shape.Layers; i++)
        {
            string p = $"blk.{i}.";
            Vector(p + "attn_norm.weight", shape.Dim, 1f, 0.1f);
            if (arch == "phi3")
                Matrix(p + "attn_qkv.weight", t, shape.Dim, qDim + 2 * kvDim, 2f / MathF.Sqrt(shape.Dim));
            else
            {
                Matrix(p + "attn_q.weight", t, shape.Dim, qDim, 2f / MathF.Sqrt(shape.Dim));
                Matrix(p + "attn_k.weight", t, shape.Dim, kvDim, 2f / MathF.Sqrt(shape.Dim));
                Matrix(p + "attn_v.weight", t, shape.Dim, kvDim, 1f / MathF.Sqrt(shape.Dim));
            }
            if (arch == "qwen2")
            {
                Vector(p + "attn_q.bias", qDim, 0f, 0.1f);
                Vector(p + "attn_k.bias", kvDim, 0f, 0.1f);
                Vector(p + "attn_v.bias", kvDim, 0f, 0.1f);
            }
            if (arch is "qwen3" or "gemma3")
            {
                // llama.cpp's converter stores gemma's (1 + w) norm weights with the 1 added, as all of these are
                Vector(p + "attn_q_norm.weight", headDim, 1f, 0.1f);
                Vector(p + "attn_k_norm.weight", headDim, 1f, 0.1f);
            }
            Matrix(p + "attn_output.weight", t, qDim, shape.Dim, 1f / MathF.Sqrt(qDim));
            if (gemma) Vector(p + "post_attention_norm.weight", shape.Dim, 3f, 0.3f);
            Vector(p + "ffn_norm.weight", shape.Dim, 1f, 0.1f);
            if (arch == "phi3")
                Matrix(p + "ffn_up.weight", t, shape.Dim, 2 * shape.FfnDim, 1f / MathF.Sqrt(shape.Dim));
            else
            {
                Matrix(p + "ffn_gate.weight", t, shape.Dim, shape.FfnDim, 1f / MathF.Sqrt(shape.Dim));
                Matrix(p + "ffn_up.weight", t, shape.Dim, shape.FfnDim, 1f / MathF.Sqrt(shape.Dim));
            }
            Matrix(p + "ffn_down.weight", t, shape.FfnDim, shape.Dim, 1f / MathF.Sqrt(shape.FfnDim));
            if (gemma) Vector(p + "post_ffw_norm.weight", shape.Dim, 3f, 0.3f);
        }
        Vector("output_norm.weight", shape.Dim, gemma ? 32f : 1f, gemma ? 3.2f : 0.1f);
        // gemma's output is always the embedding in llama.cpp, which refuses a file with an output.weight
        if (!gemma) Matrix("output.weight", t, shape.Dim, shape.VocabSize, 4f / MathF.Sqrt(shape.Dim));
        w.Write(path, progress);
    }

    /// <summary>The metadata and tensors llama.cpp's converter writes for a LongRoPE model (Phi3MiniModel): the
    /// factor pair, the original context and the attention factor √(1 + ln s / ln original), s = context /
    /// original.</summary>
    static void WriteLongRope(GgufWriter w, string arch, int pairs, int original, int context)
    {
        double scale = (double)context / original;
        w.Add($"{arch}.rope.scaling.original_context_length", (uint)original);
        w.Add($"{arch}.rope.scaling.attn_factor",
            scale > 1 ? (float)Math.Sqrt(1 + Math.Log(scale) / Math.Log(original)) : 1f);
        // Phi-3.5-mini's shape of factors: the short ones stay near 1, the long ones divide the low frequencies
        // (the last pairs) by up to ~40 and leave the highest ones almost as they are
        float Ramp(int i) => (float)i / Math.Max(1, pairs - 1);
        w.AddTensor("rope_factors_long.weight", GgmlType.F32, [pairs],
            Enumerable.Range(0, pairs).Select(i => 1f + 39f * Ramp(i) * Ramp(i)).ToArray());
        w.AddTensor("rope_factors_short.weight", GgmlType.F32, [pairs],
            Enumerable.Range(0, pairs).Select(i => 1f + 1.5f * Ramp(i)).ToArray());
    }

    static ulong Seed(ulong seed, string tensor)
    {
        ulong h = seed ^ 0x9E3779B97F4A7C15UL;
        foreach (char c in tensor) h = (h ^ c) * 0x100000001B3UL;
        return h;
    }

    /// <summary>Streams n approximately normal values in chunks of whole rows, so memory stays small for any
    /// size.</summary>
    static void WriteRandom(Stream s, GgmlType type, long n, int rowLength, ulong seed, float std, float mean)
    {
        var rng = new SplitMix64(seed);
        int rowsPerChunk = Math.Max(1, (1 << 20) / rowLength);
        var chunk = new float[(long)rowsPerChunk * rowLength];
        for (long done = 0; done < n; done += chunk.Length)
        {
            int len = (int)Math.Min(chunk.Length, n - done);
            for (int i = 0; i < len; i++) chunk[i] = mean + std * rng.NextNormal();
            var bytes = type == GgmlType.F32 ? MemoryMarshal.AsBytes(chunk.AsSpan(0, len)).ToArray()
                : GgmlQuant.Quantize(type, chunk.AsSpan(0, len));
            s.Write(bytes);
        }
    }

    /// <summary>A tiny, fully deterministic generator (integer arithmetic only, so every machine draws the same
    /// weights).</summary>
    struct SplitMix64(ulong state)
    {
        ulong _state = state;

        ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        float NextUniform() => (Next() >> 40) * (1f / (1 << 24));

        /// <summary>Irwin–Hall with four uniforms: mean 0, variance 1, bounded tails (no NaNs or huge
        /// outliers).</summary>
        public float NextNormal() => (NextUniform() + NextUniform() + NextUniform() + NextUniform() - 2f) * 1.7320508f;
    }
}
