using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Weft.GpuRuntime.Engine.Cpu;

public sealed unsafe partial class CpuBackend
{
    public void Attention(int layer, DeviceTensor q, DeviceTensor output) =>
        _attention.Run(layer, T(q).Data, T(output).Data);

    /// <summary>
    /// Causal attention over each sequence's own cached K/V, in the summation order of ggml's CPU backend, so logits
    /// are the same bits alone or batched and greedy output is llama.cpp's. A work item is one sequence's block of up
    /// to 16 query rows for one KV head (all the heads of its GQA group). Three parallel phases split each item so a
    /// long context at batch 1 (a few items) still spreads over every core, flash-decoding style, without changing
    /// any sum: the scores are independent dot products, split over keys; the softmax of a row needs the whole row,
    /// one task a row; each output dimension is one chain over the keys (<see cref="WeightedValues16"/>), split over
    /// dimensions rather than keys; items run in waves whose scores fit <see cref="WaveFloats"/>. A step with an
    /// item for every task a split would make (a batch, a prefill), or little work, runs each item whole in one task
    /// instead, its scores in the worker's scratch.
    /// </summary>
    /// <remarks>The cache keeps keys minor within a block (see <see cref="AllocateKvCache"/>), so a dimension of a
    /// run of keys is one contiguous vector: a score tile and the transposed values are plain (widening) copies. The
    /// transposes these replaced, element by element per item and layer, cost more than the multiply-adds: batch 1
    /// after a 1536-token prompt on the 300m f16 model took 0.83x llama.cpp's step time against 1.10x after 32
    /// tokens.</remarks>
    sealed class AttentionJob(CpuBackend b) : ParallelJob, IDisposable
    {
        const int QueryBlock = 16;
        /// <summary>Keys per task unit of the score phase and the rounding of a score row: four vectors of the
        /// widest width, so each query's scores run as four independent chains.</summary>
        const int TileKeys = 64;
        /// <summary>Scores of one wave (4 MiB): a prefill of thousands of rows over a long context would otherwise
        /// need hundreds of MB.</summary>
        const long WaveFloats = 1 << 20;

        /// <summary>Below this many multiply-adds in a step (a context of 256 at batch 1 on the 300m model, tens of
        /// microseconds) the two extra barriers of a split cost about what an uneven share of whole items does.
        /// </summary>
        const long SplitWork = 1 << 18;

        /// <summary>The three phases, or all three for one item in one task (<see cref="Phase.Whole"/>).</summary>
        enum Phase { Scores, Softmax, Values, Whole }

        struct Item
        {
            public int Row0, Rows, Head, Ctx, Padded;
            /// <summary>The sequence's only row of the step (a decode) with AVX-512: see
            /// <see cref="WeightedValues64"/>. Without it LLamaSharp loads llama.cpp's AVX2 or AVX build, whose
            /// decode the eight lanes match (the 64-lane order parted from the AVX build at token 1 of an all-q6_K
            /// file).</summary>
            public bool Single;
            public long Scores;
        }

        Item[] _items = new Item[64];
        int _count;
        // per phase of a wave: the first task of each of its items, and the total after the last
        int[] _tasks = new int[65];
        float* _scores;
        long _scoresFloats;
        // per worker: queries, a key tile or values (scratch), and the scores of a whole item (rows)
        readonly float*[] _scratch = new float*[b.Threads], _rows = new float*[b.Threads];
        readonly long[] _scratchFloats = new long[b.Threads], _rowsFloats = new long[b.Threads];

        int _layer;
        float* _q, _out;
        Phase _phase;
        int _first, _waveItems, _tilesPerTask, _dimsPerTask;

        public void Run(int layer, float* q, float* output)
        {
            _layer = layer;
            _q = q;
            _out = output;
            var s = b._step;
            int group = b._heads / b._kvHeads, hd = b._headDim;
            long work = 0;
            _count = 0;
            for (int i = 0; i < s.NumSeqs; i++)
                for (int r = 0; r < s.Items[i].Count; r += QueryBlock)
                {
                    int row0 = s.ItemRowStart[i] + r, rows = Math.Min(QueryBlock, s.Items[i].Count - r);
                    int ctx = s.Positions[row0 + rows - 1] + 1; // keys the last query row sees
                    work += (long)rows * b._heads * ctx * hd;
                    for (int g = 0; g < b._kvHeads; g++)
                    {
                        if (_count == _items.Length) Array.Resize(ref _items, 2 * _count);
                        _items[_count++] = new Item
                        {
                            Row0 = row0,
                            Rows = rows,
                            Head = g,
                            Ctx = ctx,
                            Padded = (ctx + TileKeys - 1) & -TileKeys,
                            Single = s.Items[i].Count == 1 && Vector512.IsHardwareAccelerated,
                        };
                    }
                }
            if (_tasks.Length <= _count) _tasks = new int[_items.Length + 1];
            // about eight tasks a worker in each phase, so none waits long at the end
            int wanted = 8 * b._pool.Workers;
            if (_count >= wanted || work < SplitWork)
            {
                _first = 0;
                _waveItems = _count;
                _dimsPerTask = hd;
                Start(Phase.Whole, work);
                return;
            }
            for (int i0 = 0; i0 < _count;)
            {
                long floats = 0;
                int i1 = i0;
                for (; i1 < _count; i1++)
                {
                    long size = (long)_items[i1].Rows * group * _items[i1].Padded;
                    if (i1 > i0 && floats + size > WaveFloats) break;
                    _items[i1].Scores = floats;
                    floats += size;
                }
                if (floats > _scoresFloats)
                {
                    NativeMemory.AlignedFree(_scores);
                    _scoresFloats = Math.Max(floats, WaveFloats);
                    _scores = (float*)NativeMemory.AlignedAlloc((nuint)(_scoresFloats * sizeof(float)), 64);
                }
                Wave(i0, i1, wanted);
                i0 = i1;
            }
        }

        void Wave(int i0, int i1, int wanted)
        {
            int n = i1 - i0, hd = b._headDim, group = b._heads / b._kvHeads;
            _first = i0;
            _waveItems = n;
            long tiles = 0, work = 0;
            for (int i = i0; i < i1; i++)
            {
                tiles += _items[i].Padded / TileKeys;
                work += (long)_items[i].Rows * group * _items[i].Ctx * hd;
            }
            _tilesPerTask = (int)Math.Max(1, tiles / wanted);
            Start(Phase.Scores, work);
            Start(Phase.Softmax, work / hd * 4);
            int split = Math.Clamp((wanted + n - 1) / n, 1, (hd + 3) / 4);
            // whole groups of four dimensions, the unit of WeightedValues16
            _dimsPerTask = Math.Min(hd, ((hd + split - 1) / split + 3) & ~3);
            Start(Phase.Values, work);
        }

        void Start(Phase phase, long work)
        {
            int group = b._heads / b._kvHeads;
            _phase = phase;
            _tasks[0] = 0;
            for (int i = 0; i < _waveItems; i++)
            {
                ref var it = ref _items[_first + i];
                _tasks[i + 1] = _tasks[i] + phase switch
                {
                    Phase.Scores => (it.Padded / TileKeys + _tilesPerTask - 1) / _tilesPerTask,
                    Phase.Softmax => it.Rows * group,
                    Phase.Values => (b._headDim + _dimsPerTask - 1) / _dimsPerTask,
                    _ => 1,
                };
            }
            ResetChunks();
            b._pool.Run(this, work);
        }

        public override void Execute(int worker, int workers)
        {
            int total = _tasks[_waveItems];
            int chunk = _phase == Phase.Softmax ? ChunkSize(total, workers) : 1;
            while (Claim(total, chunk, out int t0, out int t1))
                for (int t = t0; t < t1; t++)
                {
                    int i = _tasks.AsSpan(0, _waveItems + 1).BinarySearch(t);
                    // a task that starts an item is found exactly (every item has one task or more)
                    if (i < 0) i = ~i - 1;
                    ref var it = ref _items[_first + i];
                    int k = t - _tasks[i];
                    if (_phase == Phase.Softmax) Softmax(in it, k, _scores + it.Scores);
                    else if (MatMulKernels.FloatWidth == 512) Part<Vector512<float>>(in it, k, worker);
                    else if (MatMulKernels.FloatWidth == 256) Part<Vector256<float>>(in it, k, worker);
                    else Part<Vector128<float>>(in it, k, worker);
                }
        }

        void Part<TVec>(in Item it, int k, int worker) where TVec : struct
        {
            if (_phase == Phase.Scores)
                Scores<TVec>(in it, k * _tilesPerTask, Math.Min(it.Padded / TileKeys, (k + 1) * _tilesPerTask),
                    _scores + it.Scores, worker);
            else if (_phase == Phase.Values) Values<TVec>(in it, k * _dimsPerTask, _scores + it.Scores, worker);
            else
            {
                int queries = it.Rows * b._heads / b._kvHeads;
                float* scores = Grow(_rows, _rowsFloats, worker, (long)queries * it.Padded);
                Scores<TVec>(in it, 0, it.Padded / TileKeys, scores, worker);
                for (int qi = 0; qi < queries; qi++) Softmax(in it, qi, scores);
                Values<TVec>(in it, 0, scores, worker);
            }
        }

        Span<int> Table(in Item it)
        {
            var s = b._step;
            return (b._windowed[_layer] ? s.WindowBlockTables : s.BlockTables)
                .AsSpan(s.RowSeq[it.Row0] * s.MaxBlocksPerSeq, s.MaxBlocksPerSeq);
        }

        /// <summary>scores[q, j] = q · k_j for the keys of tiles [tile0, tile1): per query, lanes are keys and each
        /// score one chain of multiply-adds over the dimensions, fused wherever the CPU fuses (Vector512 alone,
        /// unaccelerated, fell back to a software fma per element on x64 without FMA: 10 of 28 ms of a 300m q8_0
        /// decode step).</summary>
        void Scores<TVec>(in Item it, int tile0, int tile1, float* scores, int worker) where TVec : struct
        {
            if (it.Single && b._blockSize % 16 == 0)
            {
                SingleScores(in it, tile0, tile1, scores, worker);
                return;
            }
            var s = b._step;
            int hd = b._headDim, group = b._heads / b._kvHeads, queries = it.Rows * group, c = Simd<TVec>.Count;
            int tile = 4 * c; // keys at a time: four chains per query
            bool f16 = b._kvType == KvCacheType.F16;
            float* qs = Grow(_scratch, _scratchFloats, worker, (long)queries * hd + hd * tile); // [queries, hd]
            float* kt = qs + queries * hd;                                 // [hd, tile] the keys, key-minor
            float* eighths = stackalloc float[8 * 16]; // see Dot
            for (int r = 0; r < it.Rows; r++)
            {
                float* src = _q + ((long)(it.Row0 + r) * b._heads + it.Head * group) * hd;
                // rounded as ggml rounds q for an f16 cache
                if (f16) HalfMath.RoundToHalf(src, qs + r * group * hd, group * hd);
                else new ReadOnlySpan<float>(src, group * hd).CopyTo(new Span<float>(qs + r * group * hd, group * hd));
            }
            var table = Table(in it);
            byte* kp = b.KvBase(_layer, false);
            var scale = Simd<TVec>.Broadcast(b._config.ScoreScale);
            int bs = b._blockSize, run = Math.Min(bs, tile);
            int elem = f16 ? 2 : 4;
            for (int j0 = tile0 * TileKeys, end = Math.Min(tile1 * TileKeys, it.Ctx); j0 < end; j0 += tile)
            {
                // the next tile's keys: a head's block is one run of memory, but the blocks of a sequence are a head
                // apart or scattered, so the hardware prefetcher, which stops at a page, does not find them
                for (int j = j0 + tile; j < Math.Min(j0 + 2 * tile, end); j += bs)
                    Prefetch(kp + (b.KvIndex(table[j / bs], it.Head) + j % bs) * elem, hd * bs * elem);
                for (int k = 0; k < tile; k += run)
                {
                    int j = j0 + k, n = Math.Clamp(it.Ctx - j, 0, run);
                    long at = n > 0 ? b.KvIndex(table[j / bs], it.Head) + j % bs : 0;
                    for (int d = 0; d < hd; d++) Widen<TVec>(kp, at + (long)d * bs, kt + d * tile + k, n, run, f16);
                }
                for (int qi = 0; qi < queries; qi++)
                {
                    float* q = qs + qi * hd, o = scores + (long)qi * it.Padded + j0;
                    for (int u = 0; u < tile; u += c)
                        Simd<TVec>.Store(Simd<TVec>.Multiply(Dot<TVec>(q, kt + u, hd, tile, eighths), scale), o + u);
                }
            }
        }

        /// <summary>
        /// <see cref="Dot{TVec}"/>'s scores for a decode row, read straight from the cache: a block's run of 16 keys
        /// of a dimension is one vector, and each converted vector serves up to four queries of the GQA group from
        /// registers. Copied into a key-minor tile first and read back once per query, the keys cost the 4096-token
        /// step on the 300m model 5.8 ms (about 4 after).
        /// </summary>
        void SingleScores(in Item it, int tile0, int tile1, float* scores, int worker)
        {
            int hd = b._headDim, group = b._heads / b._kvHeads, bs = b._blockSize, ctx = it.Ctx;
            bool f16 = b._kvType == KvCacheType.F16;
            int elem = f16 ? 2 : 4, full = hd & ~63;
            float* qs = Grow(_scratch, _scratchFloats, worker, (long)group * hd + 8 * 16 * 4);
            float* eighths = qs + group * hd; // [query of four][eighth][16 keys]
            float* src = _q + ((long)it.Row0 * b._heads + it.Head * group) * hd;
            // rounded as ggml rounds q for an f16 cache
            if (f16) HalfMath.RoundToHalf(src, qs, group * hd);
            else new ReadOnlySpan<float>(src, group * hd).CopyTo(new Span<float>(qs, group * hd));
            var table = Table(in it);
            byte* kp = b.KvBase(_layer, false);
            var scale = Vector512.Create(b._config.ScoreScale);
            // rows of 16 keys share a cache line where a block is 16 keys
            int rowStep = bs == 16 ? Math.Max(1, 64 / (16 * elem)) : 1;
            for (int j = tile0 * TileKeys, end = Math.Min(tile1 * TileKeys, ctx); j < end; j += 16)
            {
                long at = b.KvIndex(table[j / bs], it.Head) + j % bs; // dimension 0 of key j
                // the keys four groups on (see Scores), an eighth of their rows with each eighth of these
                int ahead = j + 64;
                byte* next = ahead < end ? kp + (b.KvIndex(table[ahead / bs], it.Head) + ahead % bs) * elem : null;
                int keys = Math.Min(16, ctx - j);
                for (int q0 = 0; q0 < group; q0 += 4)
                {
                    int n = Math.Min(4, group - q0);
                    // the keys ahead only once, and with the first eighths
                    byte* fetch = q0 == 0 ? next : null;
                    var q = new Queries(qs + q0 * hd, hd);
                    if (n == 4) Eighths<FourRows>(kp, at, bs, keys, f16, q, hd, full, fetch, rowStep, elem, eighths);
                    else if (n == 3)
                        Eighths<ThreeRows>(kp, at, bs, keys, f16, q, hd, full, fetch, rowStep, elem, eighths);
                    else if (n == 2)
                        Eighths<TwoRows>(kp, at, bs, keys, f16, q, hd, full, fetch, rowStep, elem, eighths);
                    else Eighths<OneRow>(kp, at, bs, keys, f16, q, hd, full, fetch, rowStep, elem, eighths);
                    for (int qi = 0; qi < n; qi++)
                    {
                        float* e = eighths + 128 * qi, qv = qs + (q0 + qi) * hd;
                        var r = Vector512<float>.Zero;
                        if (full > 0)
                            r = ((Vector512.Load(e) + Vector512.Load(e + 64))
                                    + (Vector512.Load(e + 32) + Vector512.Load(e + 96)))
                                + ((Vector512.Load(e + 16) + Vector512.Load(e + 80))
                                    + (Vector512.Load(e + 48) + Vector512.Load(e + 112)));
                        for (int d = full; d < hd; d++)
                            r = Vector512.FusedMultiplyAdd(Vector512.Create(qv[d]), Key16(kp, at, d, bs, keys, f16), r);
                        (r * scale).Store(scores + (long)(q0 + qi) * it.Padded + j);
                    }
                }
            }
        }

        /// <summary>Four consecutive queries' rows, each its own pointer: indexed from one base by multiples of the
        /// head size, an address computation per broadcast made attention at 4096 tokens about 0.5 ms slower.</summary>
        readonly struct Queries(float* first, int hd)
        {
            public readonly float* A = first, B = first + hd, C = first + 2 * hd, D = first + 3 * hd;
        }

        /// <summary>Dot's eight eighths for 16 keys and the first <typeparamref name="TQ"/> queries of q into
        /// <paramref name="eighths"/> (128 floats a query); an eighth of the rows at <paramref name="next"/> fetched
        /// with each.</summary>
        /// <remarks>Not inlined: four instantiations in <see cref="SingleScores"/> would put it over the JIT's inlining
        /// budget, leaving the lanes as calls (see <see cref="Dot{TVec}"/>).</remarks>
        [MethodImpl(MethodImplOptions.NoInlining)]
        static void Eighths<TQ>(byte* kp, long at, int bs, int keys, bool f16, Queries q, int hd, int full,
            byte* next, int rowStep, int elem, float* eighths) where TQ : struct, ITile
        {
            for (int i = 0; i < 8 && full > 0; i++)
            {
                if (next != null)
                    for (int d = i * hd / 8; d < (i + 1) * hd / 8; d += rowStep)
                        Simd.Prefetch(next + (long)d * bs * elem);
                // Dot's eighth i: ((l(i) + l(i+32)) + (l(i+16) + l(i+48))) + ((l(i+8) + l(i+40)) + ...)
                Pair<TQ>(kp, at, bs, keys, f16, q, hd, i, full, out var a0, out var b0, out var c0, out var d0);
                Pair<TQ>(kp, at, bs, keys, f16, q, hd, i + 16, full, out var a1, out var b1, out var c1, out var d1);
                Pair<TQ>(kp, at, bs, keys, f16, q, hd, i + 8, full, out var a2, out var b2, out var c2, out var d2);
                Pair<TQ>(kp, at, bs, keys, f16, q, hd, i + 24, full, out var a3, out var b3, out var c3, out var d3);
                ((a0 + a1) + (a2 + a3)).Store(eighths + 16 * i);
                if (TQ.Rows > 1) ((b0 + b1) + (b2 + b3)).Store(eighths + 128 + 16 * i);
                if (TQ.Rows > 2) ((c0 + c1) + (c2 + c3)).Store(eighths + 256 + 16 * i);
                if (TQ.Rows > 3) ((d0 + d1) + (d2 + d3)).Store(eighths + 384 + 16 * i);
            }
        }

        /// <summary>Dot's lanes i and i + 32 added, for up to four queries: each lane the product of dimension i,
        /// then the dimensions 64 apart chained.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Pair<TQ>(byte* kp, long at, int bs, int keys, bool f16, Queries q, int hd, int i, int full,
            out Vector512<float> a, out Vector512<float> b, out Vector512<float> c, out Vector512<float> d)
            where TQ : struct, ITile
        {
            Lane<TQ>(kp, at, bs, keys, f16, q, hd, i, full, out a, out b, out c, out d);
            Lane<TQ>(kp, at, bs, keys, f16, q, hd, i + 32, full, out var a1, out var b1, out var c1, out var d1);
            a += a1;
            b += b1;
            c += c1;
            d += d1;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Lane<TQ>(byte* kp, long at, int bs, int keys, bool f16, Queries q, int hd, int i, int full,
            out Vector512<float> a, out Vector512<float> b, out Vector512<float> c, out Vector512<float> d)
            where TQ : struct, ITile
        {
            var k = Key16(kp, at, i, bs, keys, f16);
            a = Vector512.Create(q.A[i]) * k;
            b = TQ.Rows > 1 ? Vector512.Create(q.B[i]) * k : default;
            c = TQ.Rows > 2 ? Vector512.Create(q.C[i]) * k : default;
            d = TQ.Rows > 3 ? Vector512.Create(q.D[i]) * k : default;
            for (int x = i + 64; x < full; x += 64)
            {
                k = Key16(kp, at, x, bs, keys, f16);
                a = Vector512.FusedMultiplyAdd(Vector512.Create(q.A[x]), k, a);
                if (TQ.Rows > 1) b = Vector512.FusedMultiplyAdd(Vector512.Create(q.B[x]), k, b);
                if (TQ.Rows > 2) c = Vector512.FusedMultiplyAdd(Vector512.Create(q.C[x]), k, c);
                if (TQ.Rows > 3) d = Vector512.FusedMultiplyAdd(Vector512.Create(q.D[x]), k, d);
            }
        }

        /// <summary>Dimension <paramref name="dim"/> of 16 keys from element <paramref name="at"/> (dimension 0 of
        /// the first), the lanes past <paramref name="keys"/> zero as the tile's were.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<float> Key16(byte* pool, long at, int dim, int bs, int keys, bool f16)
        {
            long e = at + (long)dim * bs;
            var v = f16 ? Simd<Vector512<float>>.LoadCachedHalf((ushort*)pool + e) : Vector512.Load((float*)pool + e);
            return keys >= 16 ? v : Simd<Vector512<float>>.FirstLanes(v, keys);
        }

        /// <summary>
        /// q · k for <see cref="Simd{TVec}.Count"/> keys (lanes; dimension d of them at kt + d · tile), in the order
        /// of ggml's vec_dot_f32, which llama.cpp's CPU backend runs for the scores (q is not contiguous, so no
        /// tinyBLAS): dimension d in accumulator lane d % 64 (four vectors of 16 lanes), one chain of multiply-adds
        /// per lane over d's 64 apart, the 64 lanes halved pairwise (i with i + 32, then + 16, ... + 1), the dimensions
        /// past the last 64 then one chain. One chain over all dimensions parted from llama.cpp in the last bit of a
        /// score, which the q8_0 rounding of gemma's attention output turned into another token. With a head of 64
        /// the products round alone and only adds follow, so the bits are the same at every width, fused or not.
        /// </summary>
        /// <remarks>The eight lanes left after three halvings pass through <paramref name="eighths"/> (8 × 16 floats):
        /// written as eight calls of <see cref="Eighth{TVec}"/>, the JIT stopped inlining them into
        /// <see cref="Scores{TVec}"/> (over its budget) and attention after a 4096-token prompt took twice main's
        /// time; in a loop the body is inlined once.</remarks>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static TVec Dot<TVec>(float* q, float* kt, int hd, int tile, float* eighths) where TVec : struct
        {
            int full = hd & ~63;
            TVec r = default;
            if (full > 0)
            {
                for (int i = 0; i < 8; i++) Simd<TVec>.Store(Eighth<TVec>(q, kt, i, full, tile), eighths + 16 * i);
                float* e = eighths;
                r = Simd<TVec>.Add(
                    Simd<TVec>.Add(Simd<TVec>.Add(Simd<TVec>.Load(e), Simd<TVec>.Load(e + 64)),
                        Simd<TVec>.Add(Simd<TVec>.Load(e + 32), Simd<TVec>.Load(e + 96))),
                    Simd<TVec>.Add(Simd<TVec>.Add(Simd<TVec>.Load(e + 16), Simd<TVec>.Load(e + 80)),
                        Simd<TVec>.Add(Simd<TVec>.Load(e + 48), Simd<TVec>.Load(e + 112))));
            }
            for (int d = full; d < hd; d++)
                r = Simd<TVec>.MultiplyAdd(Simd<TVec>.Broadcast(q[d]), Simd<TVec>.Load(kt + d * tile), r);
            return r;
        }

        /// <summary>Lane i (&lt; 8) of the 64 after three halvings: the eight lanes i + 8m, paired as the halving
        /// pairs them.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static TVec Eighth<TVec>(float* q, float* kt, int i, int full, int tile) where TVec : struct
        {
            TVec l0 = Lane<TVec>(q, kt, i, full, tile), l8 = Lane<TVec>(q, kt, i + 8, full, tile),
                l16 = Lane<TVec>(q, kt, i + 16, full, tile), l24 = Lane<TVec>(q, kt, i + 24, full, tile),
                l32 = Lane<TVec>(q, kt, i + 32, full, tile), l40 = Lane<TVec>(q, kt, i + 40, full, tile),
                l48 = Lane<TVec>(q, kt, i + 48, full, tile), l56 = Lane<TVec>(q, kt, i + 56, full, tile);
            return Simd<TVec>.Add(Simd<TVec>.Add(Simd<TVec>.Add(l0, l32), Simd<TVec>.Add(l16, l48)),
                Simd<TVec>.Add(Simd<TVec>.Add(l8, l40), Simd<TVec>.Add(l24, l56)));
        }

        /// <summary>Accumulator lane i: the products of dimensions i, i + 64, ... below full, chained.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static TVec Lane<TVec>(float* q, float* kt, int i, int full, int tile) where TVec : struct
        {
            var r = Simd<TVec>.Multiply(Simd<TVec>.Broadcast(q[i]), Simd<TVec>.Load(kt + i * tile));
            for (int d = i + 64; d < full; d += 64)
                r = Simd<TVec>.MultiplyAdd(Simd<TVec>.Broadcast(q[d]), Simd<TVec>.Load(kt + d * tile), r);
            return r;
        }

        /// <summary>Softmax over query qi's own causal prefix (its window of it on a sliding-window layer), in
        /// place: the probabilities. Soft-capping, where the model has it, comes first, as in ggml's graph.</summary>
        void Softmax(in Item it, int qi, float* scores)
        {
            var c = b._config;
            int group = b._heads / b._kvHeads, window = c.Window(_layer);
            int seen = b._step.Positions[it.Row0 + qi / group] + 1, first = window > 0 ? Math.Max(0, seen - window) : 0;
            float* row = scores + (long)qi * it.Padded;
            var sr = new Span<float>(row + first, seen - first);
            if (c.AttentionSoftCap > 0)
            {
                float cap = c.AttentionSoftCap, inverse = 1f / cap;
                foreach (ref float x in sr) x = LlamaMath.SoftCap(x, inverse, cap);
            }
            float max = TensorPrimitives.Max(sr);
            TensorPrimitives.Subtract(sr, max, sr);
            TensorPrimitives.Exp(sr, sr);
            // the keys before the window weigh exactly 0, as under ggml's mask; summed over the whole prefix so each
            // key keeps its lane of the sum
            new Span<float>(row, first).Clear();
            sr = new Span<float>(row, seen);
            double sum = SumInDouble(sr); // ggml sums in double
            TensorPrimitives.Multiply(sr, (float)(1.0 / sum), sr);
            // ggml rounds p for an f16 cache
            if (b._kvType == KvCacheType.F16) HalfMath.RoundToHalf(row, row, seen);
            // the keys it does not see weigh exactly 0 in the sums of Values, as under ggml's mask
            new Span<float>(row + seen, it.Padded - seen).Clear();
        }

        /// <summary>Output dimensions [d0, d0 + <see cref="_dimsPerTask"/>) of every query of the item: the values
        /// of those dimensions gathered key-minor over the whole context, then one chain over the keys each.</summary>
        void Values<TVec>(in Item it, int d0, float* scores, int worker) where TVec : struct
        {
            var s = b._step;
            int hd = b._headDim, group = b._heads / b._kvHeads, bs = b._blockSize;
            int dims = Math.Min(_dimsPerTask, hd - d0);
            if (it.Single && bs % 16 == 0)
            {
                SingleValues(in it, d0, dims, scores, worker);
                return;
            }
            int stride = (it.Ctx + 63) & ~63; // the sums read whole groups of 16 keys, a decode's of 64
            bool f16 = b._kvType == KvCacheType.F16;
            float* vt = Grow(_scratch, _scratchFloats, worker, (long)dims * stride);
            var table = Table(in it);
            byte* vp = b.KvBase(_layer, true);
            int elem = f16 ? 2 : 4;
            for (int j = 0; j < it.Ctx; j += bs)
            {
                int n = Math.Min(bs, it.Ctx - j);
                long at = b.KvIndex(table[j / bs], it.Head) + (long)d0 * bs;
                // this task's dimensions of the block ValuesAhead on (see Scores)
                if (j + ValuesAhead * bs < it.Ctx)
                    Prefetch(vp + (b.KvIndex(table[j / bs + ValuesAhead], it.Head) + (long)d0 * bs) * elem,
                        dims * bs * elem);
                int width = Math.Min(bs, stride - j); // the block's rest that the row of vt has room for
                for (int d = 0; d < dims; d++) Widen<TVec>(vp, at + (long)d * bs, vt + d * stride + j, n, width, f16);
            }
            // keys past the context weigh 0 and must hold 0, not stale values (0 · inf would be NaN)
            for (int d = 0; d < dims; d++) new Span<float>(vt + d * stride + it.Ctx, stride - it.Ctx).Clear();
            for (int qi = 0; qi < it.Rows * group; qi++)
            {
                int r = qi / group, h = qi % group;
                int seen = s.Positions[it.Row0 + r] + 1;
                float* o = _out + ((long)(it.Row0 + r) * b._heads + it.Head * group + h) * hd + d0;
                float* p = scores + (long)qi * it.Padded;
                if (it.Single) WeightedValues64(p, vt, stride, seen, o, dims);
                else if (Vector512.IsHardwareAccelerated) WeightedValues16(p, vt, stride, seen, o, dims);
                else WeightedValues8(p, vt, stride, seen, o, dims);
            }
        }

        /// <summary>
        /// <see cref="WeightedValues64"/>'s sums for a decode row, read straight from the cache: a block's run of 16
        /// keys of a dimension is one vector of one chain, so the values need no gathering (gathered key-minor over
        /// the whole context first, the 4096-token step wrote and read back 64 MB of f32 on the 300m model). The keys
        /// go in chunks small enough to stay in L1 while every dimension of the task passes over them, the chains
        /// parked in <c>acc</c> between chunks, and the next chunk is fetched a few lines per pass: walking all the
        /// keys once per dimension, the first pass waited on memory (the values took 4.9 of 11.6 ms of attention).
        /// Up to four queries of the GQA group at a time (<see cref="ITile"/>) share each converted vector.
        /// </summary>
        void SingleValues(in Item it, int d0, int dims, float* scores, int worker)
        {
            const int ChunkKeys = 512;
            int hd = b._headDim, group = b._heads / b._kvHeads, bs = b._blockSize, ctx = it.Ctx;
            int keys = it.Padded; // whole groups of 64 keys, as WeightedValues64 sums them
            bool f16 = b._kvType == KvCacheType.F16;
            var table = Table(in it);
            byte* vp = b.KvBase(_layer, true);
            int elem = f16 ? 2 : 4, blocks = (ctx + bs - 1) / bs, fours = (group + 3) / 4, runs = bs / 16;
            // per run of 16 keys, its first element of this task's dimensions (found by a shift: a division by the
            // block size per run and dimension made attention after 1536 tokens on the 300m f16 shape 3.86 ms a
            // step against 3.44, medians of four alternations); then, per dimension and per four queries of the
            // group, four chains a query
            long* at = (long*)Grow(_scratch, _scratchFloats, worker, 2L * blocks * runs + 16 + 256L * dims * fours);
            var acc = (Vector512<float>*)(((nint)(at + blocks * runs) + 63) & ~63);
            for (int r = 0; r < blocks * runs; r++)
                at[r] = b.KvIndex(table[r / runs], it.Head) + 16 * (r % runs) + (long)d0 * bs;
            int lines = dims * bs * elem / 64; // of a block's share (a multiple of 64 bytes: bs is)
            float* o = _out + ((long)it.Row0 * b._heads + it.Head * group) * hd + d0;
            for (int c0 = 0; c0 < keys; c0 += ChunkKeys)
            {
                int c1 = Math.Min(keys, c0 + ChunkKeys);
                // the next chunk's lines, a share with each dimension's pass over this one
                int next0 = c1 / bs, next1 = Math.Min(blocks, (c1 + ChunkKeys + bs - 1) / bs);
                int ahead = (next1 - next0) * lines, perPass = (ahead + dims - 1) / dims;
                int fetchBlock = next0, fetchLine = 0;
                for (int d = 0; d < dims; d++)
                {
                    for (int f = 0; f < perPass && fetchBlock < next1; f++)
                    {
                        Simd.Prefetch(vp + at[fetchBlock * runs] * elem + 64 * fetchLine);
                        if (++fetchLine == lines) (fetchBlock, fetchLine) = (fetchBlock + 1, 0);
                    }
                    // every four queries of the group over the chunk while its values are in L1 (a group of eight
                    // walked the whole context twice)
                    for (int q0 = 0; q0 < group; q0 += 4)
                    {
                        int n = Math.Min(4, group - q0);
                        float* p = scores + (long)q0 * keys;
                        var a = acc + 16 * (d * fours + q0 / 4);
                        if (n == 4) ValuePass<FourRows>(vp, at, d, bs, ctx, f16, p, keys, c0, c1, a);
                        else if (n == 3) ValuePass<ThreeRows>(vp, at, d, bs, ctx, f16, p, keys, c0, c1, a);
                        else if (n == 2) ValuePass<TwoRows>(vp, at, d, bs, ctx, f16, p, keys, c0, c1, a);
                        else ValuePass<OneRow>(vp, at, d, bs, ctx, f16, p, keys, c0, c1, a);
                    }
                }
            }
            for (int d = 0; d < dims; d++)
                for (int q = 0; q < group; q++)
                {
                    var a = acc + 16 * (d * fours + q / 4) + 4 * (q % 4);
                    o[(long)q * hd + d] = Sum16((a[0] + a[2]) + (a[1] + a[3]));
                }
        }

        /// <summary>Keys [c0, c1) of dimension d into the four chains of each of <typeparamref name="TQ"/> queries
        /// (probabilities p, a row of <paramref name="keys"/> apart; chains at a, four a query).</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        static void ValuePass<TQ>(byte* vp, long* at, int d, int bs, int ctx, bool f16, float* p, int keys, int c0,
            int c1, Vector512<float>* a) where TQ : struct, ITile
        {
            float* p1 = p + keys, p2 = p + 2 * keys, p3 = p + 3 * keys;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default,
                b2 = default, b3 = default, e0 = default, e1 = default, e2 = default, e3 = default, f0 = default,
                f1 = default, f2 = default, f3 = default;
            // the first chunk starts the chains at zero: clearing them in memory first cost a batch of short contexts
            // more than their sums
            if (c0 > 0)
            {
                (a0, a1, a2, a3) = (a[0], a[1], a[2], a[3]);
                if (TQ.Rows > 1) (b0, b1, b2, b3) = (a[4], a[5], a[6], a[7]);
                if (TQ.Rows > 2) (e0, e1, e2, e3) = (a[8], a[9], a[10], a[11]);
                if (TQ.Rows > 3) (f0, f1, f2, f3) = (a[12], a[13], a[14], a[15]);
            }
            for (int j = c0; j < c1; j += 64)
            {
                var v0 = Keys16(vp, at, j, d, bs, ctx, f16);
                var v1 = Keys16(vp, at, j + 16, d, bs, ctx, f16);
                var v2 = Keys16(vp, at, j + 32, d, bs, ctx, f16);
                var v3 = Keys16(vp, at, j + 48, d, bs, ctx, f16);
                Chains(ref a0, ref a1, ref a2, ref a3, v0, v1, v2, v3, p + j);
                if (TQ.Rows > 1) Chains(ref b0, ref b1, ref b2, ref b3, v0, v1, v2, v3, p1 + j);
                if (TQ.Rows > 2) Chains(ref e0, ref e1, ref e2, ref e3, v0, v1, v2, v3, p2 + j);
                if (TQ.Rows > 3) Chains(ref f0, ref f1, ref f2, ref f3, v0, v1, v2, v3, p3 + j);
            }
            (a[0], a[1], a[2], a[3]) = (a0, a1, a2, a3);
            if (TQ.Rows > 1) (a[4], a[5], a[6], a[7]) = (b0, b1, b2, b3);
            if (TQ.Rows > 2) (a[8], a[9], a[10], a[11]) = (e0, e1, e2, e3);
            if (TQ.Rows > 3) (a[12], a[13], a[14], a[15]) = (f0, f1, f2, f3);
        }

        /// <summary>One query's four chains over 64 keys: key j in chain (j / 16) % 4, lane j % 16.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Chains(ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2,
            ref Vector512<float> a3, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2,
            Vector512<float> v3, float* p)
        {
            a0 = Vector512.FusedMultiplyAdd(v0, Vector512.Load(p), a0);
            a1 = Vector512.FusedMultiplyAdd(v1, Vector512.Load(p + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(v2, Vector512.Load(p + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(v3, Vector512.Load(p + 48), a3);
        }

        /// <summary>Dimension d of keys j..j+15 (one block's run; <paramref name="at"/> per run), zero past the
        /// context: the keys up to the next 64 weigh 0, and stale values there could be inf.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector512<float> Keys16(byte* pool, long* at, int j, int d, int bs, int ctx, bool f16) =>
            j >= ctx ? default : Key16(pool, at[j >> 4], d, bs, ctx - j, f16);

        /// <summary>n elements of a K or V pool from element <paramref name="at"/> as f32 into dst, then zeros up to
        /// <paramref name="width"/>, exactly (<see cref="Simd{TVec}.LoadCachedHalf"/>).
        /// The pool holds <paramref name="width"/> elements from <paramref name="at"/> (the rest of a block), so a
        /// partial last vector converts whole with its unused lanes zeroed: a decode step's last block is partial in
        /// every dimension of every item, and converting those tails one element at a time made attention cost about
        /// the same at a context of 8 as of 128 (batch 16 on the 300m Q4_K_M file).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Widen<TVec>(byte* pool, long at, float* dst, int n, int width, bool f16) where TVec : struct
        {
            int i = 0, c = Simd<TVec>.Count;
            if (f16)
            {
                ushort* src = (ushort*)pool + at;
                for (; i + c <= n; i += c) Simd<TVec>.Store(Simd<TVec>.LoadCachedHalf(src + i), dst + i);
                if (i < n && i + c <= width)
                {
                    Simd<TVec>.Store(Simd<TVec>.FirstLanes(Simd<TVec>.LoadCachedHalf(src + i), n - i), dst + i);
                    i += c;
                }
                for (; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(src[i]);
            }
            else
            {
                float* src = (float*)pool + at;
                for (; i + c <= n; i += c) Simd<TVec>.Store(Simd<TVec>.Load(src + i), dst + i);
                if (i < n && i + c <= width)
                {
                    Simd<TVec>.Store(Simd<TVec>.FirstLanes(Simd<TVec>.Load(src + i), n - i), dst + i);
                    i += c;
                }
                for (; i < n; i++) dst[i] = src[i];
            }
            for (; i + c <= width; i += c) Simd<TVec>.Store(default, dst + i);
            for (; i < width; i++) dst[i] = 0;
        }

        /// <summary>Blocks ahead whose values are requested while one is gathered.</summary>
        const int ValuesAhead = 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Prefetch(byte* p, int bytes)
        {
            for (int l = 0; l < bytes; l += 64) Simd.Prefetch(p + l);
        }

        /// <summary>A worker's buffer of at least <paramref name="floats"/>. It grows (doubling) with the longest
        /// context seen rather than being sized for the longest possible one, which for a 128k-context model would be
        /// tens of MB per worker mostly unused.</summary>
        static float* Grow(float*[] buffers, long[] sizes, int worker, long floats)
        {
            if (sizes[worker] < floats)
            {
                NativeMemory.AlignedFree(buffers[worker]);
                sizes[worker] = Math.Max(floats, 2 * sizes[worker]);
                buffers[worker] = (float*)NativeMemory.AlignedAlloc((nuint)(sizes[worker] * sizeof(float)), 64);
            }
            return buffers[worker];
        }

        /// <summary>
        /// out[d] = Σ_j p_j · v_j[d] as ggml's f32 matmul (llamafile's tinyBLAS) forms it for the probabilities times
        /// the transposed value cache: sixteen lane chains of FMAs, key j in lane j % 16, then its AVX-512 horizontal
        /// sum (halves, quarters, pairs). One sequential chain instead differs by ~5e-7, enough that the q8_0 rounding
        /// of the attention output for a quantized Wo sometimes flips a quant and greedy output leaves llama.cpp's.
        /// Four dimensions run at once: four independent chains instead of one waiting on each FMA's latency.
        /// </summary>
        static void WeightedValues16(float* p, float* vt, int stride, int seen, float* o, int dims)
        {
            int d = 0;
            for (; d + 4 <= dims; d += 4)
            {
                float* v = vt + d * stride;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int j0 = 0; j0 < seen; j0 += 16)
                {
                    var pj = Vector512.Load(p + j0);
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(v + j0), pj, a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + stride + j0), pj, a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 2 * stride + j0), pj, a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + 3 * stride + j0), pj, a3);
                }
                o[d] = Sum16(a0);
                o[d + 1] = Sum16(a1);
                o[d + 2] = Sum16(a2);
                o[d + 3] = Sum16(a3);
            }
            for (; d < dims; d++)
            {
                var acc = Vector512<float>.Zero;
                for (int j0 = 0; j0 < seen; j0 += 16)
                    acc = Vector512.FusedMultiplyAdd(Vector512.Load(vt + d * stride + j0), Vector512.Load(p + j0), acc);
                o[d] = Sum16(acc);
            }
        }

        /// <summary>
        /// out[d] = Σ_j p_j · v_j[d] for a decode row: llama.cpp multiplies a single row without tinyBLAS (it serves
        /// two rows or more), by ggml's vec_dot_f32 (vec_dot_f16 for an f16 cache, the same sums), key j in lane j % 64
        /// of four 16-lane chains, halved as in <see cref="Dot{TVec}"/>. The keys past the row's own weigh 0 up to a
        /// multiple of 64, as llama.cpp's masked padding does.
        /// </summary>
        static void WeightedValues64(float* p, float* vt, int stride, int seen, float* o, int dims)
        {
            int keys = (seen + 63) & ~63;
            for (int d = 0; d < dims; d++)
            {
                float* v = vt + d * stride;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int j = 0; j < keys; j += 64)
                {
                    a0 = Vector512.FusedMultiplyAdd(Vector512.Load(v + j), Vector512.Load(p + j), a0);
                    a1 = Vector512.FusedMultiplyAdd(Vector512.Load(v + j + 16), Vector512.Load(p + j + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(Vector512.Load(v + j + 32), Vector512.Load(p + j + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(Vector512.Load(v + j + 48), Vector512.Load(p + j + 48), a3);
                }
                o[d] = Sum16((a0 + a2) + (a1 + a3));
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static float Sum16(Vector512<float> acc)
        {
            var half = acc.GetLower() + acc.GetUpper();
            var quarter = half.GetLower() + half.GetUpper();
            return (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]);
        }

        /// <summary>The same with eight lanes, as ggml's AVX2 build sums them, held as two 128-bit halves so the
        /// 128-bit path (Arm64) runs it in registers too; two dimensions at once.</summary>
        static void WeightedValues8(float* p, float* vt, int stride, int seen, float* o, int dims)
        {
            int d = 0;
            for (; d + 2 <= dims; d += 2)
            {
                Vector128<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
                float* v0 = vt + d * stride, v1 = v0 + stride;
                for (int j0 = 0; j0 < seen; j0 += 8)
                {
                    Vector128<float> pl = Vector128.Load(p + j0), ph = Vector128.Load(p + j0 + 4);
                    lo0 = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v0 + j0), pl, lo0);
                    hi0 = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v0 + j0 + 4), ph, hi0);
                    lo1 = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v1 + j0), pl, lo1);
                    hi1 = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v1 + j0 + 4), ph, hi1);
                }
                o[d] = Simd.HorizontalSum8(lo0, hi0);
                o[d + 1] = Simd.HorizontalSum8(lo1, hi1);
            }
            for (; d < dims; d++)
            {
                Vector128<float> lo = default, hi = default;
                float* v = vt + d * stride;
                for (int j0 = 0; j0 < seen; j0 += 8)
                {
                    lo = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v + j0), Vector128.Load(p + j0), lo);
                    hi = Simd<Vector128<float>>.MultiplyAdd(Vector128.Load(v + j0 + 4), Vector128.Load(p + j0 + 4), hi);
                }
                o[d] = Simd.HorizontalSum8(lo, hi);
            }
        }

        static double SumInDouble(ReadOnlySpan<float> xs)
        {
            var acc = Vector512<double>.Zero;
            int i = 0;
            for (; i + 16 <= xs.Length; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Create(xs.Slice(i, 16)));
                acc += lo + hi;
            }
            double sum = Vector512.Sum(acc);
            for (; i < xs.Length; i++) sum += xs[i];
            return sum;
        }

        public void Dispose()
        {
            NativeMemory.AlignedFree(_scores);
            _scores = null;
            _scoresFloats = 0;
            for (int w = 0; w < _scratch.Length; w++)
            {
                NativeMemory.AlignedFree(_scratch[w]);
                NativeMemory.AlignedFree(_rows[w]);
                _scratch[w] = _rows[w] = null;
                _scratchFloats[w] = _rowsFloats[w] = 0;
            }
        }
    }
}
