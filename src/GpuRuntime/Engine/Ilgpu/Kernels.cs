using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>How a matmul's input is rounded before the dot products: ggml's "vec_dot_type" of the weights (Q8 serves
/// q8_1 too: its quants and scale are q8_0's). Q8K stores each 256-block's scale once per 32-block it spans.</summary>
enum InputPrep { None = 0, F16 = 1, Bf16 = 2, Q8 = 3, Q8K = 4 }

/// <summary>
/// RMSNorm of x into y, and/or the rounded copy of y a matmul reads: xq, plus for quantized inputs xs, a pair per 32
/// columns: the block scale (q8_0's, or its q8_K block's) and q8_1's sum s = d·Σq (q8_0 inputs only). With Gather,
/// row r reads x's row rowIndex[r] (the logits rows). With Accumulate (no rounding), the normalised row is added into
/// y rather than stored (gemma's post-norms into the residual).
/// </summary>
struct NormArgs
{
    public int Rows, Dim, Lanes, Normalize, Gather, Accumulate;
    public InputPrep Prep;
    public float Eps;
}

/// <summary>
/// One launch over up to three weights sharing an input (Q/K/V), or gate and up fused with SwiGLU. Segments: output o
/// runs over A's rows, then B's, then C's, each written to its own Y with its bias; Residual also adds the result
/// into Res (the residual stream). GateUp: YA = silu(A·x) * (B·x), or gelu with Gelu, YB = B·x.
/// </summary>
struct MatMulArgs
{
    public const int Segments = 0, GateUp = 1;
    public int Rows, Cols, Lanes, Mode, NA, NB, NC, HasBiasA, HasBiasB, HasBiasC, Residual, Gelu;
    public ArrayView<float> YA, YB, YC, BiasA, BiasB, BiasC, Res;

    public readonly int Outputs => Mode == GateUp ? NA : NA + NB + NC;
}

struct RopeArgs
{
    public int Rows, Heads, KvHeads, HeadDim, Neox, BlockSize;
    /// <summary>Dimensions of a head that rotate, from its start (partial RoPE: fewer than HeadDim).</summary>
    public int RopeDim;
    public long KBase, VBase;
    /// <summary>The factor on q after its rotation (1 for most models).</summary>
    public float QScale;
}

struct AttentionArgs
{
    public int Heads, KvHeads, HeadDim, Lanes, HeadsPerGroup, BlockSize, MaxBlocksPerSeq;
    /// <summary>Keys a query sees, itself included, on a sliding-window layer; 0 for its whole prefix.</summary>
    public int Window;
    public long KBase, VBase;
    /// <summary>The factor on q · k, and the soft-cap of the scaled score (0 for none) with its inverse.</summary>
    public float Scale, SoftCap, InverseSoftCap;
}

/// <summary>Eight batch rows' accumulators of one output: the small-batch matmul keeps them in registers.</summary>
struct Tile8
{
    public float R0, R1, R2, R3, R4, R5, R6, R7;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float At(int i) => i switch
    {
        0 => R0,
        1 => R1,
        2 => R2,
        3 => R3,
        4 => R4,
        5 => R5,
        6 => R6,
        _ => R7,
    };

    /// <summary>Adds w · x[row i, k..k+8) for the first n rows; x is read as float4 pairs starting at i0, one row
    /// every stride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile8 Accumulate(in Float8 w, ArrayView<Float4> x, long i0, long stride, int n)
    {
        var t = this;
        t.R0 += DeviceMath.Dot8(w, x[i0], x[i0 + 1]);
        if (n > 1) t.R1 += DeviceMath.Dot8(w, x[i0 + stride], x[i0 + stride + 1]);
        if (n > 2) t.R2 += DeviceMath.Dot8(w, x[i0 + 2 * stride], x[i0 + 2 * stride + 1]);
        if (n > 3) t.R3 += DeviceMath.Dot8(w, x[i0 + 3 * stride], x[i0 + 3 * stride + 1]);
        if (n > 4) t.R4 += DeviceMath.Dot8(w, x[i0 + 4 * stride], x[i0 + 4 * stride + 1]);
        if (n > 5) t.R5 += DeviceMath.Dot8(w, x[i0 + 5 * stride], x[i0 + 5 * stride + 1]);
        if (n > 6) t.R6 += DeviceMath.Dot8(w, x[i0 + 6 * stride], x[i0 + 6 * stride + 1]);
        if (n > 7) t.R7 += DeviceMath.Dot8(w, x[i0 + 7 * stride], x[i0 + 7 * stride + 1]);
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile8 Add(in Tile8 o) => new()
    {
        R0 = R0 + o.R0, R1 = R1 + o.R1, R2 = R2 + o.R2, R3 = R3 + o.R3,
        R4 = R4 + o.R4, R5 = R5 + o.R5, R6 = R6 + o.R6, R7 = R7 + o.R7,
    };

    /// <summary>q8_0: adds (dw · dx[row]) · part per row, ggml's order of the block product; xs holds one scale per
    /// row every stride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile8 AddScaled(in Tile8 part, float dw, ArrayView<float> xs, long i0, long stride, int n)
    {
        var t = this;
        t.R0 += dw * xs[i0] * part.R0;
        if (n > 1) t.R1 += dw * xs[i0 + stride] * part.R1;
        if (n > 2) t.R2 += dw * xs[i0 + 2 * stride] * part.R2;
        if (n > 3) t.R3 += dw * xs[i0 + 3 * stride] * part.R3;
        if (n > 4) t.R4 += dw * xs[i0 + 4 * stride] * part.R4;
        if (n > 5) t.R5 += dw * xs[i0 + 5 * stride] * part.R5;
        if (n > 6) t.R6 += dw * xs[i0 + 6 * stride] * part.R6;
        if (n > 7) t.R7 += dw * xs[i0 + 7 * stride] * part.R7;
        return t;
    }

    /// <summary>q4_1/q5_1: adds mw · s[row], the weights' block minimum times q8_1's block sum (after each block's
    /// scale at xs[i], its sum at xs[i + 1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile8 AddMin(float mw, ArrayView<float> xs, long i0, long stride, int n)
    {
        var t = this;
        t.R0 += mw * xs[i0 + 1];
        if (n > 1) t.R1 += mw * xs[i0 + stride + 1];
        if (n > 2) t.R2 += mw * xs[i0 + 2 * stride + 1];
        if (n > 3) t.R3 += mw * xs[i0 + 3 * stride + 1];
        if (n > 4) t.R4 += mw * xs[i0 + 4 * stride + 1];
        if (n > 5) t.R5 += mw * xs[i0 + 5 * stride + 1];
        if (n > 6) t.R6 += mw * xs[i0 + 6 * stride + 1];
        if (n > 7) t.R7 += mw * xs[i0 + 7 * stride + 1];
        return t;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile8 LaneSum(int lanes) => new()
    {
        R0 = DeviceMath.LaneSum(R0, lanes), R1 = DeviceMath.LaneSum(R1, lanes),
        R2 = DeviceMath.LaneSum(R2, lanes), R3 = DeviceMath.LaneSum(R3, lanes),
        R4 = DeviceMath.LaneSum(R4, lanes), R5 = DeviceMath.LaneSum(R5, lanes),
        R6 = DeviceMath.LaneSum(R6, lanes), R7 = DeviceMath.LaneSum(R7, lanes),
    };
}

/// <summary>A 4 × 4 register tile of the shared-memory matmul: C[i][j] for 4 batch rows × 4 outputs.</summary>
struct Tile4x4
{
    public Float4 C0, C1, C2, C3;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Float4 Fma(Float4 c, float a, in Float4 b) => new()
    {
        X = c.X + a * b.X,
        Y = c.Y + a * b.Y,
        Z = c.Z + a * b.Z,
        W = c.W + a * b.W,
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile4x4 Fma(in Float4 a, in Float4 b) => new()
    {
        C0 = Fma(C0, a.X, b),
        C1 = Fma(C1, a.Y, b),
        C2 = Fma(C2, a.Z, b),
        C3 = Fma(C3, a.W, b),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Float4 Add(Float4 c, in Float4 p) => new() { X = c.X + p.X, Y = c.Y + p.Y, Z = c.Z + p.Z, W = c.W + p.W };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile4x4 Add(in Tile4x4 p) => new()
    {
        C0 = Add(C0, p.C0),
        C1 = Add(C1, p.C1),
        C2 = Add(C2, p.C2),
        C3 = Add(C3, p.C3),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Float4 AddScaled(Float4 c, in Float4 p, float sx, in Float4 sw) => new()
    {
        X = c.X + sw.X * sx * p.X, Y = c.Y + sw.Y * sx * p.Y, Z = c.Z + sw.Z * sx * p.Z, W = c.W + sw.W * sx * p.W,
    };

    /// <summary>q8_0: C[i][j] += (sw[j] · sx[i]) · P[i][j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile4x4 AddScaled(in Tile4x4 p, in Float4 sx, in Float4 sw) => new()
    {
        C0 = AddScaled(C0, p.C0, sx.X, sw), C1 = AddScaled(C1, p.C1, sx.Y, sw),
        C2 = AddScaled(C2, p.C2, sx.Z, sw), C3 = AddScaled(C3, p.C3, sx.W, sw),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Float4 AddMin(Float4 c, float ss, in Float4 sm) => new()
    {
        X = c.X + sm.X * ss, Y = c.Y + sm.Y * ss, Z = c.Z + sm.Z * ss, W = c.W + sm.W * ss,
    };

    /// <summary>q4_1/q5_1: C[i][j] += mw[j] · s[i], the weights' block minimum times q8_1's block sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Tile4x4 AddMin(in Float4 ss, in Float4 sm) => new()
    {
        C0 = AddMin(C0, ss.X, sm), C1 = AddMin(C1, ss.Y, sm), C2 = AddMin(C2, ss.Z, sm), C3 = AddMin(C3, ss.W, sm),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float At(int i, int j)
    {
        var r = i switch { 0 => C0, 1 => C1, 2 => C2, _ => C3 };
        return j switch { 0 => r.X, 1 => r.Y, 2 => r.Z, _ => r.W };
    }
}

/// <summary>
/// The ILGPU kernels. Launch shapes follow the accelerator: on CUDA a warp (<c>Lanes</c> threads) shares each row or
/// output and reduces with shuffles; ILGPU's CPU accelerator runs every thread of a group as an OS thread synchronised
/// by barriers, so there a group is one thread with one lane, and the same code skips its cross-thread reductions.
/// </summary>
static class Kernels
{
    /// <summary>Tile of the shared-memory matmul: 32 batch rows × 64 outputs × one 32-column block, 128 threads of
    /// 4 × 4.</summary>
    public const int TileRows = 32, TileOutputs = 64, TileThreads = 128;
    public const int MaxHeadDim = 256, MaxHeadsPerGroup = 8, MaxLanes = 32;

    /// <summary>x[t] = table[token t]: one thread per 8 elements.</summary>
    public static void Embed<TW>(TW table, ArrayView<int> tokens, ArrayView<float> x, int rows, int dim)
        where TW : struct, IWeightRows
    {
        int chunks = dim / 8;
        for (long i = Grid.GlobalIndex.X; i < (long)rows * chunks; i += (long)Grid.DimX * Group.DimX)
        {
            int t = (int)(i / chunks), k = (int)(i % chunks) * 8;
            int token = tokens[t];
            var v = table.Load8(token, k);
            float s = table.Scale(token, k);
            long o = (long)t * dim + k;
            if (table.HasMin)
            {
                float m = table.Min(token, k);
                x[o] = s * v.V0 + m; x[o + 1] = s * v.V1 + m; x[o + 2] = s * v.V2 + m; x[o + 3] = s * v.V3 + m;
                x[o + 4] = s * v.V4 + m; x[o + 5] = s * v.V5 + m; x[o + 6] = s * v.V6 + m; x[o + 7] = s * v.V7 + m;
            }
            else if (table.Quantized)
            {
                x[o] = s * v.V0; x[o + 1] = s * v.V1; x[o + 2] = s * v.V2; x[o + 3] = s * v.V3;
                x[o + 4] = s * v.V4; x[o + 5] = s * v.V5; x[o + 6] = s * v.V6; x[o + 7] = s * v.V7;
            }
            else
            {
                x[o] = v.V0; x[o + 1] = v.V1; x[o + 2] = v.V2; x[o + 3] = v.V3;
                x[o + 4] = v.V4; x[o + 5] = v.V5; x[o + 6] = v.V6; x[o + 7] = v.V7;
            }
        }
    }

    /// <summary>RMSNorm and/or input rounding, <c>Lanes</c> threads per row. Sums of squares in double as the CPU
    /// backend.</summary>
    public static void NormPrep(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, ArrayView<float> xq,
        ArrayView<float> xs, ArrayView<int> rowIndex, NormArgs p)
    {
        int lanes = p.Lanes, lane = Group.IdxX % lanes, perGroup = Group.DimX / lanes;
        bool normalize = p.Normalize != 0;
        for (int r = Grid.IdxX * perGroup + Group.IdxX / lanes; r < p.Rows; r += Grid.DimX * perGroup)
        {
            long src = (long)(p.Gather != 0 ? rowIndex[r] : r) * p.Dim, dst = (long)r * p.Dim;
            float scale = 1f;
            if (normalize)
            {
                double sum = 0;
                for (int i = lane; i < p.Dim; i += lanes)
                {
                    float v = x[src + i];
                    sum += v * v;
                }
                scale = LlamaMath.RmsScale(DeviceMath.LaneSum(sum, lanes), p.Dim, p.Eps);
            }
            if (p.Prep == InputPrep.None)
            {
                for (int i = lane; i < p.Dim; i += lanes)
                {
                    float v = x[src + i] * scale * weight[i];
                    y[dst + i] = p.Accumulate != 0 ? v + y[dst + i] : v;
                }
                continue;
            }
            // input rounding works on whole blocks (32 elements, q8_K's 256) so a block's maximum stays within one
            // thread
            int bs = p.Prep == InputPrep.Q8K ? 256 : 32;
            for (int blk = lane; blk < p.Dim / bs; blk += lanes)
            {
                long b0 = (long)blk * bs;
                float amax = 0, max = 0;
                for (long i = b0; i < b0 + bs; i++)
                {
                    float v = normalize ? x[src + i] * scale * weight[i] : x[src + i];
                    if (normalize) y[dst + i] = v;
                    if (MathF.Abs(v) > amax)
                    {
                        amax = MathF.Abs(v);
                        max = v;
                    }
                    if (p.Prep == InputPrep.F16) xq[dst + i] = DeviceMath.RoundToHalf(v);
                    else if (p.Prep == InputPrep.Bf16) xq[dst + i] = DeviceMath.RoundToBf16(v);
                }
                if (p.Prep == InputPrep.Q8K)
                {
                    // ggml's quantize_row_q8_K: the first value of largest magnitude maps to −127, q rounded to
                    // nearest even, the scale the reciprocal of the factor
                    float iscale = amax != 0 ? -127f / max : 0f, dk = amax != 0 ? 1f / iscale : 0f;
                    for (int j = 0; j < 8; j++) xs[2 * ((long)r * (p.Dim / 32) + blk * 8 + j)] = dk;
                    for (long i = b0; i < b0 + bs; i++)
                    {
                        float v = normalize ? y[dst + i] : x[src + i];
                        xq[dst + i] = MathF.Min(127f, DeviceMath.RoundEven(iscale * v));
                    }
                    continue;
                }
                if (p.Prep != InputPrep.Q8) continue;
                // ggml's x86 quantize_row_q8_0/q8_1: d = max|x| / 127 stored as f16, q = x · 127 / max|x| rounded to
                // nearest even; q8_1's s = d·Σq (d before its rounding) as f16
                float d = amax / 127f, id = amax != 0 ? 127f / amax : 0f, sum = 0f;
                for (long i = b0; i < b0 + 32; i++)
                {
                    float q = DeviceMath.RoundEven((normalize ? y[dst + i] : x[src + i]) * id);
                    xq[dst + i] = q;
                    sum += q;
                }
                long at = 2 * ((long)r * (p.Dim / 32) + blk);
                xs[at] = DeviceMath.RoundToHalf(d);
                xs[at + 1] = DeviceMath.RoundToHalf(d * sum);
            }
        }
    }

    /// <summary>
    /// The small-batch matmul: <c>Lanes</c> threads per output row stream that weight row once, each lane whole
    /// 32-column blocks, against up to 8 batch rows held in registers (more rows take further passes over the row,
    /// which then comes from cache).
    /// </summary>
    public static void MatVec<TW>(TW a, TW b, TW c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p)
        where TW : struct, IWeightRows
    {
        int lanes = p.Lanes, lane = Group.IdxX % lanes, perGroup = Group.DimX / lanes;
        int outputs = p.Outputs;
        for (int o = Grid.IdxX * perGroup + Group.IdxX / lanes; o < outputs; o += Grid.DimX * perGroup)
        {
            int seg = p.Mode == MatMulArgs.GateUp || o < p.NA ? 0 : o < p.NA + p.NB ? 1 : 2;
            long row = seg == 0 ? o : seg == 1 ? o - p.NA : o - p.NA - p.NB;
            TW w = seg == 0 ? a : seg == 1 ? b : c;
            for (int r0 = 0; r0 < p.Rows; r0 += 8)
            {
                int n = Math.Min(8, p.Rows - r0);
                var acc = RowTile(w, row, x, xs, p.Cols, r0, n, lane, lanes).LaneSum(lanes);
                if (p.Mode == MatMulArgs.GateUp)
                {
                    var up = RowTile(b, row, x, xs, p.Cols, r0, n, lane, lanes).LaneSum(lanes);
                    if (lane == 0)
                        for (int i = 0; i < n; i++) StoreGateUp(p, row, r0 + i, acc.At(i), up.At(i));
                }
                else if (lane == 0)
                    for (int i = 0; i < n; i++) Store(p, seg, row, r0 + i, acc.At(i));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Tile8 RowTile<TW>(TW w, long row, ArrayView<Float4> x, ArrayView<float> xs, int cols, int r0, int n,
        int lane, int lanes)
        where TW : struct, IWeightRows
    {
        // q4_1/q5_1's minimum terms sum apart and join at the end, as ggml's
        var acc = new Tile8();
        var mins = new Tile8();
        var xv = x.AsAligned(16);
        int blocks = cols / 32;
        long stride = cols / 4;
        for (int blk = lane; blk < blocks; blk += lanes)
        {
            var part = new Tile8();
            for (int s = 0; s < 4; s++)
            {
                int k = blk * 32 + s * 8;
                part = part.Accumulate(w.Load8(row, k), xv, r0 * stride + k / 4, stride, n);
            }
            long at = 2 * ((long)r0 * blocks + blk);
            acc = w.Quantized ? acc.AddScaled(part, w.Scale(row, blk * 32), xs, at, 2 * blocks, n) : acc.Add(part);
            if (w.HasMin) mins = mins.AddMin(w.Min(row, blk * 32), xs, at, 2 * blocks, n);
        }
        return w.HasMin ? acc.Add(mins) : acc;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(in MatMulArgs p, int seg, long row, int r, float acc)
    {
        var y = seg == 0 ? p.YA : seg == 1 ? p.YB : p.YC;
        int width = seg == 0 ? p.NA : seg == 1 ? p.NB : p.NC;
        bool hasBias = (seg == 0 ? p.HasBiasA : seg == 1 ? p.HasBiasB : p.HasBiasC) != 0;
        float v = hasBias ? acc + (seg == 0 ? p.BiasA : seg == 1 ? p.BiasB : p.BiasC)[row] : acc;
        long at = (long)r * width + row;
        y[at] = v;
        if (p.Residual != 0) p.Res[at] += v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreGateUp(in MatMulArgs p, long row, int r, float gate, float up)
    {
        long at = (long)r * p.NA + row;
        p.YA[at] = p.Gelu != 0 ? LlamaMath.GeGlu(gate, up) : LlamaMath.SwiGlu(gate, up);
        p.YB[at] = up;
    }

    /// <summary>
    /// The many-row matmul: each group computes a 32-row × 64-output tile, staging one 32-column block of the input
    /// and of the weights at a time in shared memory (weights converted to f32 once per tile), 4 × 4 results per
    /// thread.
    /// </summary>
    public static void MatMulTiled<TW>(TW a, TW b, TW c, ArrayView<Float4> x, ArrayView<float> xs, MatMulArgs p)
        where TW : struct, IWeightRows
    {
        var xt = SharedMemory.Allocate<float>(32 * TileRows);
        var wt = SharedMemory.Allocate<float>(32 * TileOutputs);
        var sx = SharedMemory.Allocate<float>(TileRows);
        var sw = SharedMemory.Allocate<float>(TileOutputs);
        // q8_1's block sums and the weights' block minimums (q4_1, q5_1)
        var ss = SharedMemory.Allocate<float>(TileRows);
        var sm = SharedMemory.Allocate<float>(TileOutputs);
        var xv = x.AsAligned(16);
        int tid = Group.IdxX, ty = tid / 16, tx = tid % 16;
        int outputs = p.Outputs, blocks = p.Cols / 32;
        int colTiles = (outputs + TileOutputs - 1) / TileOutputs;
        int m0 = Grid.IdxX / colTiles * TileRows, n0 = Grid.IdxX % colTiles * TileOutputs;
        bool quantized = a.Quantized, hasMin = a.HasMin;
        int passes = p.Mode == MatMulArgs.GateUp ? 2 : 1;
        var first = new Tile4x4();
        var acc = new Tile4x4();
        for (int pass = 0; pass < passes; pass++)
        {
            acc = new Tile4x4();
            // q4_1/q5_1's minimum terms sum apart and join at the end, as ggml's
            var mins = new Tile4x4();
            for (int blk = 0; blk < blocks; blk++)
            {
                {
                    // input tile: thread loads 8 columns of one row, stored column-major so a thread reads 4 rows at
                    // once
                    int m = tid / 4, k8 = tid % 4 * 8, r = m0 + m;
                    var lo = new Float4();
                    var hi = new Float4();
                    if (r < p.Rows)
                    {
                        long i = ((long)r * p.Cols + blk * 32 + k8) / 4;
                        lo = xv[i];
                        hi = xv[i + 1];
                    }
                    xt[(k8 + 0) * TileRows + m] = lo.X; xt[(k8 + 1) * TileRows + m] = lo.Y;
                    xt[(k8 + 2) * TileRows + m] = lo.Z; xt[(k8 + 3) * TileRows + m] = lo.W;
                    xt[(k8 + 4) * TileRows + m] = hi.X; xt[(k8 + 5) * TileRows + m] = hi.Y;
                    xt[(k8 + 6) * TileRows + m] = hi.Z; xt[(k8 + 7) * TileRows + m] = hi.W;
                    if (quantized && k8 == 0) sx[m] = r < p.Rows ? xs[2 * ((long)r * blocks + blk)] : 0f;
                    if (hasMin && k8 == 0) ss[m] = r < p.Rows ? xs[2 * ((long)r * blocks + blk) + 1] : 0f;
                }
                {
                    // weight tile: two threads per output row, 16 columns each
                    int nn = tid / 2, k16 = tid % 2 * 16, o = n0 + nn;
                    var w0 = new Float8();
                    var w1 = new Float8();
                    float scale = 0f, min = 0f;
                    if (o < outputs)
                    {
                        int seg = passes == 2 ? pass : o < p.NA ? 0 : o < p.NA + p.NB ? 1 : 2;
                        long row = passes == 2 || seg == 0 ? o : seg == 1 ? o - p.NA : o - p.NA - p.NB;
                        TW w = seg == 0 ? a : seg == 1 ? b : c;
                        w0 = w.Load8(row, blk * 32 + k16);
                        w1 = w.Load8(row, blk * 32 + k16 + 8);
                        scale = w.Scale(row, blk * 32);
                        if (hasMin) min = w.Min(row, blk * 32);
                    }
                    int at = k16 * TileOutputs + nn;
                    wt[at] = w0.V0; wt[at + TileOutputs] = w0.V1;
                    wt[at + 2 * TileOutputs] = w0.V2; wt[at + 3 * TileOutputs] = w0.V3;
                    wt[at + 4 * TileOutputs] = w0.V4; wt[at + 5 * TileOutputs] = w0.V5;
                    wt[at + 6 * TileOutputs] = w0.V6; wt[at + 7 * TileOutputs] = w0.V7;
                    at += 8 * TileOutputs;
                    wt[at] = w1.V0; wt[at + TileOutputs] = w1.V1;
                    wt[at + 2 * TileOutputs] = w1.V2; wt[at + 3 * TileOutputs] = w1.V3;
                    wt[at + 4 * TileOutputs] = w1.V4; wt[at + 5 * TileOutputs] = w1.V5;
                    wt[at + 6 * TileOutputs] = w1.V6; wt[at + 7 * TileOutputs] = w1.V7;
                    if (quantized && k16 == 0) sw[nn] = scale;
                    if (hasMin && k16 == 0) sm[nn] = min;
                }
                Group.Barrier();
                var part = new Tile4x4();
                for (int kk = 0; kk < 32; kk++)
                {
                    int xa = kk * TileRows + ty * 4, wa = kk * TileOutputs + tx;
                    var av = new Float4 { X = xt[xa], Y = xt[xa + 1], Z = xt[xa + 2], W = xt[xa + 3] };
                    var bv = new Float4 { X = wt[wa], Y = wt[wa + 16], Z = wt[wa + 32], W = wt[wa + 48] };
                    part = part.Fma(av, bv);
                }
                if (quantized)
                {
                    var sxv = new Float4 { X = sx[ty * 4], Y = sx[ty * 4 + 1], Z = sx[ty * 4 + 2], W = sx[ty * 4 + 3] };
                    var swv = new Float4 { X = sw[tx], Y = sw[tx + 16], Z = sw[tx + 32], W = sw[tx + 48] };
                    acc = acc.AddScaled(part, sxv, swv);
                    if (hasMin)
                    {
                        var ssv = new Float4
                        {
                            X = ss[ty * 4], Y = ss[ty * 4 + 1], Z = ss[ty * 4 + 2], W = ss[ty * 4 + 3],
                        };
                        var smv = new Float4 { X = sm[tx], Y = sm[tx + 16], Z = sm[tx + 32], W = sm[tx + 48] };
                        mins = mins.AddMin(ssv, smv);
                    }
                }
                else acc = acc.Add(part);
                Group.Barrier();
            }
            if (hasMin) acc = acc.Add(mins);
            if (pass == 0) first = acc;
        }
        for (int i = 0; i < 4; i++)
        {
            int r = m0 + ty * 4 + i;
            if (r >= p.Rows) break;
            for (int j = 0; j < 4; j++)
            {
                int o = n0 + tx + 16 * j;
                if (o >= outputs) continue;
                if (passes == 2) StoreGateUp(p, o, r, first.At(i, j), acc.At(i, j));
                else
                {
                    int seg = o < p.NA ? 0 : o < p.NA + p.NB ? 1 : 2;
                    long row = seg == 0 ? o : seg == 1 ? o - p.NA : o - p.NA - p.NB;
                    Store(p, seg, row, r, acc.At(i, j));
                }
            }
        }
    }

    /// <summary>
    /// RoPE on q and k at each row's position (cos/sin from the table made at load, as the CPU backend computes them),
    /// and K and V written into the paged pool at each row's slot. One thread per pair of a head's dimensions or
    /// stored V element; the pairs past RopeDim / 2 are the adjacent ones RoPE leaves as they are.
    /// </summary>
    public static void RopeStore<TC>(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> table,
        ArrayView<int> positions, ArrayView<int> slots, TC cache, RopeArgs p) where TC : struct, IKvCache
    {
        int hd = p.HeadDim, half = hd / 2;
        int qPairs = p.Heads * half, kPairs = p.KvHeads * half, perRow = qPairs + kPairs + p.KvHeads * hd;
        for (long i = Grid.GlobalIndex.X; i < (long)p.Rows * perRow; i += (long)Grid.DimX * Group.DimX)
        {
            int t = (int)(i / perRow), j = (int)(i % perRow);
            int slot = slots[t];
            long blockBase = (long)(slot / p.BlockSize) * p.KvHeads;
            int offset = slot % p.BlockSize;
            if (j < qPairs + kPairs)
            {
                bool isQ = j < qPairs;
                int pj = isQ ? j : j - qPairs, h = pj / half, pi = pj % half;
                var dst = isQ ? q : k;
                long rowBase = ((long)t * (isQ ? p.Heads : p.KvHeads) + h) * hd;
                int rotated = p.RopeDim / 2;
                bool rotates = pi < rotated;
                int ia = rotates && p.Neox != 0 ? pi : 2 * pi, ib = rotates && p.Neox != 0 ? pi + rotated : 2 * pi + 1;
                float x0 = dst[rowBase + ia], x1 = dst[rowBase + ib];
                float r0 = x0, r1 = x1;
                if (rotates)
                {
                    long cs = ((long)positions[t] * rotated + pi) * 2;
                    float cos = table[cs], sin = table[cs + 1];
                    // fused as the cpu backend's Rotate and GCC's code of ggml's rope
                    r0 = DeviceMath.Fma(x0, cos, -(x1 * sin));
                    r1 = DeviceMath.Fma(x0, sin, x1 * cos);
                }
                dst[rowBase + ia] = isQ ? r0 * p.QScale : r0;
                dst[rowBase + ib] = isQ ? r1 * p.QScale : r1;
                if (!isQ)
                {
                    long at = p.KBase + ((blockBase + h) * p.BlockSize + offset) * hd;
                    cache.Store(at + ia, r0);
                    cache.Store(at + ib, r1);
                }
            }
            else
            {
                int e = j - qPairs - kPairs, h = e / hd;
                cache.Store(p.VBase + ((blockBase + h) * p.BlockSize + offset) * hd + e % hd,
                    v[(long)t * p.KvHeads * hd + e]);
            }
        }
    }

    /// <summary>
    /// Paged attention. A group holds one row's query heads that share a KV head (GQA), one lane group per head; each
    /// lane group reads the K/V blocks itself (the group's heads read the same lines close together in time, so they
    /// mostly come from cache, but nothing stages them in shared memory yet), and a row's whole context is one group's
    /// work (no split over the context for long sequences). Lanes take consecutive positions for the scores, then
    /// consecutive dimensions for the weighted sum of V.
    /// </summary>
    public static void Attention<TC>(ArrayView<float> q, ArrayView<float> output, TC cache, ArrayView<int> positions,
        ArrayView<int> rowSeq, ArrayView<int> blockTables, AttentionArgs p) where TC : struct, IKvCache
    {
        var qShared = SharedMemory.Allocate<float>(MaxHeadsPerGroup * MaxHeadDim);
        var accShared = SharedMemory.Allocate<float>(MaxHeadsPerGroup * MaxHeadDim);
        var pShared = SharedMemory.Allocate<float>(MaxHeadsPerGroup * MaxLanes);
        int lanes = p.Lanes, lane = Group.IdxX % lanes, w = Group.IdxX / lanes, hd = p.HeadDim, bs = p.BlockSize;
        int groupsPerRow = p.Heads / p.HeadsPerGroup;
        int t = Grid.IdxX / groupsPerRow, h = Grid.IdxX % groupsPerRow * p.HeadsPerGroup + w;
        int kvh = h / (p.Heads / p.KvHeads);
        var qs = qShared.SubView(w * hd, hd);
        var acc = accShared.SubView(w * hd, hd);
        var ps = pShared.SubView(w * MaxLanes, MaxLanes);
        long qBase = ((long)t * p.Heads + h) * hd;
        for (int d = lane; d < hd; d += lanes)
        {
            float v = q[qBase + d];
            qs[d] = cache.Half ? DeviceMath.RoundToHalf(v) : v;
            acc[d] = 0f;
        }
        DeviceMath.Sync();
        int ctx = positions[t] + 1, first = p.Window > 0 ? Math.Max(0, ctx - p.Window) : 0;
        long table = (long)rowSeq[t] * p.MaxBlocksPerSeq;
        // An f16 pool follows ggml in rounding each normalised probability to f16 before it weights V, so it needs
        // the final max and sum first: a pass over K for them, then a second for the weights. An f32 pool takes the
        // single online pass, rescaling the partial sums whenever the running max grows.
        bool twoPass = cache.Half;
        float m = float.NegativeInfinity;
        double l = 0;
        if (twoPass)
        {
            for (int j0 = first; j0 < ctx; j0 += lanes)
            {
                float s = Score(cache, qs, blockTables, table, j0 + lane, ctx, kvh, p);
                float mNew = MathF.Max(m, DeviceMath.LaneMax(s, lanes));
                l = l * MathF.Exp(m - mNew)
                    + DeviceMath.LaneSum((double)(j0 + lane < ctx ? MathF.Exp(s - mNew) : 0f), lanes);
                m = mNew;
            }
        }
        float inv = (float)(1.0 / l);
        // from the window's first key: every chunk then holds one key or more, so the running max is finite
        for (int j0 = first; j0 < ctx; j0 += lanes)
        {
            int j = j0 + lane;
            float s = Score(cache, qs, blockTables, table, j, ctx, kvh, p);
            float correction = 1f, pj;
            if (twoPass) pj = j < ctx ? DeviceMath.RoundToHalf(MathF.Exp(s - m) * inv) : 0f;
            else
            {
                float mNew = MathF.Max(m, DeviceMath.LaneMax(s, lanes));
                correction = MathF.Exp(m - mNew);
                pj = j < ctx ? MathF.Exp(s - mNew) : 0f;
                l = l * correction + DeviceMath.LaneSum(pj, lanes);
                m = mNew;
            }
            ps[lane] = pj;
            DeviceMath.Sync();
            int count = Math.Min(lanes, ctx - j0);
            for (int d = lane; d < hd; d += lanes)
            {
                float sum = 0f;
                for (int jj = 0; jj < count; jj++)
                {
                    int pos = j0 + jj;
                    long at = p.VBase + (((long)blockTables[table + pos / bs] * p.KvHeads + kvh) * bs + pos % bs) * hd;
                    sum += ps[jj] * cache.Load(at + d);
                }
                acc[d] = acc[d] * correction + sum;
            }
            DeviceMath.Sync();
        }
        float scale = twoPass ? 1f : (float)(1.0 / l);
        for (int d = lane; d < hd; d += lanes) output[qBase + d] = acc[d] * scale;
    }

    /// <summary>The scaled score of query qs against position j's key, or -∞ past the context.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Score<TC>(TC cache, ArrayView<float> qs, ArrayView<int> blockTables, long table, int j, int ctx,
        int kvh, in AttentionArgs p)
        where TC : struct, IKvCache
    {
        if (j >= ctx) return float.NegativeInfinity;
        int bs = p.BlockSize, hd = p.HeadDim;
        long at = p.KBase + (((long)blockTables[table + j / bs] * p.KvHeads + kvh) * bs + j % bs) * hd;
        // the cpu backend's order (CpuBackend.AttentionJob.Dot, ggml's vec_dot_f32): dimension d in lane d % 64, a
        // chain per lane, the 64 lanes halved pairwise; the rest one chain. An f16 cache rounds each probability to
        // f16, where a score's last bit can move it by an f16 step (a relative 5e-4 in the attention output)
        int full = hd & ~63;
        float dot = 0f;
        if (full > 0)
        {
            float e0 = Eighth(cache, qs, at, 0, full), e1 = Eighth(cache, qs, at, 1, full);
            float e2 = Eighth(cache, qs, at, 2, full), e3 = Eighth(cache, qs, at, 3, full);
            float e4 = Eighth(cache, qs, at, 4, full), e5 = Eighth(cache, qs, at, 5, full);
            float e6 = Eighth(cache, qs, at, 6, full), e7 = Eighth(cache, qs, at, 7, full);
            dot = ((e0 + e4) + (e2 + e6)) + ((e1 + e5) + (e3 + e7));
        }
        for (int d = full; d < hd; d++) dot = DeviceMath.Fma(qs[d], cache.Load(at + d), dot);
        float score = dot * p.Scale;
        return p.SoftCap > 0 ? LlamaMath.SoftCap(score, p.InverseSoftCap, p.SoftCap) : score;
    }

    /// <summary>Lane i (&lt; 8) of a score's 64 after three halvings (see <see cref="Score"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Eighth<TC>(TC cache, ArrayView<float> qs, long at, int i, int full) where TC : struct, IKvCache =>
        ((Lane(cache, qs, at, i, full) + Lane(cache, qs, at, i + 32, full))
            + (Lane(cache, qs, at, i + 16, full) + Lane(cache, qs, at, i + 48, full)))
        + ((Lane(cache, qs, at, i + 8, full) + Lane(cache, qs, at, i + 40, full))
            + (Lane(cache, qs, at, i + 24, full) + Lane(cache, qs, at, i + 56, full)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Lane<TC>(TC cache, ArrayView<float> qs, long at, int i, int full) where TC : struct, IKvCache
    {
        float r = qs[i] * cache.Load(at + i);
        for (int d = i + 64; d < full; d += 64) r = DeviceMath.Fma(qs[d], cache.Load(at + d), r);
        return r;
    }

    /// <summary>gate = silu(gate) * up, for gate and up weights of two formats (which cannot share a launch).</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up) =>
        gate[i] = LlamaMath.SwiGlu(gate[i], up[i]);

    /// <summary>gate = gelu(gate) * up, as <see cref="SwiGlu"/>.</summary>
    public static void GeGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up) =>
        gate[i] = LlamaMath.GeGlu(gate[i], up[i]);

    /// <summary>x *= factor</summary>
    public static void Scale(Index1D i, ArrayView<float> x, float factor) => x[i] *= factor;

    /// <summary>x = cap · tanh(x / cap)</summary>
    public static void SoftCap(Index1D i, ArrayView<float> x, float inverseCap, float cap) =>
        x[i] = LlamaMath.SoftCap(x[i], inverseCap, cap);
}
