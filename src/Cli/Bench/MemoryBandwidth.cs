using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Weft.Cli.Bench;

/// <summary>Measures the machine's read bandwidth the way a decode step uses it: every core streaming a buffer far
/// larger than the caches.</summary>
static unsafe class MemoryBandwidth
{
    public static double MeasureBytesPerSecond(int threads, long bytes = 1L << 30, int repeats = 5)
    {
        long floats = bytes / sizeof(float);
        var data = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            new Span<byte>(data, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
            for (long i = int.MaxValue; i < bytes; i++) ((byte*)data)[i] = 1;
            double best = 0;
            for (int r = 0; r < repeats; r++)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                long per = floats / threads;
                var sums = new float[threads];
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    float s = 0;
                    long start = t * per, end = t == threads - 1 ? floats : start + per;
                    for (long i = start; i < end; i += 1 << 20)
                        s += TensorPrimitives.Sum(new ReadOnlySpan<float>(data + i, (int)Math.Min(1 << 20, end - i)));
                    sums[t] = s;
                });
                best = Math.Max(best, bytes / sw.Elapsed.TotalSeconds);
                GC.KeepAlive(sums);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }
}
