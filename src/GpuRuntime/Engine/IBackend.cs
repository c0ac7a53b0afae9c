using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>An f32 activation buffer owned by a backend.</summary>
public abstract class DeviceTensor
{
    public abstract long Length { get; }
}

/// <summary>A weight tensor uploaded (or mapped) once by a backend.</summary>
public abstract class DeviceWeight(GgufTensorInfo info)
{
    public GgufTensorInfo Info { get; } = info;
    public int Rows => (int)Info.Rows;
    public int Columns => (int)Info.Columns;
}

public enum KvCacheType { F16, F32 }

/// <summary>
/// The operations the forward pass is written over, each one fused as far as its backend can (as vLLM's models call
/// fused ops): what runs on the device is named here, never inferred from the order of calls. Every call is made
/// from the engine's one device thread. Buffers and weights are allocated before the first step; a step only reads
/// <see cref="StepInputs"/> and runs kernels. Matrices W are [w.Rows outputs × w.Columns inputs]; "W·x" is
/// y[r, :] = W · x[r, :] for each of the first rows rows.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>One line naming the backend and its device, for logs.</summary>
    string Description { get; }

    DeviceTensor Allocate(long floats);
    DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor);
    /// <summary>Reserves the paged KV pool: per layer, numBlocks × kvHeads × blockSize × headDim values for K and for
    /// V, in the order the backend's attention reads best; where <paramref name="windowBlocks"/> is not 0 the
    /// sliding-window layers get that many blocks instead, addressed by <see cref="StepInputs.WindowBlockTables"/>
    /// and <see cref="StepInputs.WindowSlotMapping"/>.</summary>
    void AllocateKvCache(ModelConfig config, int numBlocks, int windowBlocks, int blockSize, KvCacheType type);

    /// <summary>
    /// Makes the step's integers (tokens, positions, slots, block tables) visible to the kernels, once any work of an
    /// earlier step that could still read them is done.
    /// </summary>
    void BeginStep(StepInputs inputs);

    /// <summary>
    /// Copies each main-pool KV block's K and V in every layer that takes the main pool into its destination block,
    /// ordered before the step's other work (a forked sequence's own copy of a block it shares with its parent).
    /// </summary>
    void CopyKvBlocks(ReadOnlySpan<BlockCopy> copies);

    /// <summary>x[t] = table[token t]</summary>
    void Embed(DeviceWeight table, DeviceTensor x, int dim);
    /// <summary>x[r] *= factor for r &lt; rows (gemma's embedding scale).</summary>
    void Scale(DeviceTensor x, int rows, int dim, float factor);
    /// <summary>
    /// y[r] = x[r] / rms(x[r]) * weight for r &lt; rows. y is next read by a matmul over <paramref name="next"/>'s
    /// format, so a backend may also prepare that matmul's input now (round or quantize y as the weight's dot wants).
    /// </summary>
    void RmsNormForMatMul(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps,
        DeviceWeight next);
    /// <summary>q = Wq·x (+ bq), k = Wk·x (+ bk), v = Wv·x (+ bv): x is read once for all three.</summary>
    void QkvProjection(DeviceTensor x, DeviceWeight wq, DeviceWeight wk, DeviceWeight wv,
        DeviceWeight? bq, DeviceWeight? bk, DeviceWeight? bv, DeviceTensor q, DeviceTensor k, DeviceTensor v, int rows);
    /// <summary>Each head of q [T, heads, headDim] and k [T, kvHeads, headDim] RMS-normalised in place and times
    /// its weight (qwen3's and gemma3's q/k norms).</summary>
    void QkNorm(DeviceTensor q, DeviceTensor k, DeviceWeight qNorm, DeviceWeight kNorm, int rows, float eps);
    /// <summary>
    /// Rotates q [T, heads, headDim] and k [T, kvHeads, headDim] in place at each row's position (with the layer's
    /// RoPE base), scales q by the config's <see cref="ModelConfig.QueryScale"/>, then writes k and v [T, kvDim] into
    /// the layer's pool at each row's slot.
    /// </summary>
    void RopeAndStoreKv(int layer, DeviceTensor q, DeviceTensor k, DeviceTensor v);
    /// <summary>output[t] = causal attention of q[t] over its own sequence's cached K/V up to its position (only the
    /// layer's window of keys on a sliding-window layer), scores scaled and soft-capped as the config says.</summary>
    void Attention(int layer, DeviceTensor q, DeviceTensor output);
    /// <summary>y = W·x, and residual += y: the attention output and down projections.</summary>
    void MatMulAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceTensor residual, int rows);
    /// <summary>y = W·x, and residual += rmsnorm(y) * norm: gemma's outputs normalised before they join the
    /// residual.</summary>
    void MatMulNormAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceWeight norm, float eps,
        DeviceTensor residual, int rows);
    /// <summary>upOut = U·x, hidden = silu(G·x) * upOut: x is read once for both.</summary>
    void GateUpSwiGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden, DeviceTensor upOut,
        int rows);
    /// <summary>upOut = U·x, hidden = gelu(G·x) * upOut (<see cref="LlamaMath.GeGlu"/>): gemma's FFN.</summary>
    void GateUpGeGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden, DeviceTensor upOut,
        int rows);
    /// <summary>
    /// y[i] = x[LogitRows[i]] / rms(x[LogitRows[i]]) * weight for each logits row of the step; like
    /// <see cref="RmsNormForMatMul"/>, y is next read by a matmul over <paramref name="next"/>.
    /// </summary>
    void GatherNormLogitRows(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int dim, float eps,
        DeviceWeight next);
    /// <summary>y = W·x</summary>
    void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int rows);
    /// <summary>logits = cap · tanh(logits / cap) for the first rows rows (gemma2's final soft-capping).</summary>
    void SoftCap(DeviceTensor logits, int rows, int width, float cap);
    /// <summary>Samples one token per logits row into <paramref name="tokens"/>, and for the rows whose sequence asks
    /// for them (<see cref="Weft.Scheduling.SamplingParams.Logprobs"/>) the log-probabilities into
    /// <paramref name="logprobs"/>.</summary>
    void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens, StepLogprobs logprobs);

    /// <summary>Row <paramref name="row"/> of <paramref name="t"/>, once the calls so far are done.</summary>
    float[] ReadRow(DeviceTensor t, int row, int width);

    /// <summary>Completes every call made so far (a GPU runs them on a stream); for timing calls one by one.</summary>
    void Synchronize();
}

/// <summary>A backend on a device with its own memory, which the KV pool can be sized from.</summary>
public interface IDeviceMemory
{
    /// <summary>Free device memory now, or null where the device does not say (ILGPU's CPU accelerator).</summary>
    long? FreeMemoryBytes { get; }
}

/// <summary>A backend that can measure its device's memory bandwidth, the yardstick of a decode step.</summary>
public interface IBandwidthProbe
{
    /// <summary>Bytes read plus written per second by a large device-to-device copy; null if not measurable.</summary>
    double? MeasureCopyBandwidth();
}

/// <summary>A backend that launches kernels, and counts them.</summary>
public interface ILaunchCounter
{
    /// <summary>Kernel launches of the last completed step.</summary>
    int LaunchesPerStep { get; }
}
