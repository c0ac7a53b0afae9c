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
    public static void EnsureLoaded() => _ = Loaded.Value;

    // every caller waits until the library is in: a flag set before loading let a second thread call into llama.cpp
    // while the first was still resolving it (DllNotFoundException, seen in parallel tests)
    static readonly Lazy<bool> Loaded = new(() =>
    {
        NativeApi.llama_max_devices();
        NativeLogConfig.llama_log_set((level, message) => { });
        return true;
    });

    /// <summary>llama-quantize's presets by their command-line names, as LLamaSharp's file types.</summary>
    public static IReadOnlyDictionary<string, LLamaFtype> QuantizePresets { get; } =
        new Dictionary<string, LLamaFtype>(StringComparer.OrdinalIgnoreCase)
        {
            ["q4_0"] = LLamaFtype.MOSTLY_Q4_0, ["q4_1"] = LLamaFtype.MOSTLY_Q4_1,
            ["q5_0"] = LLamaFtype.MOSTLY_Q5_0, ["q5_1"] = LLamaFtype.MOSTLY_Q5_1,
            ["q8_0"] = LLamaFtype.MOSTLY_Q8_0, ["q2_k"] = LLamaFtype.MOSTLY_Q2_K,
            ["q3_k_s"] = LLamaFtype.MOSTLY_Q3_K_S, ["q3_k_m"] = LLamaFtype.MOSTLY_Q3_K_M,
            ["q3_k_l"] = LLamaFtype.MOSTLY_Q3_K_L, ["q4_k_s"] = LLamaFtype.MOSTLY_Q4_K_S,
            ["q4_k_m"] = LLamaFtype.MOSTLY_Q4_K_M, ["q5_k_s"] = LLamaFtype.MOSTLY_Q5_K_S,
            ["q5_k_m"] = LLamaFtype.MOSTLY_Q5_K_M, ["q6_k"] = LLamaFtype.MOSTLY_Q6_K,
            ["iq4_nl"] = LLamaFtype.MOSTLY_IQ4_NL, ["iq4_xs"] = LLamaFtype.MOSTLY_IQ4_XS,
        };

    /// <summary>Quantizes a GGUF file with llama.cpp's own quantizer (the code behind llama-quantize), the output
    /// matrix included; false when llama.cpp refuses the file.</summary>
    public static bool Quantize(string source, string destination, LLamaFtype preset, int threads)
    {
        EnsureLoaded();
        return LLamaQuantizer.Quantize(source, destination, preset, threads, quantizeOutputTensor: true);
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
    /// batched example does the same). Returns each step's seconds. Before them, at least
    /// <paramref name="warmUpSteps"/> untimed steps for at least <paramref name="warmUpTime"/>, rewound to the prompt's
    /// end.
    /// </summary>
    public List<double> DecodeStepTimes(int sequences, int promptLength, int steps, int warmUpSteps,
        TimeSpan warmUpTime)
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
        var next = new int[sequences];
        // the decode's seconds: the greedy pick after it is not llama.cpp's work
        double Step(int position)
        {
            batch.Clear();
            for (int s = 0; s < sequences; s++)
                batch.Add((LLamaToken)next[s], position, (LLamaSeqId)s, true);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Decode(context, batch);
            double seconds = sw.Elapsed.TotalSeconds;
            for (int s = 0; s < sequences; s++) next[s] = ArgMax(context.NativeHandle.GetLogitsIth(s));
            return seconds;
        }
        void Rewind()
        {
            for (int s = 0; s < sequences; s++)
                context.NativeHandle.MemorySequenceRemove((LLamaSeqId)s, promptLength, -1);
            Array.Clear(next);
        }

        var warm = System.Diagnostics.Stopwatch.StartNew();
        for (int step = 0; step < warmUpSteps || warm.Elapsed < warmUpTime; step++)
        {
            if (step > 0 && step % steps == 0) Rewind();
            Step(promptLength + step % steps);
        }
        Rewind();
        var times = new List<double>(steps);
        for (int step = 0; step < steps; step++) times.Add(Step(promptLength + step));
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
