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
    static int _logsSilenced;

    readonly LLamaWeights _weights;
    readonly ModelParams _params;

    /// <param name="f16Cache">KV cache type: f16 is llama.cpp's default; f32 compares exactly with an f32 cache.</param>
    public LlamaCppModel(string path, int contextSize = 2048, int batchSize = 512, int threads = 0, bool f16Cache = true, bool vocabOnly = false)
    {
        SilenceLogs();
        _params = new ModelParams(path)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)batchSize,
            UBatchSize = (uint)batchSize,
            SeqMax = 64,
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

    /// <summary>Quiets llama.cpp's loader chatter (it writes every tensor to stderr otherwise).</summary>
    public static void SilenceLogs()
    {
        if (Interlocked.Exchange(ref _logsSilenced, 1) == 1) return;
        NativeLogConfig.llama_log_set((level, message) => { });
    }

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial) =>
        _weights.NativeHandle.Tokenize(text, addSpecial, parseSpecial, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray();

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
            for (int i = computed; i < tokens.Count; i++) batch.Add((LLamaToken)tokens[i], i, LLamaSeqId.Zero, i == tokens.Count - 1);
            Decode(context, batch);
            var logits = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1);
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            computed = tokens.Count;
            tokens.Add(best);
            output[step] = best;
        }
        return output;
    }

    /// <summary>
    /// Decodes <paramref name="sequences"/> prompts of <paramref name="promptLength"/> tokens in parallel sequences of one
    /// context, then <paramref name="steps"/> batched decode steps with one token per sequence, as llama.cpp's own
    /// batched example does. Returns the seconds spent in prefill and in decode.
    /// </summary>
    public (double PrefillSeconds, double DecodeSeconds) RunBatched(int sequences, int promptLength, int steps)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        int vocab = _weights.Vocab.Count;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int s = 0; s < sequences; s++)
        {
            // each sequence gets its own prompt, decoded in chunks that fit the batch
            for (int start = 0; start < promptLength; start += (int)_params.BatchSize)
            {
                batch.Clear();
                int end = Math.Min(promptLength, start + (int)_params.BatchSize);
                for (int i = start; i < end; i++) batch.Add((LLamaToken)((s * 7919 + i * 104729) % (vocab - 300) + 300), i, (LLamaSeqId)s, i == promptLength - 1);
                Decode(context, batch);
            }
        }
        double prefill = sw.Elapsed.TotalSeconds;
        sw.Restart();
        for (int step = 0; step < steps; step++)
        {
            batch.Clear();
            for (int s = 0; s < sequences; s++) batch.Add((LLamaToken)((s * 31 + step * 17) % (vocab - 300) + 300), promptLength + step, (LLamaSeqId)s, true);
            Decode(context, batch);
        }
        return (prefill, sw.Elapsed.TotalSeconds);
    }

    static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
    }

    public void Dispose() => _weights.Dispose();
}
