namespace Weft.GpuRuntime.Engine;

/// <summary>Which kernels run the forward pass.</summary>
public enum EngineKind { Auto, Cpu, Cuda, IlgpuCpu }

public static class EngineKinds
{
    public static readonly IReadOnlyList<string> Names = ["auto", "cpu", "cuda", "ilgpu-cpu"];

    /// <summary>Parses the command-line spelling (auto, cpu, cuda, ilgpu-cpu).</summary>
    public static EngineKind Parse(string name) => name.ToLowerInvariant() switch
    {
        "auto" => EngineKind.Auto,
        "cpu" => EngineKind.Cpu,
        "cuda" => EngineKind.Cuda,
        "ilgpu-cpu" => EngineKind.IlgpuCpu,
        _ => throw new ArgumentException($"unknown engine '{name}' (expected one of: {string.Join(", ", Names)})"),
    };

    public static string Name(this EngineKind kind) => Names[(int)kind];
}

/// <summary>Options of the inference engine (one per device), validated before anything is allocated.</summary>
public sealed record EngineOptions
{
    public EngineKind Engine { get; init; } = EngineKind.Auto;
    /// <summary>Most sequences in one step (also the number of logits rows).</summary>
    public int MaxNumSeqs { get; init; } = 128;
    /// <summary>Most token rows in one step (decode rows plus prefill chunks).</summary>
    public int MaxNumBatchedTokens { get; init; } = 1024;
    /// <summary>Longest sequence (prompt + completion); 0 takes the model's context length.</summary>
    public int MaxModelLen { get; init; }
    public int BlockSize { get; init; } = 16;
    /// <summary>KV pool size in blocks; 0 derives it from <see cref="KvCacheMemoryMiB"/> (or the GPU memory
    /// fraction).</summary>
    public int KvBlocks { get; init; }
    public int KvCacheMemoryMiB { get; init; } = 1024;
    /// <summary>Blocks of the sliding-window layers' own pool (gemma2/gemma3), block 0 included: null sizes it for
    /// <see cref="MaxNumSeqs"/> sequences' windows, 0 keeps those layers in the main pool (every token's K/V).
    /// </summary>
    public int? KvWindowBlocks { get; init; }
    /// <summary>For CUDA: fraction of free device memory given to the KV pool after the weights are loaded.</summary>
    public double GpuMemoryFraction { get; init; } = 0.8;
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;
    /// <summary>Which CUDA device this engine runs on (a silo with several GPUs runs one engine on each).</summary>
    public int Device { get; init; }
    /// <summary>CPU worker threads; 0 uses every core.</summary>
    public int Threads { get; init; }
    /// <summary>Time every kernel call (for `weft bench engine --profile`; adds a little overhead).</summary>
    public bool Profile { get; init; }

    public IEnumerable<string> Validate()
    {
        if (MaxNumSeqs is < 1 or > 4096) yield return "max-num-seqs must be between 1 and 4096";
        if (MaxNumBatchedTokens is < 1 or > 65536) yield return "max-num-batched-tokens must be between 1 and 65536";
        if (MaxNumBatchedTokens < MaxNumSeqs)
            yield return "max-num-batched-tokens must be at least max-num-seqs "
                + "(every sequence decodes one token per step)";
        if (MaxModelLen < 0) yield return "max-model-len must be positive (or 0 for the model's context length)";
        if (BlockSize is < 1 or > 256 || !int.IsPow2(BlockSize))
            yield return "block-size must be a power of two up to 256";
        if (KvBlocks < 0) yield return "kv-blocks must not be negative";
        if (KvWindowBlocks is 1 or < 0)
            yield return "kv-window-blocks must be 0 (off) or at least 2 (the zero block and one more)";
        if (KvCacheMemoryMiB < 1) yield return "kv-cache-memory must be at least 1 MiB";
        if (GpuMemoryFraction is <= 0 or > 0.98) yield return "gpu-memory-fraction must be in (0, 0.98]";
        if (Device < 0) yield return "device must not be negative";
        if (Threads < 0) yield return "threads must not be negative";
    }
}
