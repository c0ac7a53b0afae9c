using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Numerics.Tensors;
using Weft.GpuRuntime.Gguf;
using Weft.GpuRuntime.Models;
using Weft.GpuRuntime.Sampling;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The managed-SIMD backend: the fast path without a GPU and the oracle for the ILGPU kernels.
/// Numerics follow ggml's CPU backend where that is cheap, so greedy output matches llama.cpp token for token:
/// activations are rounded to the weight's type before a dot product with f16/bf16 weights (ggml's "vec_dot_type"),
/// quantized to q8_0 blocks for q8_0 weights, RMSNorm sums squares in double, softmax sums in double, and RoPE angles
/// advance by repeated multiplication as ggml's rope cache does.
/// </summary>
public sealed unsafe class CpuBackend : IBackend
{
    sealed class CpuTensor(long length) : DeviceTensor
    {
        public readonly float* Data = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, length) * sizeof(float)), 64);
        public override long Length => length;
        public void Free() => NativeMemory.AlignedFree(Data);
    }

    sealed class CpuWeight(GgufTensorInfo info, GgmlType type, byte* data, bool owned) : DeviceWeight(info)
    {
        /// <summary>Storage type after load (q4_0/q4_K/q6_K are repacked to q8_0).</summary>
        public readonly GgmlType Type = type;
        public readonly byte* Data = data;
        public readonly bool Owned = owned;
        public long RowBytes => GgmlTypeInfo.RowBytes(Type, Columns);
    }

    readonly List<CpuTensor> _tensors = [];
    readonly List<CpuWeight> _weights = [];
    readonly ParallelOptions _parallel;
    StepInputs _step = null!;
    Sampler[] _samplers = [];
    int[] _sampled = [];

    // KV pool: per layer [numBlocks, kvHeads, blockSize, headDim] for K and for V, f16 or f32 elements.
    byte* _kvPool;
    long _kvLayerBytes;
    int _kvHeads, _headDim, _blockSize, _numBlocks, _heads;
    KvCacheType _kvType;

    // Activations rounded or quantized for the current matmul's weight type: [rows, columns] floats or q8_0 blocks.
    float* _xRounded;
    byte* _xQuant;
    long _scratchFloats;

    public CpuBackend(int threads)
    {
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = Threads };
    }

    public int Threads { get; }
    public string Description => $"cpu: managed SIMD ({(Vector512.IsHardwareAccelerated ? "AVX-512" : Vector256.IsHardwareAccelerated ? "AVX2" : "scalar")}), {Threads} threads";

    public DeviceTensor Allocate(long floats)
    {
        var t = new CpuTensor(floats);
        _tensors.Add(t);
        if (floats > _scratchFloats)
        {
            // the rounded/quantized copy of a matmul's input is never larger than the largest activation
            if (_xRounded != null) { NativeMemory.AlignedFree(_xRounded); NativeMemory.AlignedFree(_xQuant); }
            _scratchFloats = floats;
            _xRounded = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
            _xQuant = (byte*)NativeMemory.AlignedAlloc((nuint)(floats / 32 * 34 + 64), 64);
        }
        return t;
    }

    public DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo t)
    {
        byte* src = file.DataPointer(t);
        CpuWeight w;
        if (t.Type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0)
        {
            w = new CpuWeight(t, t.Type, src, owned: false); // read in place from the mapping
        }
        else
        {
            // Formats without a kernel of their own are repacked once to q8_0 (no accuracy worth measuring is lost:
            // 8 bits per weight holds a 4- or 6-bit weight almost exactly).
            if (t.Columns % 32 != 0) throw file.Fail($"tensor '{t.Name}' of type {t.Type} has rows not divisible by 32");
            long rowBytes = GgmlTypeInfo.RowBytes(GgmlType.Q8_0, t.Columns);
            var dst = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * t.Rows), 64);
            var row = new float[t.Columns];
            long srcRowBytes = GgmlTypeInfo.RowBytes(t.Type, t.Columns);
            for (long r = 0; r < t.Rows; r++)
            {
                GgmlQuant.Dequantize(t.Type, new ReadOnlySpan<byte>(src + r * srcRowBytes, (int)srcRowBytes), row);
                GgmlQuant.Quantize(GgmlType.Q8_0, row).CopyTo(new Span<byte>(dst + r * rowBytes, (int)rowBytes));
            }
            w = new CpuWeight(t, GgmlType.Q8_0, dst, owned: true);
        }
        _weights.Add(w);
        return w;
    }

    public void AllocateKvCache(ModelConfig config, int numBlocks, int blockSize, KvCacheType type)
    {
        _kvHeads = config.KvHeads;
        _heads = config.Heads;
        _headDim = config.HeadDim;
        _blockSize = blockSize;
        _numBlocks = numBlocks;
        _kvType = type;
        _kvLayerBytes = (long)numBlocks * config.KvHeads * blockSize * config.HeadDim * (type == KvCacheType.F16 ? 2 : 4);
        nuint total = (nuint)(_kvLayerBytes * 2 * config.Layers);
        _kvPool = (byte*)NativeMemory.AlignedAlloc(total, 64);
        NativeMemory.Clear(_kvPool, total);
    }

    public void BeginStep(StepInputs inputs)
    {
        _step = inputs;
        if (_sampled.Length < inputs.MaxSeqs)
        {
            _samplers = new Sampler[Math.Min(inputs.MaxSeqs, 4 * Threads)];
            _sampled = new int[inputs.MaxSeqs];
        }
    }

    static CpuTensor T(DeviceTensor t) => (CpuTensor)t;
    static CpuWeight W(DeviceWeight w) => (CpuWeight)w;

    public void Embed(DeviceWeight table, DeviceTensor x, int dim)
    {
        var w = W(table);
        var xs = T(x).Data;
        var s = _step;
        Parallel.For(0, s.NumTokens, _parallel, t =>
        {
            long rb = w.RowBytes;
            GgmlQuant.Dequantize(w.Type, new ReadOnlySpan<byte>(w.Data + s.TokenIds[t] * rb, (int)rb), new Span<float>(xs + (long)t * dim, dim));
        });
    }

    public void RmsNorm(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps)
    {
        float* xs = T(x).Data, ys = T(y).Data, w = (float*)W(weight).Data;
        for (int r = 0; r < rows; r++)
        {
            var xr = new ReadOnlySpan<float>(xs + (long)r * dim, dim);
            var yr = new Span<float>(ys + (long)r * dim, dim);
            double sum = 0;
            foreach (var v in xr) sum += v * v;
            float mean = (float)(sum / dim);
            float scale = 1f / MathF.Sqrt(mean + eps);
            TensorPrimitives.Multiply(xr, scale, yr);
            TensorPrimitives.Multiply(yr, new ReadOnlySpan<float>(w, dim), yr);
        }
    }

    public void MatMul(DeviceTensor x, DeviceWeight weight, DeviceWeight? bias, DeviceTensor y, int rows)
    {
        var w = W(weight);
        int k = w.Columns, n = w.Rows;
        float* xs = T(x).Data, ys = T(y).Data;
        float* b = bias is null ? null : (float*)W(bias).Data;

        float* xin = xs;
        switch (w.Type)
        {
            case GgmlType.F16:
                for (long i = 0; i < (long)rows * k; i++) _xRounded[i] = (float)(Half)xs[i];
                xin = _xRounded;
                break;
            case GgmlType.BF16:
                for (long i = 0; i < (long)rows * k; i++) _xRounded[i] = GgmlQuant.BFloat16ToSingle(GgmlQuant.SingleToBFloat16(xs[i]));
                xin = _xRounded;
                break;
            case GgmlType.Q8_0:
                {
                    long rb = GgmlTypeInfo.RowBytes(GgmlType.Q8_0, k);
                    byte* q = _xQuant;
                    Parallel.For(0, rows, _parallel, r => QuantizeQ8_0(xs + (long)r * k, q + r * rb, k));
                    break;
                }
        }

        const int chunk = 16;
        int chunks = (n + chunk - 1) / chunk;
        byte* xq = _xQuant;
        Parallel.For(0, chunks, _parallel, () => new float[k], (c, _, scratch) =>
        {
            fixed (float* wrow = scratch)
            {
                int end = Math.Min(n, (c + 1) * chunk);
                for (int o = c * chunk; o < end; o++)
                {
                    float bo = b is null ? 0 : b[o];
                    switch (w.Type)
                    {
                        case GgmlType.F32:
                            {
                                var wr = new ReadOnlySpan<float>(w.Data + (long)o * k * 4, k);
                                for (int r = 0; r < rows; r++) ys[(long)r * n + o] = TensorPrimitives.Dot(wr, new ReadOnlySpan<float>(xin + (long)r * k, k)) + bo;
                                break;
                            }
                        case GgmlType.F16 or GgmlType.BF16:
                            {
                                var src = (ushort*)(w.Data + (long)o * k * 2);
                                if (w.Type == GgmlType.F16) HalfMath.ToSingle(src, wrow, k); else HalfMath.Bf16ToSingle(src, wrow, k);
                                var wr = new ReadOnlySpan<float>(wrow, k);
                                for (int r = 0; r < rows; r++) ys[(long)r * n + o] = TensorPrimitives.Dot(wr, new ReadOnlySpan<float>(xin + (long)r * k, k)) + bo;
                                break;
                            }
                        case GgmlType.Q8_0:
                            {
                                long rb = w.RowBytes;
                                for (int r = 0; r < rows; r++) ys[(long)r * n + o] = DotQ8_0(w.Data + o * rb, xq + r * rb, k / 32) + bo;
                                break;
                            }
                        default: throw new NotSupportedException($"matmul over {w.Type}");
                    }
                }
            }
            return scratch;
        }, _ => { });
    }

    /// <summary>ggml's quantize_row_q8_0: per block of 32, d = max|x| / 127 and q = round(x / d).</summary>
    static void QuantizeQ8_0(float* x, byte* dst, int k)
    {
        for (int b = 0; b < k / 32; b++)
        {
            float* xs = x + b * 32;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(xs[j]));
            float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
            byte* blk = dst + b * 34;
            *(Half*)blk = (Half)d;
            for (int j = 0; j < 32; j++) blk[2 + j] = (byte)(sbyte)MathF.Round(xs[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    static float DotQ8_0(byte* w, byte* x, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* wb = w + b * 34, xb = x + b * 34;
            var wv = Vector256.Load((sbyte*)(wb + 2));
            var xv = Vector256.Load((sbyte*)(xb + 2));
            var (wl, wh) = Vector256.Widen(wv);
            var (xl, xh) = Vector256.Widen(xv);
            // products fit in 16 bits but their sums do not: widen pairs to 32 bits before adding
            int isum = Vector256.Sum(Avx2.MultiplyAddAdjacent(wl, xl) + Avx2.MultiplyAddAdjacent(wh, xh));
            sum += (float)*(Half*)wb * (float)*(Half*)xb * isum;
        }
        return sum;
    }

    public void Rope(DeviceTensor q, DeviceTensor k, ModelConfig c)
    {
        float* qs = T(q).Data, ks = T(k).Data;
        var s = _step;
        float thetaScale = MathF.Pow(c.RopeFreqBase, -2f / c.RopeDim);
        int hd = c.HeadDim;
        Parallel.For(0, s.NumTokens, _parallel, () => new float[hd], (t, _, cs) =>
        {
            // cos/sin cache for this position: cs[2i] = cos, cs[2i+1] = sin
            float theta = s.Positions[t];
            for (int i = 0; i < hd; i += 2)
            {
                cs[i] = MathF.Cos(theta);
                cs[i + 1] = MathF.Sin(theta);
                theta *= thetaScale;
            }
            for (int h = 0; h < c.Heads; h++) Rotate(qs + ((long)t * c.Heads + h) * hd, cs, hd, c.Rope);
            for (int h = 0; h < c.KvHeads; h++) Rotate(ks + ((long)t * c.KvHeads + h) * hd, cs, hd, c.Rope);
            return cs;
        }, _ => { });
    }

    static void Rotate(float* v, float[] cs, int hd, RopeStyle style)
    {
        for (int i = 0; i < hd; i += 2)
        {
            float cos = cs[i], sin = cs[i + 1];
            // Norm rotates adjacent pairs; Neox rotates element j with element j + hd/2
            int a = style == RopeStyle.Norm ? i : i / 2, b = style == RopeStyle.Norm ? i + 1 : i / 2 + hd / 2;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cos - x1 * sin;
            v[b] = x0 * sin + x1 * cos;
        }
    }

    byte* KvBase(int layer, bool value) => _kvPool + (2L * layer + (value ? 1 : 0)) * _kvLayerBytes;

    /// <summary>Element offset of (slot's block, kv head, slot's offset) in a layer's K or V pool.</summary>
    long KvIndex(int block, int head, int offset) => (((long)block * _kvHeads + head) * _blockSize + offset) * _headDim;

    public void StoreKv(int layer, DeviceTensor k, DeviceTensor v)
    {
        float* ks = T(k).Data, vs = T(v).Data;
        byte* kp = KvBase(layer, false), vp = KvBase(layer, true);
        var s = _step;
        for (int t = 0; t < s.NumTokens; t++)
        {
            int slot = s.SlotMapping[t], block = slot / _blockSize, off = slot % _blockSize;
            for (int h = 0; h < _kvHeads; h++)
            {
                long dst = KvIndex(block, h, off);
                float* srcK = ks + ((long)t * _kvHeads + h) * _headDim, srcV = vs + ((long)t * _kvHeads + h) * _headDim;
                if (_kvType == KvCacheType.F32)
                {
                    new ReadOnlySpan<float>(srcK, _headDim).CopyTo(new Span<float>((float*)kp + dst, _headDim));
                    new ReadOnlySpan<float>(srcV, _headDim).CopyTo(new Span<float>((float*)vp + dst, _headDim));
                }
                else
                {
                    for (int d = 0; d < _headDim; d++)
                    {
                        ((Half*)kp)[dst + d] = (Half)srcK[d];
                        ((Half*)vp)[dst + d] = (Half)srcV[d];
                    }
                }
            }
        }
    }

    public void Attention(int layer, DeviceTensor q, DeviceTensor output)
    {
        float* qs = T(q).Data, os = T(output).Data;
        byte* kp = KvBase(layer, false), vp = KvBase(layer, true);
        var s = _step;
        int group = _heads / _kvHeads, hd = _headDim;
        float scale = 1f / MathF.Sqrt(hd);
        bool f16 = _kvType == KvCacheType.F16;
        int work = s.NumTokens * _kvHeads;
        Parallel.For(0, work, _parallel, () => new AttentionScratch(), (wi, _, sc) =>
        {
            int t = wi / _kvHeads, g = wi % _kvHeads;
            int ctx = s.Positions[t] + 1, seq = s.RowSeq[t];
            sc.Ensure(ctx, hd);
            var table = s.BlockTables.AsSpan(seq * s.MaxBlocksPerSeq, s.MaxBlocksPerSeq);
            for (int h = g * group; h < (g + 1) * group; h++)
            {
                float* qh = qs + ((long)t * _heads + h) * hd;
                // ggml rounds the query to the K cache's type before the dot product
                for (int d = 0; d < hd; d++) sc.Q[d] = f16 ? (float)(Half)qh[d] : qh[d];
                float max = float.NegativeInfinity;
                for (int j = 0; j < ctx; j++)
                {
                    long at = KvIndex(table[j / _blockSize], g, j % _blockSize);
                    float dot;
                    if (f16) { HalfMath.ToSingle((ushort*)kp + at, sc.Row, hd); dot = TensorPrimitives.Dot(new ReadOnlySpan<float>(sc.Row, hd), sc.Q.AsSpan(0, hd)); }
                    else dot = TensorPrimitives.Dot(new ReadOnlySpan<float>((float*)kp + at, hd), sc.Q.AsSpan(0, hd));
                    sc.Scores[j] = dot * scale;
                    max = MathF.Max(max, sc.Scores[j]);
                }
                double sum = 0;
                for (int j = 0; j < ctx; j++) sum += sc.Scores[j] = MathF.Exp(sc.Scores[j] - max);
                float inv = (float)(1.0 / sum);
                var o = new Span<float>(os + ((long)t * _heads + h) * hd, hd);
                o.Clear();
                for (int j = 0; j < ctx; j++)
                {
                    float p = sc.Scores[j] * inv;
                    long at = KvIndex(table[j / _blockSize], g, j % _blockSize);
                    if (f16)
                    {
                        p = (float)(Half)p; // ggml rounds the probabilities to the V cache's type
                        HalfMath.ToSingle((ushort*)vp + at, sc.Row, hd);
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(sc.Row, hd), p, o, o);
                    }
                    else TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>((float*)vp + at, hd), p, o, o);
                }
            }
            return sc;
        }, sc => sc.Dispose());
    }

    sealed class AttentionScratch : IDisposable
    {
        public float[] Scores = [];
        public float[] Q = [];
        public float* Row;
        int _rowLength;

        public void Ensure(int ctx, int hd)
        {
            if (Scores.Length < ctx) Scores = new float[Math.Max(ctx, 2 * Scores.Length)];
            if (Q.Length < hd) Q = new float[hd];
            if (_rowLength < hd)
            {
                if (Row != null) NativeMemory.Free(Row);
                Row = (float*)NativeMemory.Alloc((nuint)(hd * sizeof(float)));
                _rowLength = hd;
            }
        }

        public void Dispose()
        {
            if (Row != null) NativeMemory.Free(Row);
            Row = null;
        }
    }

    public void SwiGlu(DeviceTensor gate, DeviceTensor up, int rows, int dim)
    {
        float* g = T(gate).Data, u = T(up).Data;
        long n = (long)rows * dim;
        Parallel.For(0, rows, _parallel, r =>
        {
            float* gr = g + (long)r * dim, ur = u + (long)r * dim;
            for (int i = 0; i < dim; i++) gr[i] = gr[i] / (1f + MathF.Exp(-gr[i])) * ur[i];
        });
    }

    public void Add(DeviceTensor x, DeviceTensor y, int rows, int dim)
    {
        int n = rows * dim;
        TensorPrimitives.Add(new ReadOnlySpan<float>(T(x).Data, n), new ReadOnlySpan<float>(T(y).Data, n), new Span<float>(T(x).Data, n));
    }

    public void GatherLogitRows(DeviceTensor x, DeviceTensor y, int dim)
    {
        var s = _step;
        for (int i = 0; i < s.NumLogitRows; i++)
            new ReadOnlySpan<float>(T(x).Data + (long)s.LogitRows[i] * dim, dim).CopyTo(new Span<float>(T(y).Data + (long)i * dim, dim));
    }

    public void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens)
    {
        var s = _step;
        float* l = T(logits).Data;
        int n = s.NumLogitRows;
        var result = _sampled;
        int workers = Math.Min(n, _samplers.Length);
        Parallel.For(0, workers, _parallel, wkr =>
        {
            var sampler = _samplers[wkr] ??= new Sampler(vocabSize);
            for (int i = wkr; i < n; i += workers)
            {
                var item = s.Items[s.LogitItems[i]];
                result[i] = sampler.Sample(new Span<float>(l + (long)i * vocabSize, vocabSize), item.Sampling, item.Seed, item.Tokens, item.NumPromptTokens);
            }
        });
        result.AsSpan(0, n).CopyTo(tokens);
    }

    /// <summary>Row i of the last logits (tests compare these with a reference).</summary>
    public ReadOnlySpan<float> Row(DeviceTensor t, int row, int width) => new(T(t).Data + (long)row * width, width);

    public void Dispose()
    {
        foreach (var t in _tensors) t.Free();
        _tensors.Clear();
        foreach (var w in _weights) if (w.Owned) NativeMemory.AlignedFree(w.Data);
        _weights.Clear();
        if (_xRounded != null) { NativeMemory.AlignedFree(_xRounded); NativeMemory.AlignedFree(_xQuant); _xRounded = null; }
        if (_kvPool != null) { NativeMemory.AlignedFree(_kvPool); _kvPool = null; }
    }
}
