using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Weft.Abstractions;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Chat.ToolCalls;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.Grains;

public enum ModelStatus { Loading, Ready, Failed }

/// <summary>
/// The model a silo serves: validated synchronously at start-up (header, metadata, tensor shapes, tokenizer,
/// template — a bad file stops the silo before it listens), then loaded onto its devices in the background while the
/// silo already answers /health with 503.
/// </summary>
public sealed class ModelHost : IDisposable
{
    readonly ModelHostOptions _options;
    readonly ILogger<ModelHost> _logger;
    readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    InferenceEngine[] _engines = [];

    public ModelHost(IOptions<ModelHostOptions> options, ILogger<ModelHost> logger)
    {
        _options = options.Value;
        _logger = logger;
        var problems = _options.Validate().ToList();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems));

        ModelPath = _options.Model ?? DemoModel.Cached(_options.DemoPreset, _options.CacheDirectory);
        using var file = GgufFile.Open(ModelPath);
        Config = ModelConfig.FromGguf(file);
        ModelWeights.FromGguf(file, Config);
        Tokenizer = Tokenizer.FromGguf(file);
        Template = ChatTemplate.Resolve(file.GetStringOrNull("tokenizer.chat_template"), _options.ChatTemplate,
            Tokenizer.TokenText(Tokenizer.BosId), Tokenizer.TokenText(Tokenizer.EosId), Tokenizer.AddBos);
        HiddenToolMarkers = ToolCallParser.HiddenMarkers(Template.ToolFormat, Tokenizer);
        ModelName = _options.ServedModelName ?? Path.GetFileNameWithoutExtension(ModelPath);
        MaxModelLen = _options.Engine.MaxModelLen > 0
            ? Math.Min(_options.Engine.MaxModelLen, Config.ContextLength) : Config.ContextLength;
        // the scheduler's limits, checked now rather than when the first request activates a BatchGrain
        if (SchedulerOptions(MaxModelLen, _options.Engine).Validate() is { } problem)
            throw new ArgumentException(problem);
    }

    public string ModelName { get; }
    public string ModelPath { get; }
    public ModelConfig Config { get; }
    public Tokenizer Tokenizer { get; }
    public ChatTemplate Template { get; }
    /// <summary>The template's tool-call markers that are control tokens of the vocabulary, by token id (see
    /// <see cref="ToolCallParser.HiddenMarkers"/>): fixed with the file, so found once rather than per turn.</summary>
    public IReadOnlyDictionary<int, string> HiddenToolMarkers { get; }
    /// <summary>The vocabulary's bytes as a trie, for constrained decoding; built by the first request that needs
    /// it.</summary>
    public TokenTrie Trie => _trie ??= TokenTrie.Build(Tokenizer);
    TokenTrie? _trie;
    /// <summary>Longest prompt + reply: the model's context or --max-model-len, lowered after loading to what one
    /// sequence can hold in the smallest device's KV cache.</summary>
    public int MaxModelLen { get; private set; }
    /// <summary>The room a cut conversation keeps for a reply of no set length: --truncation-reply-tokens, at most a
    /// quarter of the context.</summary>
    public int TruncationReplyTokens => Math.Max(1, Math.Min(_options.TruncationReplyTokens, MaxModelLen / 4));
    public ModelStatus Status { get; private set; } = ModelStatus.Loading;
    public string? Error { get; private set; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    public IReadOnlyList<InferenceEngine> Engines => _engines;
    /// <summary>Completes when every device is loaded; faults if loading failed.</summary>
    public Task Ready => _ready.Task;
    public LogprobsMode LogprobsMode => _options.LogprobsModeValue;

    /// <summary>Loads the model onto each device. Called once by the hosting layer after start-up validation.</summary>
    public void Load()
    {
        var engines = new List<InferenceEngine>();
        try
        {
            var engine = _options.Engine;
            // probe for GPUs once, and settle "auto" here so no engine probes again
            int cudaDevices = engine.Engine is EngineKind.Cuda or EngineKind.Auto ? IlgpuBackend.CudaDeviceCount() : 0;
            bool cuda = engine.Engine == EngineKind.Cuda || engine.Engine == EngineKind.Auto && cudaDevices > 0;
            if (engine.Engine == EngineKind.Auto)
                engine = engine with { Engine = cuda ? EngineKind.Cuda : EngineKind.Cpu };
            int devices = _options.Devices > 0 ? _options.Devices : cuda ? cudaDevices : 1;
            if (devices < 1) throw new NotSupportedException(
                "engine 'cuda' needs an NVIDIA GPU with its driver (libcuda), and none was found");
            if (!cuda && devices > 1 && engine.Threads == 0)
                engine = engine with { Threads = Math.Max(1, Environment.ProcessorCount / devices) };
            for (int d = 0; d < devices; d++)
            {
                var e = InferenceEngine.Load(ModelPath, engine with { Device = cuda ? d : 0 }, _options.Mmap);
                engines.Add(e);
                e.WarmUp();
                _logger.LogInformation("device {Device}: {Engine}", d, e.Description);
                _logger.LogInformation(
                    "device {Device} kv cache: {Blocks} blocks of {BlockSize} tokens ({MiB:F0} MiB, {Tokens} tokens)",
                    d, e.NumKvBlocks, e.BlockSize, e.KvCacheBytes / 1048576.0, e.NumKvBlocks * e.BlockSize);
            }
            // vLLM refuses to start here; serving a shorter context with a warning lets the default 1 GiB budget serve
            // real 128k-context models, and requests without max_tokens still fit
            int capacity =
                engines.Min(e => (e.NumKvBlocks - (int)(_options.KvWatermark * e.NumKvBlocks)) * e.BlockSize);
            if (capacity < 2) throw new ArgumentException(
                $"the KV cache holds only {capacity} tokens per sequence; raise kv-cache-memory or kv-blocks");
            if (capacity < MaxModelLen)
            {
                _logger.LogWarning("max model len lowered from {MaxModelLen} to {Capacity} tokens, what one sequence " +
                    "can hold in the KV cache (raise --kv-cache-memory or --kv-blocks for more)",
                    MaxModelLen, capacity);
                MaxModelLen = capacity;
            }
            _engines = [.. engines];
            Status = ModelStatus.Ready;
            _ready.SetResult();
        }
        catch (Exception e)
        {
            foreach (var loaded in engines) loaded.Dispose();
            Status = ModelStatus.Failed;
            Error = e.Message;
            _ready.SetException(e);
            throw;
        }
    }

    /// <summary>The scheduler limits of a device's engine.</summary>
    public SchedulerOptions SchedulerOptions(InferenceEngine engine) => SchedulerOptions(MaxModelLen, engine.Options);

    SchedulerOptions SchedulerOptions(int maxModelLen, EngineOptions engine) => new()
    {
        MaxModelLen = maxModelLen,
        MaxNumSeqs = engine.MaxNumSeqs,
        MaxNumBatchedTokens = engine.MaxNumBatchedTokens,
        MaxWaiting = _options.MaxWaiting,
        KvWatermark = _options.KvWatermark,
        AgingTicks = _options.AgingTicks,
        PrefillChunkSize = _options.PrefillChunkSize,
    };

    /// <summary>Throws the error clients see while the model is not ready.</summary>
    public void EnsureReady()
    {
        if (Status == ModelStatus.Ready) return;
        throw new WeftException(WeftErrorCode.Unavailable,
            Status == ModelStatus.Loading ? "the model is still loading" : $"the model failed to load: {Error}");
    }

    public void Dispose()
    {
        foreach (var e in _engines) e.Dispose();
        _engines = [];
    }
}
