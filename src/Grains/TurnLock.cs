using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Weft.Abstractions;

namespace Weft.Grains;

/// <summary>
/// A conversation's one turn at a time. A streaming turn holds it until its reply has been read to the end or the
/// reader let go. A reader that dies with its silo does neither, so a turn also watches its caller's silo
/// (<see cref="TurnCallers"/>): when that silo is declared dead the turn is cancelled and ends by itself, or, waiting
/// for a read that will never come (the reply is read ahead by one delta), has the lock taken from it by the next
/// turn, reset or delete.
/// </summary>
[SuppressMessage("Reliability", "CA1001", Justification =
    "a SemaphoreSlim whose wait handle is never asked for holds nothing to dispose; disposing it at deactivation "
    + "would make a streaming turn's late Release throw")]
sealed class TurnLock(TurnCallers callers)
{
    /// <summary>How often a reset waiting for the lock looks whether its holder was left by a dead caller.</summary>
    static readonly TimeSpan OrphanCheck = TimeSpan.FromMilliseconds(250);

    readonly SemaphoreSlim _gate = new(1, 1);
    /// <summary>The streaming turn that holds the gate, if a turn does.</summary>
    Turn? _turn;

    /// <summary>Takes the lock when it is free or held by a turn whose caller is dead and which waits for its
    /// read.</summary>
    public async ValueTask<bool> TryEnterAsync()
    {
        if (_gate.Wait(0)) return true;
        if (_turn is not { Orphaned: true, Parked: true } orphan) return false;
        // the gate passes to the caller as it is; the orphan, parked at a yield, does not run until Orleans drops
        // its enumeration, and then finds that it no longer holds the gate
        _turn = null;
        try
        {
            await orphan.AbandonAsync();
        }
        catch
        {
            _gate.Release();
            throw;
        }
        return true;
    }

    public async Task EnterAsync()
    {
        while (!await _gate.WaitAsync(OrphanCheck))
            if (await TryEnterAsync()) return;
    }

    public void Exit() => _gate.Release();

    /// <summary>Runs a turn under the lock, or refuses it with <see cref="WeftErrorCode.Conflict"/> while another
    /// holds it. The caller is the silo named by the request context (<see cref="TurnCallers.MarkCaller"/>); a turn
    /// without one (an Orleans client's) ends only when its enumeration does.</summary>
    public async IAsyncEnumerable<TurnDelta> RunAsync(Func<CancellationToken, IAsyncEnumerable<TurnDelta>> run,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var caller = TurnCallers.TakeCaller();
        if (!await TryEnterAsync()) throw Busy();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var deltas = run(cancel.Token).GetAsyncEnumerator(cancel.Token);
        var turn = new Turn(cancel, deltas);
        _turn = turn;
        var watch = caller is null ? null : callers.Watch(caller, turn.CallerGone);
        try
        {
            while (true)
            {
                try
                {
                    if (!await deltas.MoveNextAsync()) break;
                }
                catch (OperationCanceledException) when (turn.Orphaned)
                {
                    throw CallerLost();
                }
                turn.Parked = true;
                yield return deltas.Current;
                turn.Parked = false;
                // read again after all: the caller was declared dead but lives on until it learns it (cut off)
                if (turn.Orphaned) throw CallerLost();
            }
        }
        finally
        {
            // first, so that the caller's death never reaches a disposed token source
            watch?.Dispose();
            await deltas.DisposeAsync();
            if (_turn == turn)
            {
                _turn = null;
                _gate.Release();
            }
        }
    }

    /// <summary>What a caller declared dead gets should it still read: a silo loss, which an edge answers with 503 and
    /// Retry-After.</summary>
    static SiloUnavailableException CallerLost() =>
        new("the silo that called this turn was declared dead, and the turn was ended; resend it");

    public static WeftException Busy() => new(WeftErrorCode.Conflict,
        "the conversation is busy with another turn; send the next one when it has finished", "conversation_id");

    sealed class Turn(CancellationTokenSource cancel, IAsyncEnumerator<TurnDelta> deltas)
    {
        volatile bool _orphaned;

        /// <summary>The turn is suspended at a yield: its reply's last delta was taken, the next not asked
        /// for.</summary>
        public bool Parked { get; set; }

        public bool Orphaned => _orphaned;

        /// <summary>Stops the turn (its generation frees its slot); a turn waiting for a delta ends now.</summary>
        public void CallerGone()
        {
            _orphaned = true;
            cancel.Cancel();
        }

        /// <summary>Ends a parked turn's reply: its generation, its tenant admission and its reply channel.</summary>
        public ValueTask AbandonAsync() => deltas.DisposeAsync();
    }
}
