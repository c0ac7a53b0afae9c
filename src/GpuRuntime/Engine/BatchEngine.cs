using System.Diagnostics;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine;

/// <summary>What one tick did: the sequences that got a token (with it and, when asked, its log-probabilities), the
/// ones that finished, and its timing (<see cref="ForwardStarted"/> and <see cref="ForwardEnded"/> are the device
/// thread's <see cref="Stopwatch"/> timestamps, 0 when no forward pass ran, so a loop can tell how long the device
/// waited between two).</summary>
public sealed record TickResult(
    IReadOnlyList<(Sequence Sequence, int Token, TokenLogprobs? Logprobs)> Sampled,
    IReadOnlyList<Sequence> Finished,
    int NumSequences,
    int NumTokens,
    TimeSpan TickTime,
    TimeSpan ForwardTime,
    long ForwardStarted = 0,
    long ForwardEnded = 0);

/// <summary>
/// Continuous batching on one device: each tick the scheduler picks the work, the engine runs one forward pass over
/// all of it on the device thread, and the scheduler takes the sampled tokens. No Orleans types, so the BatchGrain,
/// the CLI and the tests all drive the same loop.
/// </summary>
public sealed class BatchEngine(InferenceEngine engine, Scheduler scheduler)
{
    public InferenceEngine Engine { get; } = engine;
    public Scheduler Scheduler { get; } = scheduler;

    public static BatchEngine Create(InferenceEngine engine, SchedulerOptions options, IReadOnlySet<int> eosTokenIds) =>
        new(engine, new Scheduler(options, new BlockManager(engine.NumKvBlocks, engine.BlockSize), eosTokenIds,
            engine.NumKvWindowBlocks > 0
                ? new WindowBlockManager(engine.NumKvWindowBlocks, engine.BlockSize, engine.Config.SlidingWindow)
                : null));

    /// <summary>Runs one tick. A failing forward pass finishes that batch's sequences with an error; the others are
    /// untouched.</summary>
    public Task<TickResult> TickAsync() => FinishAsync(Start());

    /// <summary>
    /// The first half of a tick: the scheduler picks the work and the forward pass starts on the device thread. What
    /// the caller does until <see cref="FinishAsync"/> (delivering the previous tick's tokens) overlaps the device's
    /// work, as vLLM's asynchronous scheduling does; the scheduler's decisions are the same, as each tick is scheduled
    /// after the previous one's tokens are in. A stop or a cancel flagged meanwhile takes effect a tick later: the
    /// sequence may compute one token more, which no one receives.
    /// </summary>
    public StartedTick Start()
    {
        long started = Stopwatch.GetTimestamp();
        var output = Scheduler.Schedule();
        if (output.IsEmpty) return new StartedTick(output, null, started);
        Engine.Inputs.Fill(output);
        return new StartedTick(output, Engine.StepAsync(), started);
    }

    /// <summary>Waits for the forward pass of <paramref name="tick"/> and passes its tokens to the scheduler.</summary>
    public async Task<TickResult> FinishAsync(StartedTick tick)
    {
        var output = tick.Output;
        if (tick.Step is null)
            return new TickResult([], output.Finished, 0, 0, Stopwatch.GetElapsedTime(tick.Started), TimeSpan.Zero);
        ReadOnlyMemory<int> tokens;
        try
        {
            tokens = await tick.Step;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var failed = Scheduler.Fail(output, $"forward pass failed: {e.Message}");
            return new TickResult([], [.. output.Finished, .. failed], output.Scheduled.Count, output.NumBatchedTokens,
                Stopwatch.GetElapsedTime(tick.Started), ForwardTime, Engine.LastStep.Started, Engine.LastStep.Ended);
        }

        var sampled = new List<(Sequence, int, TokenLogprobs?)>(output.NumTokensToSample);
        int i = 0;
        foreach (var entry in output.Scheduled)
            if (entry.NeedsToken)
            {
                sampled.Add((entry.Sequence, tokens.Span[i], Engine.Logprobs.Take(i, entry.Sequence.Sampling)));
                i++;
            }
        var finished = Scheduler.Update(output, tokens.Span);
        return new TickResult(sampled, [.. output.Finished, .. finished], output.Scheduled.Count,
            output.NumBatchedTokens, Stopwatch.GetElapsedTime(tick.Started), ForwardTime, Engine.LastStep.Started,
            Engine.LastStep.Ended);
    }

    TimeSpan ForwardTime => Stopwatch.GetElapsedTime(Engine.LastStep.Started, Engine.LastStep.Ended);
}

/// <summary>A tick whose forward pass is running (<see cref="Step"/>; null when nothing was scheduled), from
/// <see cref="BatchEngine.Start"/>.</summary>
public readonly record struct StartedTick(ScheduleOutput Output, Task<ReadOnlyMemory<int>>? Step, long Started);
