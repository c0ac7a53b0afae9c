using Weft.GpuRuntime.Engine.Cpu;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// One model on one device: the GGUF file (mapped or read into memory), the backend with its uploaded weights and KV
/// pool, and the forward pass. Everything is allocated at load; <see cref="StepAsync"/> runs one batched step on the
/// device thread.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    readonly DeviceThread _device;
    // the device's backend, and what the transformer calls: the same, or the profiler around it
    readonly IBackend _deviceBackend, _backend;
    readonly Transformer _transformer;
    readonly int[] _sampled;
    readonly StepLogprobs _logprobs;

    public GgufFile File { get; }
    public ModelConfig Config { get; }
    public EngineOptions Options { get; }
    public int NumKvBlocks { get; }
    /// <summary>Blocks of the sliding-window layers' own pool (<see cref="Weft.Scheduling.WindowBlockManager"/>),
    /// 0 where they keep every token's K/V in the main pool.</summary>
    public int NumKvWindowBlocks { get; }
    public int BlockSize => Options.BlockSize;
    public int MaxModelLen { get; }
    public long KvCacheBytes { get; }
    public string Description => _backend.Description;
    /// <summary>Per-kernel times when <see cref="EngineOptions.Profile"/> is set.</summary>
    public ProfilingBackend? Profiler { get; private set; }

    /// <summary>The reusable description of the next step: fill it (Clear, Add), then call
    /// <see cref="StepAsync"/>.</summary>
    public StepInputs Inputs { get; }

    InferenceEngine(GgufFile file, EngineOptions options, Action<double>? progress)
    {
        File = file;
        Options = options;
        var config = ModelConfig.FromGguf(file);
        var weights = ModelWeights.FromGguf(file, config);
        MaxModelLen = options.MaxModelLen > 0
            ? Math.Min(options.MaxModelLen, config.ContextLength)
            : config.ContextLength;
        Config = config.ForContext(MaxModelLen);

        long layerBytesPerBlock = 2L * Config.KvDim * options.BlockSize
            * (options.KvCacheType == KvCacheType.F16 ? 2 : 4);
        int sliding = Enumerable.Range(0, Config.Layers).Count(Config.IsSliding);
        // a window pool saves memory only where the window is shorter than a sequence can grow
        bool windowPool = sliding > 0 && Config.SlidingWindow < MaxModelLen && options.KvWindowBlocks != 0;
        long bytesPerBlock = (windowPool ? Config.Layers - sliding : Config.Layers) * layerBytesPerBlock;
        long windowBytesPerBlock = windowPool ? sliding * layerBytesPerBlock : 0;
        _sampled = new int[options.MaxNumSeqs];
        _logprobs = new StepLogprobs(options.MaxNumSeqs);

        _device = new DeviceThread($"weft-device-{options.Engine}");
        try
        {
            (_deviceBackend, _backend, _transformer, NumKvBlocks, NumKvWindowBlocks) = _device.Invoke(() =>
            {
                var device = CreateBackend(options);
                IBackend backend = options.Profile ? Profiler = new ProfilingBackend(device) : device;
                try
                {
                    var transformer = new Transformer(backend, file, Config, weights, options.MaxNumBatchedTokens,
                        options.MaxNumSeqs, progress);
                    var (blocks, windowBlocks) = KvBlocks(options, Config, device, bytesPerBlock,
                        windowBytesPerBlock);
                    backend.AllocateKvCache(Config, blocks, windowBlocks, options.BlockSize, options.KvCacheType);
                    return (device, backend, transformer, blocks, windowBlocks);
                }
                catch
                {
                    backend.Dispose();
                    throw;
                }
            });
        }
        catch
        {
            _device.Dispose();
            throw;
        }
        KvCacheBytes = NumKvBlocks * bytesPerBlock + NumKvWindowBlocks * windowBytesPerBlock;
        int maxBlocksPerSeq = (MaxModelLen + options.BlockSize - 1) / options.BlockSize;
        Inputs = new StepInputs(options.MaxNumBatchedTokens, options.MaxNumSeqs, maxBlocksPerSeq, options.BlockSize,
            NumKvBlocks, Config.VocabSize, NumKvWindowBlocks);
    }

    /// <summary>
    /// The KV pools in blocks: the main one as configured, else a fraction of the GPU memory left after the weights,
    /// else the memory budget. Where the sliding-window layers have their own pool (windowBytesPerBlock &gt; 0), it
    /// gets what <see cref="EngineOptions.MaxNumSeqs"/> sequences' windows can hold at once, at most a block for each
    /// block the budget would give one shared pool (a sequence never holds more window blocks than main ones), plus
    /// the zero block; the main pool gets the rest of the budget.
    /// </summary>
    static (int Blocks, int WindowBlocks) KvBlocks(EngineOptions o, ModelConfig config, IBackend backend,
        long bytesPerBlock, long windowBytesPerBlock)
    {
        long budget = backend is IDeviceMemory { FreeMemoryBytes: long free }
            ? (long)(free * o.GpuMemoryFraction)
            : o.KvCacheMemoryMiB * (1L << 20);
        long shared = o.KvBlocks > 0 ? o.KvBlocks : budget / (bytesPerBlock + windowBytesPerBlock);
        long window = 0;
        if (windowBytesPerBlock > 0)
        {
            long perSequence = (config.SlidingWindow - 1 + o.MaxNumBatchedTokens + o.BlockSize - 1) / o.BlockSize + 1;
            window = o.KvWindowBlocks ?? Math.Max(2, Math.Min((long)o.MaxNumSeqs * perSequence + 1, shared));
        }
        long blocks = o.KvBlocks > 0 ? o.KvBlocks
            : bytesPerBlock == 0 ? shared
            : (budget - window * windowBytesPerBlock) / bytesPerBlock;
        if (blocks < 1)
            throw new ArgumentException($"the KV cache budget holds no block of {bytesPerBlock + windowBytesPerBlock} "
                + "bytes; raise kv-cache-memory (or gpu-memory-fraction)");
        return ((int)Math.Min(int.MaxValue, blocks), (int)Math.Min(int.MaxValue, window));
    }

    /// <summary>Opens and validates the model file and loads it onto the chosen device. Bad files raise
    /// <see cref="GgufFormatException"/>.</summary>
    /// <param name="map">Map the file (see <see cref="GgufFile.Open"/>); false reads it into memory, so that the file
    /// can be replaced while the engine serves.</param>
    /// <param name="progress">Told the fraction of the file's tensor bytes loaded after each weight (from the device
    /// thread), 1 once the engine is ready.</param>
    public static InferenceEngine Load(string path, EngineOptions options, bool map = true,
        Action<double>? progress = null)
    {
        var problems = options.Validate().ToList();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems));
        var file = GgufFile.Open(path, map);
        try
        {
            var engine = new InferenceEngine(file, options, progress);
            progress?.Invoke(1);
            return engine;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Auto takes CUDA when an NVIDIA GPU is present, else the managed-SIMD cpu backend.</summary>
    static IBackend CreateBackend(EngineOptions o) => o.Engine switch
    {
        EngineKind.Cpu => new CpuBackend(o.Threads),
        EngineKind.Auto => IlgpuBackend.CudaDeviceCount() > 0
            ? new IlgpuBackend(EngineKind.Cuda, o.Device)
            : new CpuBackend(o.Threads),
        _ => new IlgpuBackend(o.Engine, o.Device),
    };

    /// <summary>Device memory bandwidth in bytes/s where the backend measures it (CUDA); null otherwise.</summary>
    public double? MeasureDeviceBandwidth() =>
        _deviceBackend is IBandwidthProbe probe ? _device.Invoke(probe.MeasureCopyBandwidth) : null;

    /// <summary>Kernel launches of the last step for ILGPU engines (null for the cpu backend, which launches
    /// none).</summary>
    public int? LaunchesPerStep =>
        _deviceBackend is ILaunchCounter counter ? _device.Invoke(() => counter.LaunchesPerStep) : null;

    /// <summary>When the last step began and ended on the device thread (<see cref="System.Diagnostics.Stopwatch"/>
    /// timestamps): the await that follows a step adds a thread hop that a device-idle figure must not
    /// count.</summary>
    public (long Started, long Ended) LastStep { get; private set; }

    /// <summary>Runs the step in <see cref="Inputs"/> on the device thread; returns one sampled token per logits
    /// row.</summary>
    public Task<ReadOnlyMemory<int>> StepAsync() => _device.RunAsync(() =>
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            _transformer.Forward(Inputs, _sampled, _logprobs);
        }
        finally
        {
            LastStep = (started, System.Diagnostics.Stopwatch.GetTimestamp());
        }
        return (ReadOnlyMemory<int>)_sampled.AsMemory(0, Inputs.NumLogitRows);
    });

    /// <summary>The log-probabilities of the last step's logits rows whose sequence asked for them; the next step
    /// overwrites them.</summary>
    public StepLogprobs Logprobs => _logprobs;

    /// <summary>
    /// Runs a decode-sized and a prefill-sized step once, so the first request does not pay for compiling the kernels
    /// (about 1.4 s on the 300m preset, cpu). Writes only into the first KV blocks, which hold nothing yet.
    /// </summary>
    public void WarmUp()
    {
        int rows = Math.Min(Math.Min(32, Options.MaxNumBatchedTokens), Math.Min(MaxModelLen, NumKvBlocks * BlockSize));
        if (NumKvWindowBlocks > 0) rows = Math.Min(rows, (NumKvWindowBlocks - 1) * BlockSize);
        var tokens = new int[rows];
        var blocks = Enumerable.Range(0, (rows + BlockSize - 1) / BlockSize).ToArray();
        // the window pool's block 0 stays all zeros
        int[]? windowBlocks = NumKvWindowBlocks > 0 ? [.. blocks.Select(b => b + 1)] : null;
        foreach (int n in new[] { 1, rows })
        {
            Inputs.Clear();
            Inputs.Add(new StepItem(tokens, 0, n, blocks, true, SamplingParams.Greedy(1), 0, n, windowBlocks));
            Step();
        }
        Inputs.Clear();
    }

    /// <summary>Synchronous <see cref="StepAsync"/> for the CLI and tests.</summary>
    public ReadOnlySpan<int> Step() => StepAsync().GetAwaiter().GetResult().Span;

    /// <summary>Copies logits row <paramref name="row"/> of the last step (tests compare it with a
    /// reference).</summary>
    public float[] GetLogits(int row) =>
        _device.Invoke(() => _backend.ReadRow(_transformer.Logits, row, Config.VocabSize));

    public void Dispose()
    {
        _device.Invoke(_backend.Dispose);
        _device.Dispose();
        File.Dispose();
    }
}
