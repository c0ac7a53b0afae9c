using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Weft.GpuRuntime.Sampling;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The managed-SIMD backend: the fast path without a GPU and the oracle for the ILGPU kernels.
/// Numerics follow ggml's CPU backend where that is cheap, so greedy output matches llama.cpp token for token:
/// activations are rounded to the weight's type before a dot product with f16/bf16 weights (ggml's "vec_dot_type"),
/// quantized to q8_0 blocks for q8_0 weights, RMSNorm sums squares in double, softmax sums in double, and RoPE angles
/// advance by repeated multiplication as ggml's rope cache does.
/// Work is split across a pool of persistent threads (one per core); each matmul splits its output rows.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    sealed class CpuTensor(long length) : DeviceTensor
    {
        public readonly float* Data =
            (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, length) * sizeof(float)), 64);
        public override long Length => length;
        public void Free() => NativeMemory.AlignedFree(Data);
    }

    readonly List<CpuTensor> _tensors = [];
    readonly List<CpuWeight> _weights = [];
    readonly WorkerPool _pool;
    readonly PrepareJob _prepare;
    readonly MatMulJob _matmul;
    readonly AttentionJob _attention;
    readonly SwiGluJob _swiglu;
    readonly SampleJob _sample;
    StepInputs _step = null!;
    Sampler[] _samplers = [];
    int[] _sampled = [];

    // KV pool: per layer [numBlocks, kvHeads, headDim, blockSize] for K and for V, f16 or f32 elements: keys minor
    // within a block, so attention reads a dimension of consecutive keys as one vector rather than transposing rows
    byte* _kvPool;
    // per layer: where its K starts in the pool and its bytes (V follows), and whether it is in the window pool
    long[] _kvOffset = [], _kvBytes = [];
    bool[] _windowed = [];
    int _kvHeads, _headDim, _blockSize, _heads;
    KvCacheType _kvType;
    ModelConfig _config = null!;

    readonly MatMulInput _input = new();
    // per worker: four weight rows converted to f32
    float* _packScratch;
    int _packStride;

    public CpuBackend(int threads)
    {
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        _pool = new WorkerPool(Threads);
        _prepare = new PrepareJob(this);
        _matmul = new MatMulJob(this);
        _attention = new AttentionJob(this);
        _swiglu = new SwiGluJob();
        _sample = new SampleJob(this);
    }

    public int Threads { get; }

    /// <summary>Whether q8_0 runs a SIMD kernel (AVX2 or 128-bit at least); else the scalar one.</summary>
    internal static bool FastQ8Kernels => MatMulKernels.Q8Path != Q8Kernel.None;

    /// <summary>The paths that run, e.g. "AVX2 + AVX-VNNI" or "128-bit": the float kernels' width, then how q8_0
    /// blocks are multiplied.</summary>
    public string Description => "cpu: managed SIMD ("
        + MatMulKernels.FloatWidth switch
        {
            512 => "AVX-512",
            256 => "AVX2",
            _ => Vector128.IsHardwareAccelerated ? "128-bit" : "scalar",
        }
        + MatMulKernels.Q8Path switch
        {
            Q8Kernel.AvxVnni => " + AVX-VNNI",
            Q8Kernel.Avx2 => ", q8_0 via AVX2 vpmaddubsw",
            Q8Kernel.Narrow => Dp.IsSupported ? ", q8_0 via dot product" : "",
            _ => ", scalar q8_0",
        }
        + $"), {Threads} threads";

    public DeviceTensor Allocate(long floats)
    {
        var t = new CpuTensor(floats);
        _tensors.Add(t);
        _input.Reserve(floats);
        return t;
    }

    public DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor)
    {
        var format = CpuFormats.Find(tensor.Type) ?? throw file.Fail(
            $"tensor '{tensor.Name}' is stored as {tensor.Type}, which the CPU backend cannot read");
        var w = format.Load(file, tensor);
        _weights.Add(w);
        if (format.PacksRows && w.Columns > _packStride)
        {
            if (_packScratch != null) NativeMemory.AlignedFree(_packScratch);
            _packStride = w.Columns;
            _packScratch = (float*)NativeMemory.AlignedAlloc((nuint)(Threads * 4 * _packStride * sizeof(float)), 64);
        }
        return w;
    }

    public void AllocateKvCache(ModelConfig config, int numBlocks, int windowBlocks, int blockSize, KvCacheType type)
    {
        _config = config;
        _kvHeads = config.KvHeads;
        _heads = config.Heads;
        _headDim = config.HeadDim;
        _blockSize = blockSize;
        _kvType = type;
        long blockBytes = (long)config.KvHeads * blockSize * config.HeadDim * (type == KvCacheType.F16 ? 2 : 4);
        var layout = KvLayout.Of(config, numBlocks, windowBlocks, blockBytes);
        (_windowed, _kvOffset, _kvBytes) = (layout.Windowed, layout.Offset, layout.Size);
        nuint total = (nuint)layout.Total;
        _kvPool = (byte*)NativeMemory.AlignedAlloc(total, 64);
        NativeMemory.Clear(_kvPool, total);
    }

    public void BeginStep(StepInputs inputs)
    {
        _step = inputs;
        if (_sampled.Length < inputs.MaxSeqs)
        {
            _samplers = new Sampler[Threads];
            _sampled = new int[inputs.MaxSeqs];
        }
    }

    public void CopyKvBlocks(ReadOnlySpan<BlockCopy> copies)
    {
        // a block is contiguous in each layer's K and V pools: [kvHeads, headDim, blockSize]
        long bytes = KvIndex(1, 0) * (_kvType == KvCacheType.F16 ? 2 : 4);
        for (int l = 0; l < _kvOffset.Length; l++)
        {
            if (_windowed[l]) continue;
            foreach (bool value in (ReadOnlySpan<bool>)[false, true])
            {
                byte* pool = KvBase(l, value);
                foreach (var (source, destination) in copies)
                    NativeMemory.Copy(pool + source * bytes, pool + destination * bytes, (nuint)bytes);
            }
        }
    }

    static CpuTensor T(DeviceTensor t) => (CpuTensor)t;
    static CpuWeight W(DeviceWeight w) => (CpuWeight)w;

    public void Embed(DeviceWeight table, DeviceTensor x, int dim)
    {
        var w = W(table);
        float* xs = T(x).Data;
        for (int t = 0; t < _step.NumTokens; t++)
        {
            long row = _step.TokenIds[t];
            w.Format.ReadRow(w, row, new Span<float>(xs + (long)t * dim, dim));
        }
    }

    public void Scale(DeviceTensor x, int rows, int dim, float factor)
    {
        var xs = new Span<float>(T(x).Data, rows * dim);
        TensorPrimitives.Multiply(xs, factor, xs);
    }

    public void QkNorm(DeviceTensor q, DeviceTensor k, DeviceWeight qNorm, DeviceWeight kNorm, int rows, float eps)
    {
        int hd = _headDim;
        float* qs = T(q).Data, ks = T(k).Data, qw = (float*)W(qNorm).Data, kw = (float*)W(kNorm).Data;
        for (long i = 0; i < (long)rows * _heads; i++) NormRow(qs + i * hd, qw, qs + i * hd, hd, eps);
        for (long i = 0; i < (long)rows * _kvHeads; i++) NormRow(ks + i * hd, kw, ks + i * hd, hd, eps);
    }

    /// <summary>The matmul prepares its input itself (in parallel): <paramref name="next"/> is not needed.</summary>
    public void RmsNormForMatMul(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps,
        DeviceWeight next)
    {
        float* xs = T(x).Data, ys = T(y).Data, w = (float*)W(weight).Data;
        for (int r = 0; r < rows; r++) NormRow(xs + (long)r * dim, w, ys + (long)r * dim, dim, eps);
    }

    public void GatherNormLogitRows(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int dim, float eps,
        DeviceWeight next)
    {
        float* xs = T(x).Data, ys = T(y).Data, w = (float*)W(weight).Data;
        for (int i = 0; i < _step.NumLogitRows; i++)
            NormRow(xs + (long)_step.LogitRows[i] * dim, w, ys + (long)i * dim, dim, eps);
    }

    static void NormRow(float* x, float* weight, float* y, int dim, float eps)
    {
        var xr = new ReadOnlySpan<float>(x, dim);
        var yr = new Span<float>(y, dim);
        double sum = 0;
        foreach (var v in xr) sum += v * v;
        TensorPrimitives.Multiply(xr, LlamaMath.RmsScale(sum, dim, eps), yr);
        TensorPrimitives.Multiply(yr, new ReadOnlySpan<float>(weight, dim), yr);
    }

    /// <summary>One parallel job for the three (one wake-up and one barrier, the input prepared once).</summary>
    public void QkvProjection(DeviceTensor x, DeviceWeight wq, DeviceWeight wk, DeviceWeight wv,
        DeviceWeight? bq, DeviceWeight? bk, DeviceWeight? bv, DeviceTensor q, DeviceTensor k, DeviceTensor v, int rows)
    {
        Queue(x, wq, bq, q, rows);
        Queue(x, wk, bk, k, rows);
        Queue(x, wv, bv, v, rows);
        RunMatMuls();
    }

    /// <summary>Gate and up as one parallel job, then SwiGLU over the rows in parallel.</summary>
    public void GateUpSwiGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) => GateUpGlu(x, gate, up, hidden, upOut, rows, gelu: false);

    /// <summary>As <see cref="GateUpSwiGlu"/>, with GeGLU.</summary>
    public void GateUpGeGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) => GateUpGlu(x, gate, up, hidden, upOut, rows, gelu: true);

    void GateUpGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden, DeviceTensor upOut,
        int rows, bool gelu)
    {
        Queue(x, gate, null, hidden, rows);
        Queue(x, up, null, upOut, rows);
        RunMatMuls();
        int dim = up.Rows;
        _swiglu.Prepare(T(hidden).Data, T(upOut).Data, rows, dim, gelu);
        _pool.Run(_swiglu, (long)rows * dim * 16);
    }

    public void MatMulAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceTensor residual, int rows)
    {
        MatMul(x, w, y, rows);
        int n = rows * w.Rows;
        var r = new Span<float>(T(residual).Data, n);
        TensorPrimitives.Add(r, new ReadOnlySpan<float>(T(y).Data, n), r);
    }

    /// <summary>The rows normalised in place in y, then added.</summary>
    public void MatMulNormAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceWeight norm, float eps,
        DeviceTensor residual, int rows)
    {
        MatMul(x, w, y, rows);
        int dim = w.Rows;
        float* ys = T(y).Data, nw = (float*)W(norm).Data;
        for (int r = 0; r < rows; r++) NormRow(ys + (long)r * dim, nw, ys + (long)r * dim, dim, eps);
        var res = new Span<float>(T(residual).Data, rows * dim);
        TensorPrimitives.Add(res, new ReadOnlySpan<float>(ys, rows * dim), res);
    }

    public void SoftCap(DeviceTensor logits, int rows, int width, float cap)
    {
        float inverse = 1f / cap;
        float* ls = T(logits).Data;
        for (long i = 0, n = (long)rows * width; i < n; i++) ls[i] = LlamaMath.SoftCap(ls[i], inverse, cap);
    }

    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int rows)
    {
        Queue(x, w, null, y, rows);
        RunMatMuls();
    }

    /// <summary>
    /// Adds a matmul to the parallel job of those over the same input (Q, K and V; gate and up); one that cannot join
    /// (another input, or weights of another format) first runs what is gathered.
    /// </summary>
    void Queue(DeviceTensor x, DeviceWeight weight, DeviceWeight? bias, DeviceTensor y, int rows)
    {
        var w = W(weight);
        float* xs = T(x).Data;
        if (!_matmul.CanJoin(w, xs, rows)) RunMatMuls();
        if (_matmul.IsEmpty)
        {
            // the input prepared for the weight's format: rounded to f16/bf16, or quantized to q8_0 (in parallel when
            // large)
            _prepare.Prepare(w.Format, xs, rows, w.Columns);
            _pool.Run(_prepare, (long)rows * w.Columns);
        }
        _matmul.Add(w, w.Format.Activations(xs, _input), xs, bias is null ? null : (float*)W(bias).Data, T(y).Data,
            rows);
    }

    /// <summary>Every call runs to completion before it returns.</summary>
    public void Synchronize() { }

    void RunMatMuls()
    {
        if (_matmul.IsEmpty) return;
        try
        {
            _pool.Run(_matmul, _matmul.Work);
        }
        finally
        {
            // a failed step must not leave its matmuls to run at the start of the next one
            _matmul.Clear();
        }
    }

    /// <summary>Rounds or quantizes a matmul's input rows for its weight format, as ggml does before its dot
    /// products.</summary>
    sealed class PrepareJob(CpuBackend b) : ParallelJob
    {
        ICpuWeightFormat _format = null!;
        float* _x;
        int _rows, _k;

        public void Prepare(ICpuWeightFormat format, float* x, int rows, int k)
        {
            _format = format;
            _x = x;
            _rows = rows;
            _k = k;
            ResetChunks();
        }

        public override void Execute(int worker, int workers)
        {
            int k = _k;
            while (Claim(_rows, ChunkSize(_rows, workers), out int r0, out int r1))
                _format.Prepare(_x, b._input, r0, r1, k);
        }
    }

    /// <summary>
    /// Up to three matmuls over one input, their output rows taken in chunks of a few tens of KiB of weights by
    /// whichever worker is free (small chunks keep the wait at the end short).
    /// </summary>
    sealed class MatMulJob(CpuBackend b) : ParallelJob
    {
        const int ChunkBytes = 256 << 10;

        struct Part
        {
            public CpuWeight W;
            public float* Bias, Y;
            public int Chunk, Chunks;
        }

        readonly Part[] _parts = new Part[3];
        int _count, _rows;
        float* _x, _source;

        public bool IsEmpty => _count == 0;
        public long Work { get; private set; }

        /// <summary>Whether a matmul of <paramref name="w"/> over <paramref name="source"/> can run with those gathered
        /// so far.</summary>
        public bool CanJoin(CpuWeight w, float* source, int rows) =>
            _count == 0 || (_count < _parts.Length && source == _source && rows == _rows
                && w.Format.Stored == _parts[0].W.Format.Stored && w.Columns == _parts[0].W.Columns);

        public void Add(CpuWeight w, float* x, float* source, float* bias, float* y, int rows)
        {
            long rowBytes = GgmlTypeTraits.RowBytes(w.Format.Stored, w.Columns);
            // whole groups of eight rows, the matrix-vector kernel's unit
            int chunk = (int)Math.Clamp(ChunkBytes / rowBytes / 8 * 8, 8, Math.Max(8, w.Rows));
            // a batch computes more than it streams: about eight chunks a worker, so none waits long at the end (a
            // 1024-row q4_K matrix made three chunks for two workers; batch 16 on Q4_K_M: 79.5 against 81.5 ms per
            // step, medians of three: within the noise)
            int eighths = 64 * b._pool.Workers;
            if (rows > 1) chunk = Math.Min(chunk, Math.Max(8, (w.Rows + eighths - 1) / eighths * 8));
            _parts[_count++] = new Part
            {
                W = w,
                Bias = bias,
                Y = y,
                Chunk = chunk,
                Chunks = (w.Rows + chunk - 1) / chunk,
            };
            _x = x;
            _source = source;
            _rows = rows;
            Work += (long)rows * w.Columns * w.Rows;
            ResetChunks();
        }

        public void Clear()
        {
            _count = 0;
            Work = 0;
        }

        public override void Execute(int worker, int workers)
        {
            int total = 0;
            for (int i = 0; i < _count; i++) total += _parts[i].Chunks;
            float* scratch = b._packScratch + (long)worker * 4 * b._packStride;
            while (Claim(total, 1, out int c, out _))
            {
                int p = 0;
                while (c >= _parts[p].Chunks) c -= _parts[p++].Chunks;
                var w = _parts[p].W;
                float* bias = _parts[p].Bias, y = _parts[p].Y;
                int chunk = _parts[p].Chunk;
                int n = w.Rows, n0 = c * chunk, n1 = Math.Min(n, n0 + chunk);
                w.Format.MatMul(w, _x, b._input, y, bias, _rows, n, n0, n1, scratch);
            }
        }
    }

    public void RopeAndStoreKv(int layer, DeviceTensor q, DeviceTensor k, DeviceTensor v)
    {
        Rope(T(q).Data, T(k).Data, _config.RopeBase(layer), _config.RopeScale(layer));
        StoreKv(layer, T(k).Data, T(v).Data);
    }

    void Rope(float* qs, float* ks, float freqBase, float freqScale)
    {
        var c = _config;
        var s = _step;
        int hd = c.HeadDim;
        Span<float> cs = stackalloc float[hd];
        for (int t = 0; t < s.NumTokens; t++)
        {
            LlamaMath.RopeCosSin(c, freqBase, freqScale, s.Positions[t], cs);
            for (int h = 0; h < c.Heads; h++) Rotate(qs + ((long)t * c.Heads + h) * hd, cs, c.RopeDim, c.Rope);
            for (int h = 0; h < c.KvHeads; h++) Rotate(ks + ((long)t * c.KvHeads + h) * hd, cs, c.RopeDim, c.Rope);
        }
        // after the rotation, as ggml scales the roped q (gemma, phi3)
        if (c.QueryScale != 1f)
        {
            var all = new Span<float>(qs, s.NumTokens * c.QDim);
            TensorPrimitives.Multiply(all, c.QueryScale, all);
        }
    }

    /// <summary>Rotates a head's first <paramref name="rotated"/> dimensions; the rest pass unchanged (partial RoPE,
    /// as ggml's rope copies dimensions n_dims and up).</summary>
    static void Rotate(float* v, ReadOnlySpan<float> cs, int rotated, RopeStyle style)
    {
        for (int i = 0; i < rotated; i += 2)
        {
            float cos = cs[i], sin = cs[i + 1];
            // Norm rotates adjacent pairs; Neox rotates element j with element j + rotated/2
            int a = style == RopeStyle.Norm ? i : i / 2, b = style == RopeStyle.Norm ? i + 1 : i / 2 + rotated / 2;
            float x0 = v[a], x1 = v[b];
            // as GCC compiles ggml's rotate_pairs (-O3 with FMA): each product pair contracted into one fused
            // multiply-add; rounding both products apart parted from llama.cpp's roped q and k in the last bit, which
            // the q8_0 rounding of gemma's activations grew into another token. Without FMA (llama.cpp's AVX build,
            // which LLamaSharp loads there) it rounds them apart: fused, the all-q6_K file parted at token 1
            if (Fma.IsSupported || AdvSimd.IsSupported)
            {
                v[a] = MathF.FusedMultiplyAdd(x0, cos, -(x1 * sin));
                v[b] = MathF.FusedMultiplyAdd(x0, sin, x1 * cos);
            }
            else
            {
                v[a] = x0 * cos - x1 * sin;
                v[b] = x0 * sin + x1 * cos;
            }
        }
    }

    byte* KvBase(int layer, bool value) => _kvPool + _kvOffset[layer] + (value ? _kvBytes[layer] : 0);

    /// <summary>Element offset of (block, kv head) in a layer's K or V pool; dimension d of the key at offset o in
    /// the block follows at d · blockSize + o.</summary>
    long KvIndex(int block, int head) => ((long)block * _kvHeads + head) * _headDim * _blockSize;

    void StoreKv(int layer, float* ks, float* vs)
    {
        byte* kp = KvBase(layer, false), vp = KvBase(layer, true);
        var s = _step;
        int hd = _headDim, bs = _blockSize;
        Span<Half> half = stackalloc Half[hd];
        for (int t = 0; t < s.NumTokens; t++)
        {
            int slot = (_windowed[layer] ? s.WindowSlotMapping : s.SlotMapping)[t];
            for (int h = 0; h < _kvHeads; h++)
            {
                long at = KvIndex(slot / bs, h) + slot % bs;
                long src = ((long)t * _kvHeads + h) * hd;
                Scatter(kp, at, ks + src, half);
                Scatter(vp, at, vs + src, half);
            }
        }
    }

    /// <summary>One head's row of K or V into the pool, dimension d at <paramref name="at"/> + d ·
    /// blockSize.</summary>
    void Scatter(byte* pool, long at, float* row, Span<Half> half)
    {
        int bs = _blockSize;
        if (_kvType == KvCacheType.F32)
            for (int d = 0; d < half.Length; d++) ((float*)pool)[at + (long)d * bs] = row[d];
        else
        {
            TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(row, half.Length), half);
            for (int d = 0; d < half.Length; d++) ((Half*)pool)[at + (long)d * bs] = half[d];
        }
    }

    /// <summary>gate = silu(gate) * up (or GeGLU), rows split across workers.</summary>
    sealed class SwiGluJob : ParallelJob
    {
        float* _gate, _up;
        int _rows, _dim;
        bool _gelu;

        public void Prepare(float* gate, float* up, int rows, int dim, bool gelu)
        {
            _gate = gate;
            _up = up;
            _rows = rows;
            _dim = dim;
            _gelu = gelu;
        }

        public override void Execute(int worker, int workers)
        {
            // split by elements, not rows: a decode step of one sequence has one row
            var (i0, end) = Share(_rows * _dim, worker, workers, 16);
            if (_gelu)
                for (long i = i0; i < end; i++) _gate[i] = LlamaMath.GeGlu(_gate[i], _up[i]);
            else
                for (long i = i0; i < end; i++) _gate[i] = LlamaMath.SwiGlu(_gate[i], _up[i]);
        }
    }

    public void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens, StepLogprobs logprobs)
    {
        _sample.Prepare(T(logits).Data, vocabSize, logprobs);
        _pool.Run(_sample, (long)_step.NumLogitRows * vocabSize * 4);
        _sampled.AsSpan(0, _step.NumLogitRows).CopyTo(tokens);
    }

    /// <summary>One token per logits row, rows split across workers, each with its own sampler scratch.</summary>
    sealed class SampleJob(CpuBackend b) : ParallelJob
    {
        float* _logits;
        int _vocab;
        StepLogprobs _logprobs = null!;

        public void Prepare(float* logits, int vocab, StepLogprobs logprobs)
        {
            _logits = logits;
            _vocab = vocab;
            _logprobs = logprobs;
        }

        public override void Execute(int worker, int workers)
        {
            var s = b._step;
            var (i0, i1) = Share(s.NumLogitRows, worker, workers);
            if (i0 == i1) return;
            var sampler = b._samplers[worker] ??= new Sampler(_vocab);
            for (int i = i0; i < i1; i++)
            {
                var item = s.Items[s.LogitItems[i]];
                var row = new Span<float>(_logits + (long)i * _vocab, _vocab);
                b._sampled[i] = item.Sampling.Logprobs is { } k
                    ? sampler.Sample(row, item.Sampling, item.Seed, item.Tokens, item.NumPromptTokens,
                        _logprobs.Ids(i)[..k], _logprobs.Values(i)[..k], out _logprobs.Sampled[i])
                    : sampler.Sample(row, item.Sampling, item.Seed, item.Tokens, item.NumPromptTokens);
            }
        }
    }

    public float[] ReadRow(DeviceTensor t, int row, int width) =>
        new ReadOnlySpan<float>(T(t).Data + (long)row * width, width).ToArray();

    public void Dispose()
    {
        _pool.Dispose();
        foreach (var t in _tensors) t.Free();
        _tensors.Clear();
        foreach (var w in _weights) w.Free();
        _weights.Clear();
        _input.Free();
        _attention.Dispose();
        if (_packScratch != null) { NativeMemory.AlignedFree(_packScratch); _packScratch = null; }
        if (_kvPool != null) { NativeMemory.AlignedFree(_kvPool); _kvPool = null; }
    }
}
