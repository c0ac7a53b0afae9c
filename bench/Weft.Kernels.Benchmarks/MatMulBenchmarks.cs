using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Weft.GpuRuntime.Engine.Cpu;

namespace Weft.Kernels.Benchmarks;

/// <summary>
/// One thread, one matmul y[M × N] = x[M × K] · W[N × K]ᵀ, over weights that fit in cache (compute rate) or that
/// are streamed from memory (a decode step's regime). Reports are per call; divide the weight bytes by the time for
/// GB/s.
/// </summary>
[MemoryDiagnoser]
public unsafe class MatMulBenchmarks
{
    const int K = 1024, N = 4096;
    // enough distinct weight matrices (768 MB of f16) that streaming them cannot stay in any cache, a 260 MB L3
    // included
    const int Streamed = 96;

    [Params(1, 4, 16, 32)]
    public int M;

    [Params(false, true)]
    public bool FromMemory;

    ushort* _w16;
    byte* _wq;
    int* _xc;
    float* _wd, _x, _y, _xd, _scratch;
    sbyte* _xq;
    int _next;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        _w16 = (ushort*)NativeMemory.AlignedAlloc((nuint)((long)Streamed * N * K * 2), 64);
        _wq = (byte*)NativeMemory.AlignedAlloc((nuint)((long)Streamed * N * K), 64);
        _wd = (float*)NativeMemory.AlignedAlloc((nuint)((long)Streamed * N * K / 32 * 4), 64);
        for (long i = 0; i < (long)Streamed * N * K; i++)
        {
            _w16[i] = BitConverter.HalfToUInt16Bits((Half)(rng.NextSingle() - 0.5f));
            _wq[i] = (byte)rng.Next(1, 256);
        }
        for (long i = 0; i < (long)Streamed * N * K / 32; i++) _wd[i] = rng.NextSingle() * 0.01f;
        _x = (float*)NativeMemory.AlignedAlloc(32 * K * 4, 64);
        _xq = (sbyte*)NativeMemory.AlignedAlloc(32 * K, 64);
        _xd = (float*)NativeMemory.AlignedAlloc(32 * K / 32 * 4, 64);
        _xc = (int*)NativeMemory.AlignedAlloc(32 * K / 4 * 4, 64);
        _y = (float*)NativeMemory.AlignedAlloc(32 * N * 4, 64);
        _scratch = (float*)NativeMemory.AlignedAlloc(4 * K * 4, 64);
        for (int i = 0; i < 32 * K; i++) _x[i] = rng.NextSingle() - 0.5f;
        for (int r = 0; r < 32; r++) Quantize.RowQ8(_x + r * K, _xq + r * K, _xc + r * K / 4, _xd + r * K / 32, K);
    }

    long NextMatrix() => FromMemory ? (long)(_next++ % Streamed) * N * K : 0;

    [Benchmark]
    public void F16()
    {
        long at = NextMatrix();
        MatMulKernels.Float(new HalfRows<F16Format>(_w16 + at, K), _x, _y, null, M, K, N, 0, N, _scratch);
    }

    [Benchmark]
    public void Q8_0()
    {
        long at = NextMatrix();
        MatMulKernels.Q8(_wq + at, _wd + at / 32, _xq, _xc, _xd, _y, null, M, K, N, 0, N);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var p in new nint[] { (nint)_w16, (nint)_wq, (nint)_wd, (nint)_x, (nint)_xq, (nint)_xc, (nint)_xd,
            (nint)_y, (nint)_scratch })
            NativeMemory.AlignedFree((void*)p);
    }
}

public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
