namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// A tile's height as a type (the batch rows that share a weight row's decoding in the K-quant kernels, the queries of
/// a GQA group that share a converted key or value vector in decode attention), so that the JIT compiles each height
/// without the taller tiles' accumulators: the 128-bit four-row q6_K tile with its rows beyond the first skipped at run
/// time still spilled them, and ran a 2048 × 1024 matrix at batch 1 at 2.4 GMAC/s a thread, against 5.3 for the
/// one-row tile (SSE); decode attention with a branch on the query count took 9.5-10.1 against 8.4-9.1 ms a step
/// after a 4096-token prompt.
/// </summary>
interface ITile
{
    static abstract int Rows { get; }
}

readonly struct OneRow : ITile
{
    public static int Rows => 1;
}

readonly struct TwoRows : ITile
{
    public static int Rows => 2;
}

readonly struct ThreeRows : ITile
{
    public static int Rows => 3;
}

readonly struct FourRows : ITile
{
    public static int Rows => 4;
}

readonly struct EightRows : ITile
{
    public static int Rows => 8;
}
