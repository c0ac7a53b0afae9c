using LLama;
using LLama.Common;
using LLama.Native;

namespace Weft.LlamaCpp;

/// <summary>
/// A GGUF model loaded by llama.cpp (the build bundled with LLamaSharp), driven through its low-level batch API so
/// that prompts are token ids and the comparison with Weft involves no sampler or template of llama.cpp's own.
/// </summary>
public sealed class LlamaCppModel : IDisposable
{
    static int _loaded;

    readonly LLamaWeights _weights;
    readonly ModelParams _params;

    /// <param name="f16Cache">KV cache type: f16 is llama.cpp's default; f32 compares exactly with an f32
    /// cache.</param>
    /// <param name="sequences">Parallel sequences; llama.cpp gives each its own KV stream of contextSize / sequences
    /// cells.</param>
    public LlamaCppModel(string path, int contextSize = 2048, int batchSize = 512, int threads = 0,
        bool f16Cache = true, bool vocabOnly = false, int sequences = 1)
    {
        EnsureLoaded();
        _params = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)batchSize,
            UBatchSize = (uint)batchSize,
            SeqMax = (uint)sequences,
            Threads = threads > 0 ? threads : Environment.ProcessorCount,
            BatchThreads = threads > 0 ? threads : Environment.ProcessorCount,
            // Flash attention on the CPU accumulates V in f16; the reference is the plain attention path.
            FlashAttention = false,
            TypeK = f16Cache ? GGMLType.GGML_TYPE_F16 : GGMLType.GGML_TYPE_F32,
            TypeV = f16Cache ? GGMLType.GGML_TYPE_F16 : GGMLType.GGML_TYPE_F32,
            VocabOnly = vocabOnly,
        };
        _weights = LLamaWeights.LoadFromFile(_params);
    }

    public LLamaWeights Weights => _weights;

    /// <summary>
    /// Loads llama.cpp through LLamaSharp's own resolver (it picks the build for this CPU; only calls through NativeApi
    /// trigger it) and quiets its loader chatter, which otherwise lists every tensor on stderr.
    /// </summary>
    public static void EnsureLoaded()
    {
        if (Interlocked.Exchange(ref _loaded, 1) == 1) return;
        NativeApi.llama_max_devices();
        NativeLogConfig.llama_log_set((level, message) => { });
    }

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial) =>
        _weights.NativeHandle.Tokenize(text, addSpecial, parseSpecial, System.Text.Encoding.UTF8)
            .Select(t => (int)t).ToArray();

    /// <summary>Greedy generation (argmax, ties to the lowest id) from a token-id prompt.</summary>
    public int[] Greedy(IReadOnlyList<int> prompt, int count)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        var tokens = new List<int>(prompt);
        var output = new int[count];
        int computed = 0;
        for (int step = 0; step < count; step++)
        {
            batch.Clear();
            for (int i = computed; i < tokens.Count; i++)
                batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, i == tokens.Count - 1);
            Decode(context, batch);
            int best = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            computed = tokens.Count;
            tokens.Add(best);
            output[step] = best;
        }
        return output;
    }

    /// <summary>
    /// Prefills <paramref name="sequences"/> prompts of <paramref name="promptLength"/> tokens as parallel sequences of
    /// one context, then times <paramref name="steps"/> batched decode steps of one token per sequence (llama.cpp's own
    /// batched example does the same). Returns each step's seconds.
    /// </summary>
    public List<double> DecodeStepTimes(int sequences, int promptLength, int steps)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        int vocab = _weights.Vocab.Count;
        for (int s = 0; s < sequences; s++)
            for (int start = 0; start < promptLength; start += (int)_params.BatchSize)
            {
                batch.Clear();
                int end = Math.Min(promptLength, start + (int)_params.BatchSize);
                for (int i = start; i < end; i++)
                    batch.Add((LLamaToken)((s * 7919 + i * 104729) % vocab), i, (LLamaSeqId)s, i == promptLength - 1);
                Decode(context, batch);
            }
        var times = new List<double>(steps);
        var next = new int[sequences];
        for (int step = 0; step < steps; step++)
        {
            batch.Clear();
            for (int s = 0; s < sequences; s++)
                batch.Add((LLamaToken)next[s], promptLength + step, (LLamaSeqId)s, true);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Decode(context, batch);
            times.Add(sw.Elapsed.TotalSeconds);
            for (int s = 0; s < sequences; s++) next[s] = ArgMax(context.NativeHandle.GetLogitsIth(s));
        }
        return times;
    }

    /// <summary>Seconds to prefill one prompt of <paramref name="tokens"/> tokens in batches of the context's batch
    /// size.</summary>
    public double PrefillSeconds(int tokens)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        int vocab = _weights.Vocab.Count;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int start = 0; start < tokens; start += (int)_params.BatchSize)
        {
            batch.Clear();
            int end = Math.Min(tokens, start + (int)_params.BatchSize);
            for (int i = start; i < end; i++)
                batch.Add((LLamaToken)((i * 104729) % vocab), i, LLamaSeqId.Zero, i == tokens - 1);
            Decode(context, batch);
        }
        return sw.Elapsed.TotalSeconds;
    }

    static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
    }

    public void Dispose() => _weights.Dispose();
}
