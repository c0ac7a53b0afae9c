namespace Weft.Grains;

/// <summary>
/// The silos whose API edges have a conversation turn streaming, so that a turn whose edge died is told at once.
/// A turn's reply is an Orleans async enumeration that its caller pulls: when the caller's silo dies, nothing pulls or
/// ends it, and Orleans drops an enumeration nobody pulled only after one to two response timeouts (30 to 60 s), all
/// that time holding the conversation's one turn (the multi-host test saw a resend refused with 409 for 59.5 s). The
/// membership declares a dead silo within the failure-detection time (3 s by default); this listens to it.
/// </summary>
public sealed class TurnCallers : ISiloStatusListener
{
    /// <summary>The request-context key under which an edge names its silo when it opens a turn.</summary>
    const string Key = "weft.turn-caller";

    readonly ISiloStatusOracle _oracle;
    readonly Dictionary<SiloAddress, List<CallerWatch>> _watched = [];

    public TurnCallers(ISiloStatusOracle oracle)
    {
        _oracle = oracle;
        oracle.SubscribeToSiloStatusEvents(this);
    }

    /// <summary>Names this silo as the caller of the turns opened from here in the current async flow (the edge's
    /// first read of a reply carries it to the conversation).</summary>
    public static void MarkCaller(SiloAddress edge) => RequestContext.Set(Key, edge);

    /// <summary>The caller named by <see cref="MarkCaller"/> for the call being served, taken out of the request
    /// context so that the conversation's own calls do not carry it on.</summary>
    internal static SiloAddress? TakeCaller()
    {
        if (RequestContext.Get(Key) is not SiloAddress caller) return null;
        RequestContext.Remove(Key);
        return caller;
    }

    /// <summary>Calls <paramref name="gone"/> once when <paramref name="caller"/> is dead, now or later, until the
    /// returned watch is disposed. It may run on a membership thread, and never after the disposal returns. Null for
    /// a caller on this silo: it dies with the turn, and a silo cut off from the others learns that it was declared
    /// dead while its own edges still read their replies (ending them then made 500s in the multi-host test).</summary>
    internal IDisposable? Watch(SiloAddress caller, Action gone)
    {
        if (caller.Equals(_oracle.SiloAddress)) return null;
        var watch = new CallerWatch(this, caller, gone);
        lock (_watched)
        {
            if (!_watched.TryGetValue(caller, out var list)) _watched[caller] = list = [];
            list.Add(watch);
        }
        if (_oracle.IsDeadSilo(caller)) Notify(caller);
        return watch;
    }

    public void SiloStatusChangeNotification(SiloAddress updatedSilo, SiloStatus status)
    {
        if (status == SiloStatus.Dead) Notify(updatedSilo);
    }

    void Notify(SiloAddress dead)
    {
        // under the lock, so that a watch disposed (its turn over) is never called after
        lock (_watched)
        {
            if (!_watched.Remove(dead, out var list)) return;
            foreach (var watch in list) watch.Gone();
        }
    }

    void Remove(CallerWatch watch)
    {
        lock (_watched)
        {
            if (!_watched.TryGetValue(watch.Caller, out var list)) return;
            list.Remove(watch);
            if (list.Count == 0) _watched.Remove(watch.Caller);
        }
    }

    sealed class CallerWatch(TurnCallers owner, SiloAddress caller, Action gone) : IDisposable
    {
        public SiloAddress Caller => caller;

        public void Gone() => gone();

        public void Dispose() => owner.Remove(this);
    }
}
