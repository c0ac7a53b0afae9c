namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>A piece of work split across the pool: <see cref="Execute"/> runs once on every worker with its
/// index.</summary>
abstract class ParallelJob
{
    int _next;

    public abstract void Execute(int worker, int workers);

    /// <summary>Makes the chunks of <see cref="Claim"/> available again; call before each run.</summary>
    protected void ResetChunks() => Volatile.Write(ref _next, 0);

    /// <summary>
    /// Takes the next chunk [start, end) of <paramref name="count"/> items, chunks aligned to <paramref name="align"/>;
    /// false when none is left. Chunks go to whichever worker is free, so one that the OS runs late does not hold
    /// back the others.
    /// </summary>
    protected bool Claim(int count, int chunk, out int start, out int end)
    {
        start = Interlocked.Add(ref _next, chunk) - chunk;
        end = Math.Min(count, start + chunk);
        return start < count;
    }

    /// <summary>A chunk size giving each worker several chunks, a multiple of <paramref name="align"/>.</summary>
    protected static int ChunkSize(int count, int workers, int align = 1, int perWorker = 8) =>
        Math.Max(align, (count + workers * perWorker - 1) / (workers * perWorker) + align - 1) / align * align;

    /// <summary>The contiguous share [start, end) of <paramref name="count"/> items of one worker, in multiples of
    /// <paramref name="align"/>.</summary>
    public static (int Start, int End) Share(int count, int worker, int workers, int align = 1)
    {
        int units = (count + align - 1) / align;
        int start = (int)((long)units * worker / workers) * align,
            end = (int)((long)units * (worker + 1) / workers) * align;
        return (Math.Min(start, count), Math.Min(end, count));
    }
}

/// <summary>
/// One persistent thread per core, the calling thread being worker 0. A step makes a hundred or more parallel kernel
/// calls; waking threads (or a Parallel.For) for each costs more than the small ones take, so workers spin briefly
/// between calls and only sleep when the device goes idle. Jobs are objects reused across calls: nothing is allocated.
/// A worker the OS has not run yet (the silo's other threads share the cores) does not hold up a call: once the
/// caller has finished its own part it takes over the part of every worker that has not started.
/// </summary>
sealed class WorkerPool : IDisposable
{
    /// <summary>
    /// How long a worker spins before it sleeps: longer than the gaps between the kernels of a step (a sleeping
    /// worker takes tens of microseconds to wake), short enough not to burn a core once the device is idle.
    /// </summary>
    static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 1000;

    readonly Thread[] _threads;
    /// <summary>Per worker: the last generation it started, or that the caller started in its place.</summary>
    readonly int[] _started;
    readonly object _lock = new();
    ParallelJob? _job;
    int _generation;
    int _pending;
    int _sleeping;
    Exception? _failure;
    volatile bool _stop;

    public WorkerPool(int workers)
    {
        Workers = Math.Max(1, workers);
        _threads = new Thread[Workers - 1];
        _started = new int[Workers];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _threads[i] = new Thread(() => Loop(index)) { IsBackground = true, Name = $"weft-cpu-{index}" };
            _threads[i].Start();
        }
    }

    public int Workers { get; }

    const long InlineWork = 1 << 16;

    /// <summary>Runs <paramref name="job"/> on every worker and returns when all are done.</summary>
    /// <param name="work">A rough cost (multiply-adds); below a few microseconds' worth the job runs on the calling
    /// thread alone, as waking the others would cost more.</param>
    public void Run(ParallelJob job, long work = long.MaxValue)
    {
        if (_threads.Length == 0 || work < InlineWork)
        {
            job.Execute(0, 1);
            return;
        }
        _job = job;
        Volatile.Write(ref _pending, _threads.Length);
        int generation = Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleeping) > 0)
            lock (_lock) Monitor.PulseAll(_lock);
        Execute(job, 0);
        for (int i = 1; i < Workers; i++)
            if (Interlocked.CompareExchange(ref _started[i], generation, generation - 1) == generation - 1)
            {
                // worker i has not started: its part runs here (a chunked job finds nothing left)
                Execute(job, i);
                Interlocked.Decrement(ref _pending);
            }
        // the workers that did start finish within microseconds; yield now and then in case one was preempted
        for (int spins = 0; Volatile.Read(ref _pending) > 0; spins++)
            if ((spins & 1023) == 1023) Thread.Yield(); else Thread.SpinWait(1);
        _job = null;
        if (Interlocked.Exchange(ref _failure, null) is { } failure)
            throw new AggregateException("a cpu kernel failed", failure);
    }

    void Loop(int index)
    {
        int seen = 0;
        while (true)
        {
            int generation;
            long idleSince = System.Diagnostics.Stopwatch.GetTimestamp();
            while ((generation = Volatile.Read(ref _generation)) == seen)
            {
                if (_stop) return;
                if (System.Diagnostics.Stopwatch.GetTimestamp() - idleSince < SpinTicks) Thread.SpinWait(1);
                else
                {
                    lock (_lock)
                    {
                        _sleeping++;
                        while (Volatile.Read(ref _generation) == seen && !_stop) Monitor.Wait(_lock);
                        _sleeping--;
                    }
                    idleSince = System.Diagnostics.Stopwatch.GetTimestamp();
                }
            }
            seen = generation;
            // the caller may already have taken this worker's part
            if (Interlocked.CompareExchange(ref _started[index], generation, generation - 1) != generation - 1)
                continue;
            Execute(_job!, index);
            Interlocked.Decrement(ref _pending);
        }
    }

    /// <summary>A failing kernel must not leave the caller waiting forever: the failure is kept and Run rethrows
    /// it.</summary>
    void Execute(ParallelJob job, int worker)
    {
        try { job.Execute(worker, Workers); }
        catch (Exception e) { Interlocked.CompareExchange(ref _failure, e, null); }
    }

    public void Dispose()
    {
        _stop = true;
        lock (_lock) Monitor.PulseAll(_lock);
        foreach (var t in _threads) t.Join();
    }
}
