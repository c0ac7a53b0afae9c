using System.Collections.Concurrent;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// The one thread that owns a device. Accelerators are not thread-safe, and a forward pass must never run on an
/// Orleans scheduler thread, so every backend call is posted here and awaited.
/// </summary>
public sealed class DeviceThread : IDisposable
{
    readonly BlockingCollection<Action> _work = new();
    readonly Thread _thread;

    public DeviceThread(string name)
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    void Loop()
    {
        foreach (var work in _work.GetConsumingEnumerable()) work();
    }

    public bool IsCurrent => Thread.CurrentThread == _thread;

    public Task<T> RunAsync<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task;
    }

    public Task RunAsync(Action work) => RunAsync(() => { work(); return true; });

    /// <summary>Runs <paramref name="work"/> on the device thread and waits (for start-up, tests and the
    /// CLI).</summary>
    public T Invoke<T>(Func<T> work) => IsCurrent ? work() : RunAsync(work).GetAwaiter().GetResult();

    public void Invoke(Action work) => Invoke(() => { work(); return true; });

    public void Dispose()
    {
        _work.CompleteAdding();
        if (!IsCurrent) _thread.Join();
        _work.Dispose();
    }
}
