using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Weft.Abstractions;
using Weft.GpuRuntime.Engine;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.Grains;

/// <summary>
/// The continuous-batching loop of one device: a thin shell around <see cref="BatchEngine"/>. Requests join the
/// scheduler's queue and stream their deltas from a channel; a loop runs ticks while there is work, starting each
/// tick's forward pass (on the device thread) before delivering the previous tick's tokens, and stops when there is
/// none.
/// </summary>
[Reentrant, DevicePlacement]
public sealed partial class BatchGrain(ModelHost host, LocalReplies replies, ILogger<BatchGrain> logger,
    ILoggerFactory loggers) : Grain, IBatchGrain
{
    sealed record Request(Sequence Sequence, string Id, string Tenant, string Conversation, TagList Tags,
        ReplyDecoder Decoder, Channel<GenerationDelta> Output, ChoiceGroup Group, int Choice)
    {
        public bool Done { get; set; }
        public long Admitted { get; } = Stopwatch.GetTimestamp();
        public long LastToken { get; set; }
        /// <summary>When the forward pass of the prompt's first chunk started: the end of the queue time and the
        /// start of the prefill, as vLLM measures them.</summary>
        public long FirstScheduled { get; set; }
        public TimeSpan Queue { get; set; }
        public TimeSpan Ttft { get; set; }
    }

    /// <summary>
    /// The choices of one request (OpenAI's n): they share its output channel, which completes when the last is done.
    /// Choices after the first are admitted when the first samples its first token, as forks of it
    /// (<see cref="Scheduler.AddFork"/>): they share its prompt's full blocks, each gets a copy of the partial one, and
    /// each computes only the prompt's last token, for logits of its own to sample with its own seed.
    /// </summary>
    sealed class ChoiceGroup(GenerationRequest request, Channel<GenerationDelta> output)
    {
        readonly List<Request> _members = [];
        // set from a cancellation callback's thread while the grain's thread adds members: both under the lock
        bool _cancelled;

        public GenerationRequest Request { get; } = request;
        public Channel<GenerationDelta> Output { get; } = output;
        public bool SiblingsAdmitted { get; set; }
        public bool AllDone
        {
            get
            {
                lock (_members) return (SiblingsAdmitted || Request.Choices == 1) && _members.TrueForAll(m => m.Done);
            }
        }

        /// <summary>Adds a choice; false (not added) when the request was cancelled meanwhile.</summary>
        public bool Add(Request r)
        {
            lock (_members)
            {
                if (_cancelled) return false;
                _members.Add(r);
                return true;
            }
        }

        public void Cancel(Scheduler scheduler)
        {
            lock (_members)
            {
                _cancelled = true;
                foreach (var m in _members)
                    if (!m.Done) scheduler.Cancel(m.Sequence);
            }
        }
    }

    readonly ILogger _requestLog = loggers.CreateLogger(RequestLog.Category);
    DeviceMetrics _metrics = null!;

    readonly Dictionary<long, Request> _requests = [];
    /// <summary>Finished sequences whose KV blocks are kept for their conversation's next turn (the KV
    /// handles).</summary>
    readonly Dictionary<long, Sequence> _kept = [];
    BatchEngine _batch = null!;
    Task _loop = Task.CompletedTask;
    long _nextSequenceId;
    long _ticks, _batchedSequences, _tokensGenerated, _firstTokens;
    double _tickMs, _forwardMs, _idleMs, _cycleMs, _queueMs, _prefillMs;

    public int Device { get; private set; }

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        await host.Ready.WaitAsync(cancellationToken);
        Device = DeviceKey.Parse(this.GetPrimaryKeyString()).Device;
        var engine = host.Engines[Device];
        _batch = BatchEngine.Create(engine, host.SchedulerOptions(engine), host.Tokenizer.EndOfGenerationIds);
        _metrics = new DeviceMetrics(host, Device);
        Metrics.Register(_batch.Scheduler, _metrics);
        // ids only need to be unique per activation; a random start keeps a stale handle from an earlier activation
        // from matching
        _nextSequenceId = Random.Shared.NextInt64(1, long.MaxValue / 2);
        // The timer keeps this activation (and the KV blocks its scheduler tracks) alive, and drops handles whose
        // blocks were evicted.
        this.RegisterGrainTimer(ForgetEvicted,
            new GrainTimerCreationOptions(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10)) { KeepAlive = true });
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // A later activation drives the same engine: this one's loop must have stopped first.
        foreach (var req in _requests.Values) _batch.Scheduler.Cancel(req.Sequence);
        await _loop;
        if (_batch is not null) Metrics.Unregister(_batch.Scheduler);
    }

    public async IAsyncEnumerable<GenerationDelta> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var req = Admit(request, Channel.CreateUnbounded<GenerationDelta>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true }));
        var (scheduler, group) = (_batch.Scheduler, req.Group);
        // Cancellation only flags the sequences (the callback runs on another thread): the next tick finishes them and
        // frees their blocks.
        using var registration = cancellationToken.Register(() => group.Cancel(scheduler));
        try
        {
            await foreach (var delta in req.Output.Reader.ReadAllAsync(CancellationToken.None))
                yield return delta;
        }
        finally
        {
            // the caller stopped listening (disconnect, dispose) before the end: stop generating for it
            if (!group.AllDone) group.Cancel(scheduler);
        }
    }

    public Task<bool> StartLocalAsync(GenerationRequest request, Guid stream)
    {
        if (!replies.TryGet(stream, out var local)) return Task.FromResult(false);
        var req = Admit(request, local.Channel);
        var scheduler = _batch.Scheduler;
        // a finished sequence may be kept for the next turn: a late cancel must not flag it
        local.Cancel = () =>
        {
            if (!req.Group.AllDone) req.Group.Cancel(scheduler);
        };
        return Task.FromResult(true);
    }

    /// <summary>Queues the request's sequence and starts the loop if it had stopped; its deltas go to
    /// <paramref name="output"/>.</summary>
    Request Admit(GenerationRequest request, Channel<GenerationDelta> output)
    {
        if (request.Choices is < 1 or > TurnRequest.MaxChoices)
            throw new WeftException(WeftErrorCode.InvalidRequest,
                $"a request has 1 to {TurnRequest.MaxChoices} choices", "n");
        var req = AdmitChoice(new ChoiceGroup(request, output), 0, parent: null);
        if (_loop.IsCompleted) _loop = RunAsync();
        return req;
    }

    /// <summary>Queues choice <paramref name="choice"/> of the group's request, a fork of <paramref name="parent"/>
    /// (the first choice) where given; it draws with seed + choice when the request gives a seed.</summary>
    Request AdmitChoice(ChoiceGroup group, int choice, Sequence? parent)
    {
        var request = group.Request;
        var options = choice == 0 ? request.Sampling
            : request.Sampling with { Seed = request.Sampling.Seed + (ulong)choice };
        var tags = _metrics.For(request.Tenant);
        var sampling = SamplingMapper.ToParams(options, request.PromptTokens.Count, host, tags);
        foreach (var t in request.PromptTokens)
            if ((uint)t >= (uint)host.Config.VocabSize)
                throw new WeftException(WeftErrorCode.InvalidRequest,
                    $"token id {t} is outside the vocabulary (0..{host.Config.VocabSize - 1})");

        // A caller of the device grain itself has no API id: the sequence's names its line. Choices after the first
        // share the request's id with their number.
        string RequestId(Sequence seq) => (request.RequestId is { Length: > 0 } id ? id : $"seq-{seq.Id}") +
            (choice == 0 ? "" : $"/{choice}");
        var scheduler = _batch.Scheduler;
        // only the first choice is the conversation's: the others keep no blocks and no handle
        bool keepCache = choice == 0 && request.KeepCache;
        Sequence seq;
        if (choice == 0 && request.SequenceId != 0 && _kept.Remove(request.SequenceId, out var kept))
        {
            seq = kept;
            scheduler.StartTurn(seq, request.PromptTokens, sampling, request.Priority, keepCache);
        }
        else seq = new Sequence(++_nextSequenceId, request.PromptTokens, sampling, request.Priority, keepCache)
        { CacheSalt = CacheSalt(request.Tenant) };
        try
        {
            if (parent is null) scheduler.Add(seq);
            else scheduler.AddFork(seq, parent);
        }
        catch (SchedulerException e)
        {
            scheduler.Release(seq);
            if (e.Retryable)
            {
                Metrics.RecordRefused(_metrics.Model, _metrics.Device, request.Tenant, "queue_full");
                RequestLog.Refused(_requestLog, RequestId(seq), request.Tenant, request.Conversation, "queue_full",
                    e.Message);
            }
            throw new WeftException(e.Retryable ? WeftErrorCode.QueueFull : WeftErrorCode.ContextLengthExceeded,
                e.Message);
        }

        var req = new Request(seq, RequestId(seq), request.Tenant, request.Conversation, tags,
            new ReplyDecoder(host.Tokenizer, request.Sampling.Stop), group.Output, group, choice);
        // cancelled before this choice was queued: it finishes at the next tick, unseen
        if (!group.Add(req)) scheduler.Cancel(seq);
        _requests[seq.Id] = req;
        return req;
    }

    /// <summary>Queues a request's other choices once its first has computed the prompt. A refusal (a full queue)
    /// fails the whole request.</summary>
    void AdmitSiblings(ChoiceGroup group, Sequence first)
    {
        group.SiblingsAdmitted = true;
        try
        {
            for (int c = 1; c < group.Request.Choices; c++) AdmitChoice(group, c, first);
        }
        catch (WeftException e)
        {
            group.Cancel(_batch.Scheduler);
            group.Output.Writer.TryComplete(e);
        }
    }

    public Task ReleaseAsync(long sequenceId)
    {
        if (_kept.Remove(sequenceId, out var seq)) _batch.Scheduler.Release(seq);
        // still finishing (a stop string takes effect at the next tick): the scheduler frees it when it does
        else if (_requests.TryGetValue(sequenceId, out var req)) _batch.Scheduler.Release(req.Sequence);
        return Task.CompletedTask;
    }

    public Task<BatchStats> GetStatsAsync() => Task.FromResult(new BatchStats(
        _ticks,
        _ticks == 0 ? 0 : (double)_batchedSequences / _ticks,
        _ticks == 0 ? 0 : _tickMs / _ticks,
        _ticks == 0 ? 0 : _forwardMs / _ticks,
        _batch.Scheduler.TotalPreemptions,
        _tokensGenerated,
        Load(),
        _idleMs,
        _cycleMs,
        _firstTokens,
        _queueMs,
        _prefillMs));

    DeviceLoad Load()
    {
        var s = _batch.Scheduler;
        int total = _batch.Engine.NumKvBlocks * _batch.Engine.BlockSize;
        return new DeviceLoad(Device, (int)((1 - s.KvCacheUsage) * total), total, s.NumRunning, s.NumWaiting,
            s.NumParked);
    }

    async Task RunAsync()
    {
        try
        {
            await TickWhileWorkAsync();
        }
        catch (Exception e)
        {
            // A bug, not a bad request: fail what is in flight rather than leave its callers waiting forever.
            LogLoopFailed(logger, e);
            foreach (var req in _requests.Values)
            {
                Metrics.RecordFailed(req.Tags);
                LogRequest(req, "failed");
                req.Output.Writer.TryComplete(e);
            }
            _requests.Clear();
            // the scheduler may be mid-tick: a fresh activation builds a new one (kept caches are recomputed)
            DeactivateOnIdle();
        }
    }

    async Task TickWhileWorkAsync()
    {
        // the previous forward pass of this run of the loop: the device waits from its end to the next one's start
        long lastStarted = 0, lastEnded = 0;
        if (!_batch.Scheduler.HasWork) return;
        var next = _batch.Start();
        while (true)
        {
            var current = next;
            var tick = await _batch.FinishAsync(current);
            // indexed loops over the tick's lists: a foreach over an IReadOnlyList boxes an enumerator every tick
            var entries = current.Output.Scheduled;
            for (int e = 0; e < entries.Count; e++)
                if (_requests.TryGetValue(entries[e].Sequence.Id, out var scheduled) && scheduled.FirstScheduled == 0)
                    scheduled.FirstScheduled = tick.ForwardStarted;
            bool stalled = tick.NumSequences == 0 && tick.Finished.Count == 0;
            // The next forward pass starts before this one's tokens are delivered (detokenizing, stop strings,
            // streams): the device need not wait for them.
            bool started = !stalled && _batch.Scheduler.HasWork;
            if (started) next = _batch.Start();
            if (tick.NumSequences > 0)
            {
                _ticks++;
                _batchedSequences += tick.NumSequences;
                _tickMs += tick.TickTime.TotalMilliseconds;
                _forwardMs += tick.ForwardTime.TotalMilliseconds;
                if (lastEnded != 0)
                {
                    _idleMs += Stopwatch.GetElapsedTime(lastEnded, tick.ForwardStarted).TotalMilliseconds;
                    _cycleMs += Stopwatch.GetElapsedTime(lastStarted, tick.ForwardStarted).TotalMilliseconds;
                }
                (lastStarted, lastEnded) = (tick.ForwardStarted, tick.ForwardEnded);
                _tokensGenerated += tick.Sampled.Count;
            }
            int firstTokens = 0;
            for (int t = 0; t < tick.Sampled.Count; t++)
            {
                var (seq, token, logprobs) = tick.Sampled[t];
                if (OnToken(seq, token, logprobs, tick)) firstTokens++;
            }
            if (tick.NumSequences > 0) Metrics.RecordTick(tick, firstTokens, _metrics);
            for (int f = 0; f < tick.Finished.Count; f++) OnFinished(tick.Finished[f]);
            if (stalled)
            {
                // Nothing could be scheduled (every block is held by queued work that cannot start yet); the next
                // request or release restarts the loop rather than spinning here.
                LogStalled(logger, _batch.Scheduler.NumWaiting);
                return;
            }
            if (started) continue;
            if (!_batch.Scheduler.HasWork) return;
            next = _batch.Start();
        }
    }

    /// <summary>Passes a sampled token on; true when it was its request's first.</summary>
    bool OnToken(Sequence seq, int token, TokenLogprobs? logprobs, TickResult tick)
    {
        if (!_requests.TryGetValue(seq.Id, out var req) || req.Done) return false;
        long now = Stopwatch.GetTimestamp();
        bool first = req.LastToken == 0;
        if (first)
        {
            req.Ttft = Stopwatch.GetElapsedTime(req.Admitted, now);
            req.Queue = Stopwatch.GetElapsedTime(req.Admitted, req.FirstScheduled);
            var prefill = Stopwatch.GetElapsedTime(req.FirstScheduled, tick.ForwardEnded);
            Metrics.RecordFirstToken(req.Ttft, req.Queue, prefill, req.Tags);
            _firstTokens++;
            _queueMs += req.Queue.TotalMilliseconds;
            _prefillMs += prefill.TotalMilliseconds;
        }
        else Metrics.RecordInterToken(Stopwatch.GetElapsedTime(req.LastToken, now), req.Tags);
        req.LastToken = now;
        if (first && req.Choice == 0 && req.Group.Request.Choices > 1) AdmitSiblings(req.Group, seq);
        string text = req.Decoder.Push(token);
        IReadOnlyList<TokenLogprob>? lp = logprobs is null ? null
            : [new TokenLogprob(token, logprobs.Logprob, logprobs.TopIds, logprobs.TopLogprobs)];
        if (req.Decoder.Stopped)
        {
            // a stop string ended the reply: the client is done now; the scheduler finishes the sequence next tick
            _batch.Scheduler.Stop(seq);
            Complete(req, "stop", text, [token], lp);
            return first;
        }
        req.Output.Writer.TryWrite(new GenerationDelta
        {
            SequenceId = seq.Id, Text = text, TokenIds = [token], Logprobs = lp, Choice = req.Choice,
        });
        return first;
    }

    void OnFinished(Sequence seq)
    {
        // whatever the scheduler parked is a handle its conversation may come back for (or release)
        if (seq.KeepCache && seq.BlockTable.Count > 0) _kept[seq.Id] = seq;
        if (!_requests.TryGetValue(seq.Id, out var req)) return;
        if (req.Done)
        {
            _requests.Remove(seq.Id);
            return;
        }
        switch (seq.FinishReason)
        {
            case FinishReason.Error:
                req.Done = true;
                _requests.Remove(seq.Id);
                Metrics.RecordFailed(req.Tags);
                LogRequest(req, "failed");
                req.Output.Writer.TryComplete(new InvalidOperationException(seq.Error ?? "generation failed"));
                break;
            case FinishReason.Cancelled:
                req.Done = true;
                _requests.Remove(seq.Id);
                Metrics.RecordCancelled(req.Tags);
                LogRequest(req, "cancelled");
                req.Output.Writer.TryComplete(new OperationCanceledException("generation was cancelled"));
                break;
            default:
                Complete(req, seq.FinishReason == FinishReason.Length ? "length" : "stop", req.Decoder.Finish(), [],
                    null);
                _requests.Remove(seq.Id);
                break;
        }
    }

    void Complete(Request req, string finishReason, string text, IReadOnlyList<int> tokens,
        IReadOnlyList<TokenLogprob>? logprobs)
    {
        var seq = req.Sequence;
        req.Done = true;
        Metrics.RecordFinished(seq, finishReason, Stopwatch.GetElapsedTime(req.Admitted), req.Tags);
        LogRequest(req, finishReason);
        req.Output.Writer.TryWrite(new GenerationDelta
        {
            SequenceId = seq.Id,
            Text = text,
            TokenIds = tokens,
            Logprobs = logprobs,
            FinishReason = finishReason,
            PromptTokens = seq.NumPromptTokens,
            CachedTokens = seq.NumCachedTokens,
            CompletionTokens = seq.NumCompletionTokens,
            Choice = req.Choice,
        });
        if (req.Group.AllDone) req.Output.Writer.TryComplete();
    }

    /// <summary>A tenant's salt: 64 bits of SHA-256, so no tenant can pick a name whose chain meets another's. No
    /// tenant: the unsalted cache.</summary>
    static ulong CacheSalt(string tenant) => tenant.Length == 0 ? 0
        : BinaryPrimitives.ReadUInt64LittleEndian(SHA256.HashData(Encoding.UTF8.GetBytes(tenant)));

    Task ForgetEvicted()
    {
        foreach (var (id, seq) in _kept)
            if (seq.BlockTable.Count == 0) _kept.Remove(id);
        return Task.CompletedTask;
    }

    void LogRequest(Request req, string status)
    {
        var seq = req.Sequence;
        RequestLog.Ended(_requestLog, req.Id, req.Tenant, req.Conversation, Device, seq.NumPromptTokens,
            seq.NumCachedTokens, seq.NumCompletionTokens, req.Queue.TotalMilliseconds, req.Ttft.TotalMilliseconds,
            Stopwatch.GetElapsedTime(req.Admitted).TotalMilliseconds, status);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "the batch loop failed; requests in flight were failed")]
    static partial void LogLoopFailed(ILogger logger, Exception e);

    [LoggerMessage(Level = LogLevel.Warning,
        Message = "no work could be scheduled although {Waiting} requests wait; waiting for the next event")]
    static partial void LogStalled(ILogger logger, int waiting);
}
