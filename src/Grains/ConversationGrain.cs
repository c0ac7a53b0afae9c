using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Storage;
using Weft.Abstractions;
using Weft.Models.Chat;
using Weft.Models.Chat.ToolCalls;

namespace Weft.Grains;

/// <summary>A conversation's persisted state: its messages, the tokens of its last turn, and its KV handle.</summary>
[GenerateSerializer, Alias("weft.ConversationState")]
public sealed class ConversationState
{
    [Id(0)] public List<ChatMessage> Messages { get; set; } = [];
    /// <summary>Prompt and reply tokens of the last turn: what the KV cache holds when the handle is still
    /// valid.</summary>
    [Id(1)] public List<int> TokenIds { get; set; } = [];
    /// <summary>The rendered chat text <see cref="TokenIds"/> stand for, so the next turn can extend them instead of
    /// re-tokenizing.</summary>
    [Id(4)] public string Text { get; set; } = "";
    /// <summary>The BatchGrain holding this conversation's KV cache and the sequence id there; stale once the silo
    /// changes.</summary>
    [Id(2)] public string? BatchKey { get; set; }
    [Id(3)] public long SequenceId { get; set; }
    /// <summary>When the last turn ended: the conversation expires a TTL after it.</summary>
    [Id(5)] public DateTime LastTurnUtc { get; set; }
    /// <summary>The conversation's own truncation setting, from the last turn that gave one.</summary>
    [Id(6)] public Truncation? Truncation { get; set; }
    /// <summary>The last turns applied under a client's turn id, newest last (at most
    /// <see cref="AppliedTurn.Kept"/>).</summary>
    [Id(20)] public List<AppliedTurn> AppliedTurns { get; set; } = [];
    /// <summary>A new id at every write of a turn: an activation whose write is refused for a stale version tells by
    /// it whether the stored copy is still the one it wrote or read (only the version changed) or another
    /// activation's.</summary>
    [Id(21)] public Guid Revision { get; set; }
}

/// <summary>
/// One conversation, placed on the silo with the most free KV capacity. Renders its history through the model's chat
/// template, hands the tokens to its device's BatchGrain with the KV handle of its previous turn (so only new tokens
/// are computed), streams the reply, and persists the turn once it is complete. Its key is tenant/id
/// (<see cref="ConversationKey"/>): the tenant salts its prefix cache and is counted against its limits. A conversation
/// left without a turn for the TTL (<see cref="ModelHostOptions.ConversationTtlSeconds"/>) removes its state and
/// deactivates.
/// </summary>
[KvCapacityPlacement]
public sealed class ConversationGrain(
    ModelHost host,
    TenantLimits limits,
    IOptions<ModelHostOptions> options,
    ILocalSiloDetails silo,
    LocalReplies replies,
    TurnCallers callers,
    ILoggerFactory loggers,
    [PersistentState(ConversationGrain.StateName, WeftStorage.Name)] IPersistentState<ConversationState> state)
    : Grain, IConversationGrain
{
    /// <summary>The name of its state in the store (PostgreSQL's sweep of expired rows picks conversations by
    /// it).</summary>
    public const string StateName = "conversation";

    /// <summary>Turns run one at a time; a second request is refused while one runs.</summary>
    readonly TurnLock _turn = new(callers);
    readonly ILogger _requestLog = loggers.CreateLogger(RequestLog.Category);
    /// <summary>A write failed without saying whether it was stored (the store went away mid-call): what this
    /// activation holds may not be what is stored, so the next turn reads the stored copy first.</summary>
    bool _unsure;
    readonly TimeSpan? _ttl = options.Value.ConversationTtlSeconds > 0
        ? TimeSpan.FromSeconds(options.Value.ConversationTtlSeconds) : null;

    string Tenant => ConversationKey.Tenant(this.GetPrimaryKeyString());

    /// <summary>How often an activation checks whether it has expired: a quarter of the TTL keeps the overshoot small,
    /// and a check is only a clock read.</summary>
    internal static TimeSpan CheckPeriod(TimeSpan ttl) =>
        TimeSpan.FromTicks(Math.Clamp(ttl.Ticks / 4, TimeSpan.TicksPerSecond / 4, TimeSpan.TicksPerMinute));

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (_ttl is not { } ttl) return;
        // A state stored before expiry was tracked has no time: its clock starts now.
        if (state.State.LastTurnUtc == default) state.State.LastTurnUtc = DateTime.UtcNow;
        // expired while no silo held it (the store's own TTL is only the backstop)
        else if (DateTime.UtcNow - state.State.LastTurnUtc >= ttl) await ForgetAsync();
        var period = CheckPeriod(ttl);
        this.RegisterGrainTimer(ExpireIfIdleAsync, new GrainTimerCreationOptions(period, period) { KeepAlive = false });
    }

    public IAsyncEnumerable<TurnDelta> SendAsync(TurnRequest request, CancellationToken cancellationToken = default) =>
        _turn.RunAsync(ct => RunTurnAsync(request, ct), cancellationToken);

    async IAsyncEnumerable<TurnDelta> RunTurnAsync(TurnRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (_unsure) await Storing(RereadAsync());
        // a resent turn that was applied (its silo died before the reply reached the client) is not run again
        if (request.TurnId is { } resent && !request.Ephemeral
            && state.State.AppliedTurns.Find(t => t.TurnId == resent) is { } applied)
        {
            yield return applied.Replay(request.ReturnTokenIds);
            yield break;
        }
        host.EnsureReady();
        if (request.Choices is < 1 or > TurnRequest.MaxChoices
            || (request.Choices > 1 && !request.Ephemeral))
            throw new WeftException(WeftErrorCode.InvalidRequest,
                $"a turn has 1 to {TurnRequest.MaxChoices} choices, and more than one only when it is ephemeral " +
                "(a conversation keeps one reply per turn)", "n");
        var (messages, prompt, rendered, dropped) = Prepare(request);
        string requestId = request.RequestId ?? request.TurnId ?? Guid.NewGuid().ToString("N");
        using var admission = Admit(prompt.Count, requestId);
        var s = state.State;
        string batchKey = new DeviceKey(silo.SiloAddress, await ChooseDevice(s)).ToString();
        var generation = new GenerationRequest
        {
            // a one-off turn leaves the conversation's own cache alone (the shared prefix cache may still serve it)
            SequenceId = s.BatchKey == batchKey && !request.Ephemeral ? s.SequenceId : 0,
            PromptTokens = prompt,
            Sampling = request.Sampling,
            Priority = request.Priority,
            KeepCache = !request.Ephemeral,
            Tenant = Tenant,
            Conversation = this.GetPrimaryKeyString(),
            Choices = request.Choices,
            RequestId = requestId,
        };
        if (s.BatchKey is not null && s.BatchKey != batchKey && !request.Ephemeral) await ReleaseStaleHandle(s);

        var reply = new List<int>();
        var text = new System.Text.StringBuilder();
        bool first = true;
        long sequenceId = 0;
        (string? Finish, Usage? Usage) end = (null, null);
        // with tools offered, text that may be a call is held back and parsed when the reply ends; one splitter
        // per choice
        var hiddenMarkers = request.ToolsJson is null ? null : host.HiddenToolMarkers;
        var splitters = hiddenMarkers is null ? null
            : Enumerable.Range(0, request.Choices)
                .Select(_ => new ToolCallSplitter(host.Template.ToolFormat, hiddenMarkers)).ToArray();
        IReadOnlyList<ToolCall>? calls = null;
        // a kept turn's last delta (finish reason and usage) goes out once the turn is stored: a client that saw
        // the end of a reply saw one that is in the history
        TurnDelta? last = null;
        await foreach (var d in GenerateAsync(GrainFactory.GetGrain<IBatchGrain>(batchKey), generation,
            cancellationToken))
        {
            // what the conversation keeps is the first choice's (the only one of a turn that is not ephemeral)
            bool firstChoice = d.Choice == 0;
            if (firstChoice)
            {
                sequenceId = d.SequenceId;
                reply.AddRange(d.TokenIds);
                text.Append(d.Text);
            }
            var splitter = splitters?[d.Choice];
            var (shown, pieces) = splitter?.Push(d.Text, d.TokenIds) ?? (d.Text, []);
            string? finish = d.FinishReason;
            IReadOnlyList<ToolCall>? found = null;
            if (splitter is not null && finish is not null)
            {
                var (rest, parsed, completing) = splitter.Finish();
                shown += rest;
                pieces = [.. pieces, .. completing];
                if (parsed.Count > 0)
                {
                    found = [.. parsed.Take(request.ParallelToolCalls ? parsed.Count : 1)
                        .Select(c => new ToolCall(c.Id, c.Name, c.Arguments))];
                    if (finish == "stop") finish = "tool_calls";
                }
            }
            // parallel_tool_calls false keeps the first call: the others do not stream either
            var callDeltas = pieces.Where(p => request.ParallelToolCalls || p.Index == 0)
                .Select(p => new ToolCallDelta(p.Index, p.Id, p.Name, p.Arguments)).ToList();
            var choiceUsage = finish is null ? null
                : new Usage(d.PromptTokens, d.CompletionTokens, d.CachedTokens, dropped);
            if (firstChoice && finish is not null) (end, calls) = ((finish, choiceUsage), found);
            var delta = new TurnDelta
            {
                Text = shown,
                TokenIds = request.ReturnTokenIds ? d.TokenIds : [],
                Logprobs = d.Logprobs,
                PromptTokenIds = first && request.ReturnTokenIds ? prompt : null,
                FinishReason = finish,
                Usage = choiceUsage,
                ToolCalls = found,
                ToolCallDeltas = callDeltas.Count > 0 ? callDeltas : null,
                Choice = d.Choice,
            };
            first = false;
            if (finish is not null && !request.Ephemeral) last = delta;
            else yield return delta;
        }

        // nothing to keep (the idle activation goes with Orleans' collection; deactivating it here, while the
        // caller still holds the stream's enumerator, would fail the caller's last read)
        if (request.Ephemeral) yield break;
        // The turn is complete: it becomes history. (A cancelled turn throws above and leaves no trace.)
        if (messages is not null)
            s.Messages = [.. messages, calls is null ? new ChatMessage("assistant", text.ToString())
                : new ChatMessage("assistant", "", calls)];
        var kept = TurnTokens.AfterReply(host.Tokenizer, prompt, rendered, reply, text.ToString());
        s.TokenIds = [.. kept.Ids];
        s.Text = kept.Text;
        s.BatchKey = batchKey;
        s.SequenceId = sequenceId;
        s.LastTurnUtc = DateTime.UtcNow;
        if (request.Truncation is not null) s.Truncation = request.Truncation;
        if (request.TurnId is { } turnId && end is ({ } endFinish, { } usage))
        {
            // the text as the history keeps it: a reply of tool calls is its calls
            s.AppliedTurns.Add(new AppliedTurn(turnId, calls is null ? text.ToString() : "", [.. reply], endFinish,
                usage, request.ReturnTokenIds ? [.. prompt] : null, calls is null ? null : [.. calls]));
            if (s.AppliedTurns.Count > AppliedTurn.Kept)
                s.AppliedTurns.RemoveRange(0, s.AppliedTurns.Count - AppliedTurn.Kept);
        }
        await Storing(CommitAsync(s));
        if (last is not null) yield return last;
    }

    /// <summary>
    /// The reply's deltas, read from a channel the BatchGrain writes when it is on this silo (as its key says it is),
    /// else from its grain stream.
    /// </summary>
    async IAsyncEnumerable<GenerationDelta> GenerateAsync(IBatchGrain batch, GenerationRequest generation,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var (key, local) = replies.Open();
        try
        {
            if (await batch.StartLocalAsync(generation, key))
            {
                bool complete = false;
                // Cancellation only flags the sequence: the next tick finishes it and frees its blocks.
                using var registration = cancellationToken.Register(local.Cancel);
                try
                {
                    await foreach (var d in local.Channel.Reader.ReadAllAsync(cancellationToken)) yield return d;
                    complete = true;
                }
                finally
                {
                    // the caller stopped listening before the end: stop generating for it
                    if (!complete) local.Cancel();
                }
                yield break;
            }
        }
        finally
        {
            replies.Close(key);
        }
        await foreach (var d in batch.GenerateAsync(generation, cancellationToken)) yield return d;
    }

    public Task<ConversationHistory> GetHistoryAsync() =>
        Task.FromResult(new ConversationHistory(state.State.Messages, state.State.TokenIds.Count,
            silo.SiloAddress.ToString()));

    public async Task ResetAsync()
    {
        await _turn.EnterAsync();
        try
        {
            await ReleaseStaleHandle(state.State);
            await state.ClearStateAsync();
            state.State = new ConversationState();
        }
        finally
        {
            _turn.Exit();
        }
    }

    public async Task<bool> DeleteAsync()
    {
        if (!await _turn.TryEnterAsync()) throw TurnLock.Busy();
        try
        {
            bool existed = state.RecordExists || state.State.Messages.Count > 0 || state.State.BatchKey is not null;
            await ForgetAsync();
            DeactivateOnIdle();
            return existed;
        }
        finally
        {
            _turn.Exit();
        }
    }

    /// <summary>Counts the turn against its tenant's limits; a refusal is counted in the metrics (no device chosen
    /// yet) and logged.</summary>
    IDisposable Admit(int promptTokens, string requestId)
    {
        try
        {
            return limits.Admit(Tenant, promptTokens);
        }
        catch (WeftException e) when (e.Code == WeftErrorCode.TenantLimit)
        {
            Metrics.RecordRefused(host.ModelName, "", Tenant, "tenant_limit");
            RequestLog.Refused(_requestLog, requestId, Tenant, this.GetPrimaryKeyString(), "tenant_limit", e.Message);
            throw;
        }
    }

    async Task ExpireIfIdleAsync(CancellationToken cancellationToken)
    {
        // An activation that holds nothing (a one-off turn's, or one that only read an empty history) is not kept for
        // the TTL: the collection age is raised to it for every conversation, and one-off turns come by the thousand.
        bool holdsNothing = !state.RecordExists && state.State.BatchKey is null;
        if (!holdsNothing && DateTime.UtcNow - state.State.LastTurnUtc < _ttl) return;
        if (!await _turn.TryEnterAsync()) return;
        try
        {
            await ForgetAsync(expiring: true);
            DeactivateOnIdle();
        }
        finally
        {
            _turn.Exit();
        }
    }

    /// <summary>
    /// Stores the state of a completed turn (the activation's own state, changed in place). Orleans refuses the write
    /// with InconsistentStateException when the stored copy's version is not the one this activation read or wrote:
    /// <list type="bullet">
    /// <item>The store lost the copy (restarted empty): this activation's is the only one left, and it is
    /// written.</item>
    /// <item>The copy is still the one this activation last read or wrote (same
    /// <see cref="ConversationState.Revision"/>; a store restored from a backup of that moment): only the version
    /// changed, and the turn is written on it.</item>
    /// <item>Another activation wrote (its silo took the conversation over while this one's was cut off, or the other
    /// way round): its copy stays, a turn is never stored on top of a history this activation did not see, and this
    /// activation takes the stored copy. The turn fails as retryable: its reply's end was held back, so no client took
    /// it as done, and the resent turn is replayed from the stored copy (when the other activation applied the same
    /// turn id) or runs on that history.</item>
    /// </list>
    /// A write that fails otherwise (the store went away mid-call) may or may not have been stored: the next turn reads
    /// the stored copy before anything else.
    /// </summary>
    async Task CommitAsync(ConversationState next)
    {
        var based = next.Revision;
        next.Revision = Guid.NewGuid();
        try
        {
            await state.WriteStateAsync(CancellationToken.None);
            return;
        }
        catch (InconsistentStateException)
        {
            _unsure = true;
        }
        catch
        {
            _unsure = true;
            throw;
        }
        await state.ReadStateAsync(CancellationToken.None);
        _unsure = false;
        if (!state.RecordExists || (based != Guid.Empty && state.State.Revision == based))
        {
            state.State = next;
            try
            {
                await state.WriteStateAsync(CancellationToken.None);
                return;
            }
            catch (Exception e)
            {
                _unsure = true;
                // another activation wrote in between: as below, once the stored copy is read again
                if (e is not InconsistentStateException) throw;
            }
            await state.ReadStateAsync(CancellationToken.None);
            _unsure = false;
        }
        if (next.BatchKey != state.State.BatchKey || next.SequenceId != state.State.SequenceId)
            await ReleaseStaleHandle(next);
        throw new WeftException(WeftErrorCode.Superseded, "another activation of this conversation (on a silo that " +
            "took it over) stored a turn first; resend this turn, with the same X-Turn-Id header if it had one");
    }

    /// <summary>
    /// Awaits a call to the store. The store client's own exceptions (Npgsql's, StackExchange.Redis', sockets') have no
    /// Orleans codec: sent to an API edge on another silo they fail to serialize and the client got a 500. They
    /// become a refusal the edge answers with 503 and Retry-After.
    /// </summary>
    static async Task Storing(Task call)
    {
        try
        {
            await call;
        }
        catch (Exception e) when (FromStore(e))
        {
            throw new WeftException(WeftErrorCode.StorageUnavailable,
                "the conversation store is unreachable; retry later (with the same X-Turn-Id header if it had one)");
        }
    }

    static bool FromStore(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            string name = inner.GetType().FullName ?? "";
            if (inner is System.Net.Sockets.SocketException or TimeoutException
                || name.StartsWith("Npgsql.", StringComparison.Ordinal)
                || name.StartsWith("StackExchange.Redis.", StringComparison.Ordinal))
                return true;
        }
        return false;
    }

    /// <summary>Takes the stored copy as this activation's state, freeing the KV cache of a state the store does not
    /// have.</summary>
    async Task RereadAsync()
    {
        var held = state.State;
        await state.ReadStateAsync(CancellationToken.None);
        _unsure = false;
        if (held.BatchKey != state.State.BatchKey || held.SequenceId != state.State.SequenceId)
            await ReleaseStaleHandle(held);
    }

    /// <summary>Frees the KV cache and removes the stored state (a one-off conversation stored none: no write). An
    /// expiry leaves a stored copy that another activation wrote since, and that has not expired, as it is.</summary>
    async Task ForgetAsync(bool expiring = false)
    {
        await ReleaseStaleHandle(state.State);
        if (state.RecordExists)
        {
            try
            {
                await state.ClearStateAsync();
            }
            catch (InconsistentStateException)
            {
                await state.ReadStateAsync(CancellationToken.None);
                if (expiring && DateTime.UtcNow - state.State.LastTurnUtc < _ttl) return;
                if (state.RecordExists) await state.ClearStateAsync();
            }
        }
        state.State = new ConversationState();
    }

    /// <summary>The new history (for chat turns), the prompt tokens of this turn, the chat text they stand for, and
    /// how many tokens of the history were dropped to fit the context.</summary>
    (List<ChatMessage>? Messages, IReadOnlyList<int> Prompt, string? Rendered, int Dropped) Prepare(TurnRequest r)
    {
        int kinds = (r.Messages is not null ? 1 : 0) + (r.Prompt is not null ? 1 : 0)
            + (r.PromptTokenIds is not null ? 1 : 0);
        if (kinds != 1)
            throw new WeftException(WeftErrorCode.InvalidRequest,
                "a turn needs exactly one of messages, prompt or prompt token ids");
        if (r.PromptTokenIds is not null) return (null, r.PromptTokenIds, null, 0);
        if (r.Prompt is not null)
            return (null, host.Tokenizer.Encode(r.Prompt, addSpecial: true, parseSpecial: false), null, 0);

        List<ChatMessage> messages = r.ReplaceHistory ? [.. r.Messages!] : [.. state.State.Messages, .. r.Messages!];
        var (rendered, prompt) = Render(messages, r.ToolsJson);
        // a one-off request is refused rather than cut, as OpenAI's API does, unless it asks for truncation
        var truncation = r.Truncation
            ?? (r.Ephemeral ? Truncation.Disabled : state.State.Truncation ?? Truncation.Auto);
        // Whole turns go, oldest first: the kept history restarts at a later user message, after the leading system
        // messages. The prompt shrinks as more turns go, so the fewest that fit are found by bisection (a rendering
        // and a tokenization each).
        int first = messages.FindIndex(m => m.Role != "system");
        var cuts = first < 0 ? []
            : Enumerable.Range(first + 1, messages.Count - 1 - first).Where(i => messages[i].Role == "user").ToList();
        if (truncation == Truncation.Disabled)
        {
            // with no turn to drop, the scheduler's check gives the plain reason
            if (cuts.Count > 0 && prompt.Length + (r.Sampling.MaxTokens ?? 1) > host.MaxModelLen)
                throw NotCut(prompt.Length, r);
            return (messages, prompt, rendered, 0);
        }
        // A reply of no set length gets room of its own: cut to one token short of the context, it would end after
        // one token, and the next turn would be cut again.
        int budget = host.MaxModelLen - (r.Sampling.MaxTokens ?? host.TruncationReplyTokens);
        if (prompt.Length <= budget || budget < 1) return (messages, prompt, rendered, 0);

        List<ChatMessage> Keeping(int cut) => [.. messages[..first], .. messages[cut..]];
        (List<ChatMessage> Messages, string Rendered, int[] Prompt)? Fewest(int limit)
        {
            (List<ChatMessage>, string, int[])? best = null;
            for (int lo = 0, hi = cuts.Count - 1; lo <= hi;)
            {
                int mid = (lo + hi) / 2;
                var kept = Keeping(cuts[mid]);
                var (text, ids) = Render(kept, r.ToolsJson);
                if (ids.Length <= limit)
                {
                    best = (kept, text, ids);
                    hi = mid - 1;
                }
                else lo = mid + 1;
            }
            return best;
        }
        // When no cut leaves the reserve, a prompt that does not fit at all takes the cut that leaves some room.
        var fit = Fewest(budget) ?? (r.Sampling.MaxTokens is null && prompt.Length >= host.MaxModelLen
            ? Fewest(host.MaxModelLen - 1) : null);
        // with nothing left to drop that makes it fit, the scheduler's check refuses the turn as before
        return fit is { } b ? (b.Messages, b.Prompt, b.Rendered, prompt.Length - b.Prompt.Length)
            : (messages, prompt, rendered, 0);
    }

    /// <summary>The refusal of a turn past the context that may not be cut, saying how to allow the cut.</summary>
    WeftException NotCut(int promptTokens, TurnRequest r)
    {
        string why = r.Truncation is not null ? "the request disables truncation"
            : r.Ephemeral ? "truncation is disabled for a request without a conversation id"
            : "truncation is disabled for this conversation";
        string needs = r.Sampling.MaxTokens is { } max
            ? $"the prompt ({promptTokens} tokens) plus max_tokens ({max}) exceeds"
            : $"the prompt has {promptTokens} tokens, more than fits";
        return new WeftException(WeftErrorCode.ContextLengthExceeded,
            $"{needs} this model's context of {host.MaxModelLen} tokens, and {why}; send \"truncation\": \"auto\" " +
            "(Truncation.Auto in a TurnRequest) to drop the oldest turns instead", "truncation");
    }

    (string Rendered, int[] Prompt) Render(List<ChatMessage> messages, string? toolsJson)
    {
        string rendered;
        try
        {
            rendered = toolsJson is null && messages.All(m => m.ToolCalls is null && m.ToolCallId is null)
                ? host.Template.Render([.. messages.Select(m => (m.Role, m.Content))], addGenerationPrompt: true)
                : host.Template.Render([.. messages.Select(Turn)], toolsJson, addGenerationPrompt: true);
        }
        catch (ArgumentException e)
        {
            // the template's own words (a raise_exception's reason) without .NET's " (Parameter 'messages')"
            throw e.ParamName is { } param
                ? new WeftException(WeftErrorCode.InvalidRequest,
                    e.Message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal), "messages")
                : new WeftException(WeftErrorCode.InvalidRequest, e.Message);
        }
        return (rendered, new TurnTokens(state.State.Text, state.State.TokenIds).Prompt(host.Tokenizer, rendered));
    }

    static ChatTurn Turn(ChatMessage m) => new(m.Role, m.Content,
        m.ToolCalls?.Select(c => new ToolCallText(c.Name, c.Arguments, c.Id)).ToList(), m.ToolCallId);

    /// <summary>
    /// The device this conversation's cache is on, if it is on this silo; otherwise the least loaded one (fewest
    /// sequences queued or running, then most free KV), so conversations spread over a silo's GPUs and then stay put.
    /// </summary>
    async Task<int> ChooseDevice(ConversationState s)
    {
        if (s.BatchKey is not null && DeviceKey.Parse(s.BatchKey) is var held && held.Silo.Equals(silo.SiloAddress)
            && held.Device < host.Engines.Count)
            return held.Device;
        if (host.Engines.Count == 1) return 0;
        var stats = await Task.WhenAll(Enumerable.Range(0, host.Engines.Count)
            .Select(d => GrainFactory.GetGrain<IBatchGrain>(new DeviceKey(silo.SiloAddress, d).ToString())
                .GetStatsAsync()));
        // Turns that arrive together all see the same figures; the random tiebreak spreads them.
        return stats.Select(st => st.Load)
            .OrderBy(l => l.Running + l.Waiting).ThenByDescending(l => l.FreeKvTokens).ThenBy(_ => Random.Shared.Next())
            .First().Device;
    }

    async Task ReleaseStaleHandle(ConversationState s)
    {
        if (s.BatchKey is null) return;
        // The silo that held the cache may be gone; then its blocks went with it.
        if (DeviceKey.Parse(s.BatchKey).Silo.Equals(silo.SiloAddress))
            await GrainFactory.GetGrain<IBatchGrain>(s.BatchKey).ReleaseAsync(s.SequenceId);
        s.BatchKey = null;
        s.SequenceId = 0;
    }
}
