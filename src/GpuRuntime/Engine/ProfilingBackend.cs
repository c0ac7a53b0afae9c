using System.Diagnostics;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// Times every operation of the backend it wraps, to show where a step's time goes (`weft bench engine --profile`).
/// Each operation is completed before the next (<see cref="IBackend.Synchronize"/>), so the total is a little above
/// an unprofiled step, where a GPU overlaps one launch with the next.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    readonly Dictionary<string, (TimeSpan Time, long Calls)> _times = [];

    public IReadOnlyDictionary<string, (TimeSpan Time, long Calls)> Times => _times;

    public void Reset() => _times.Clear();

    void Time(string name, Action call)
    {
        long start = Stopwatch.GetTimestamp();
        call();
        Record(name, start);
    }

    /// <summary>Adds the time from <paramref name="start"/> to the end of what the device was given to
    /// <paramref name="name"/>'s.</summary>
    void Record(string name, long start)
    {
        inner.Synchronize();
        var (t, n) = _times.GetValueOrDefault(name);
        _times[name] = (t + Stopwatch.GetElapsedTime(start), n + 1);
    }

    public string Description => inner.Description;
    public DeviceTensor Allocate(long floats) => inner.Allocate(floats);
    public DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor) => inner.LoadWeight(file, tensor);
    public void AllocateKvCache(ModelConfig config, int numBlocks, int windowBlocks, int blockSize,
        KvCacheType type) => inner.AllocateKvCache(config, numBlocks, windowBlocks, blockSize, type);
    public void BeginStep(StepInputs inputs) => Time("begin step", () => inner.BeginStep(inputs));
    public void Embed(DeviceWeight table, DeviceTensor x, int dim) => Time("embed", () => inner.Embed(table, x, dim));
    public void Scale(DeviceTensor x, int rows, int dim, float factor) =>
        Time("scale", () => inner.Scale(x, rows, dim, factor));
    public void QkNorm(DeviceTensor q, DeviceTensor k, DeviceWeight qNorm, DeviceWeight kNorm, int rows, float eps) =>
        Time("q/k norm", () => inner.QkNorm(q, k, qNorm, kNorm, rows, eps));
    public void RmsNormForMatMul(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps,
        DeviceWeight next) => Time("rmsnorm", () => inner.RmsNormForMatMul(x, weight, y, rows, dim, eps, next));
    public void QkvProjection(DeviceTensor x, DeviceWeight wq, DeviceWeight wk, DeviceWeight wv,
        DeviceWeight? bq, DeviceWeight? bk, DeviceWeight? bv, DeviceTensor q, DeviceTensor k, DeviceTensor v, int rows)
        => Time("matmul qkv", () => inner.QkvProjection(x, wq, wk, wv, bq, bk, bv, q, k, v, rows));
    public void RopeAndStoreKv(int layer, DeviceTensor q, DeviceTensor k, DeviceTensor v) =>
        Time("rope + store kv", () => inner.RopeAndStoreKv(layer, q, k, v));
    public void Attention(int layer, DeviceTensor q, DeviceTensor output) =>
        Time("attention", () => inner.Attention(layer, q, output));
    public void MatMulAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceTensor residual, int rows) =>
        Time($"matmul {MatrixName(w.Info.Name)} + residual", () => inner.MatMulAddResidual(x, w, y, residual, rows));
    public void MatMulNormAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceWeight norm, float eps,
        DeviceTensor residual, int rows) => Time($"matmul {MatrixName(w.Info.Name)} + norm + residual",
        () => inner.MatMulNormAddResidual(x, w, y, norm, eps, residual, rows));
    public void GateUpGeGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) =>
        Time("matmul gate/up + geglu", () => inner.GateUpGeGlu(x, gate, up, hidden, upOut, rows));
    public void SoftCap(DeviceTensor logits, int rows, int width, float cap) =>
        Time("soft-cap", () => inner.SoftCap(logits, rows, width, cap));
    public void GateUpSwiGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) =>
        Time("matmul gate/up + swiglu", () => inner.GateUpSwiGlu(x, gate, up, hidden, upOut, rows));
    public void GatherNormLogitRows(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int dim, float eps,
        DeviceWeight next) => Time("gather + rmsnorm", () => inner.GatherNormLogitRows(x, weight, y, dim, eps, next));
    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int rows) =>
        Time($"matmul {MatrixName(w.Info.Name)}", () => inner.MatMul(x, w, y, rows));

    // spans cannot enter the lambda that Time takes
    public void CopyKvBlocks(ReadOnlySpan<BlockCopy> copies)
    {
        long start = Stopwatch.GetTimestamp();
        inner.CopyKvBlocks(copies);
        Record("copy kv blocks", start);
    }

    public void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens, StepLogprobs logprobs)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Sample(logits, vocabSize, tokens, logprobs);
        Record("sample", start);
    }

    public float[] ReadRow(DeviceTensor t, int row, int width) => inner.ReadRow(t, row, width);
    public void Synchronize() => inner.Synchronize();

    /// <summary>"blk.3.ffn_down.weight" → "ffn_down": one line per kind of matrix.</summary>
    static string MatrixName(string tensor)
    {
        var parts = tensor.Split('.');
        return parts.Length >= 3 && parts[0] == "blk" ? parts[2] : parts[0];
    }

    public void Dispose() => inner.Dispose();
}
