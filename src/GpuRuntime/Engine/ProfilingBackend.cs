using System.Diagnostics;
using Weft.Models.Gguf;
using Weft.Models;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// Times every kernel call of the backend it wraps, to show where a step's time goes (`weft bench engine --profile`).
/// Each call is completed before the next (<see cref="IBackend.Synchronize"/>), so calls the backend would have fused
/// are timed apart: the total is a little above an unprofiled step.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly Dictionary<string, (TimeSpan Time, long Calls)> _times = [];

    public IReadOnlyDictionary<string, (TimeSpan Time, long Calls)> Times => _times;

    public IBackend Inner => inner;

    public void Reset() => _times.Clear();

    void Time(string name, Action call)
    {
        long start = Stopwatch.GetTimestamp();
        call();
        inner.Synchronize();
        var (t, n) = _times.GetValueOrDefault(name);
        _times[name] = (t + Stopwatch.GetElapsedTime(start), n + 1);
    }

    public string Description => inner.Description;
    public DeviceTensor Allocate(long floats) => inner.Allocate(floats);
    public DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor) => inner.LoadWeight(file, tensor);
    public void AllocateKvCache(ModelConfig config, int numBlocks, int blockSize, KvCacheType type) => inner.AllocateKvCache(config, numBlocks, blockSize, type);
    public void BeginStep(StepInputs inputs) => Time("begin step", () => inner.BeginStep(inputs));
    public void Embed(DeviceWeight table, DeviceTensor x, int dim) => Time("embed", () => inner.Embed(table, x, dim));
    public void RmsNorm(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps) => Time("rmsnorm", () => inner.RmsNorm(x, weight, y, rows, dim, eps));
    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceWeight? bias, DeviceTensor y, int rows) =>
        Time($"matmul {MatrixName(w.Info.Name)}", () => inner.MatMul(x, w, bias, y, rows));
    public void Rope(DeviceTensor q, DeviceTensor k, ModelConfig config) => Time("rope", () => inner.Rope(q, k, config));
    public void StoreKv(int layer, DeviceTensor k, DeviceTensor v) => Time("store kv", () => inner.StoreKv(layer, k, v));
    public void Attention(int layer, DeviceTensor q, DeviceTensor output) => Time("attention", () => inner.Attention(layer, q, output));
    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int rows, int dim) => Time("swiglu", () => inner.SwiGlu(gate, up, rows, dim));
    public void Add(DeviceTensor x, DeviceTensor y, int rows, int dim) => Time("residual add", () => inner.Add(x, y, rows, dim));
    public void GatherLogitRows(DeviceTensor x, DeviceTensor y, int dim) => Time("gather", () => inner.GatherLogitRows(x, y, dim));

    public void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Sample(logits, vocabSize, tokens);
        inner.Synchronize();
        var (t, n) = _times.GetValueOrDefault("sample");
        _times["sample"] = (t + Stopwatch.GetElapsedTime(start), n + 1);
    }

    public void Synchronize() => inner.Synchronize();

    /// <summary>"blk.3.ffn_up.weight" → "ffn_up": one line per kind of matrix.</summary>
    static string MatrixName(string tensor)
    {
        var parts = tensor.Split('.');
        return parts.Length >= 3 && parts[0] == "blk" ? parts[2] : parts[0];
    }

    public void Dispose() => inner.Dispose();
}
