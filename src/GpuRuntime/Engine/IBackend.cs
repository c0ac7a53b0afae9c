using Weft.Models.Gguf;
using Weft.Models;

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
/// The kernels the forward pass is written over. Every call is made from the engine's one device thread. Buffers and
/// weights are allocated before the first step; a step only reads <see cref="StepInputs"/> and runs kernels.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>One line naming the backend and its device, for logs.</summary>
    string Description { get; }

    DeviceTensor Allocate(long floats);
    DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor);
    /// <summary>Reserves the paged KV pool: per layer, numBlocks × kvHeads × blockSize × headDim for K and for V.</summary>
    void AllocateKvCache(ModelConfig config, int numBlocks, int blockSize, KvCacheType type);

    /// <summary>Makes the step's integers (tokens, positions, slots, block tables) visible to the kernels.</summary>
    void BeginStep(StepInputs inputs);

    /// <summary>x[t] = table[token t]</summary>
    void Embed(DeviceWeight table, DeviceTensor x, int dim);
    /// <summary>y[r] = x[r] / rms(x[r]) * weight, for r &lt; rows</summary>
    void RmsNorm(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps);
    /// <summary>y[r, :] = W · x[r, :] (+ bias) for r &lt; rows; W is [w.Rows outputs × w.Columns inputs]</summary>
    void MatMul(DeviceTensor x, DeviceWeight w, DeviceWeight? bias, DeviceTensor y, int rows);
    /// <summary>Rotates q [T, heads, headDim] and k [T, kvHeads, headDim] in place at each row's position.</summary>
    void Rope(DeviceTensor q, DeviceTensor k, ModelConfig config);
    /// <summary>Writes k and v [T, kvDim] into the layer's pool at each row's slot.</summary>
    void StoreKv(int layer, DeviceTensor k, DeviceTensor v);
    /// <summary>output[t] = causal attention of q[t] over its own sequence's cached K/V up to its position.</summary>
    void Attention(int layer, DeviceTensor q, DeviceTensor output);
    /// <summary>gate[r] = silu(gate[r]) * up[r]</summary>
    void SwiGlu(DeviceTensor gate, DeviceTensor up, int rows, int dim);
    /// <summary>x[r] += y[r]</summary>
    void Add(DeviceTensor x, DeviceTensor y, int rows, int dim);
    /// <summary>y[i] = x[LogitRows[i]]</summary>
    void GatherLogitRows(DeviceTensor x, DeviceTensor y, int dim);
    /// <summary>Samples one token per logits row into <paramref name="tokens"/>.</summary>
    void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens);

    /// <summary>
    /// Completes every call made so far. Backends may defer and fuse calls (matmuls sharing an input, kernels on a GPU
    /// stream); this is for timing them one by one.
    /// </summary>
    void Synchronize();
}
