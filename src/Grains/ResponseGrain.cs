using Microsoft.Extensions.Options;
using Weft.Abstractions;

namespace Weft.Grains;

[GenerateSerializer, Alias("weft.ResponseState")]
public sealed class ResponseState
{
    [Id(0)] public StoredResponse? Response { get; set; }
    /// <summary>When the response was stored, for its expiry (<see cref="ModelHostOptions.ResponseTtlSeconds"/>).
    /// </summary>
    [Id(1)] public DateTime StoredUtc { get; set; }
}

/// <summary>
/// A stored response, persisted with the conversations (<see cref="WeftStorage.Name"/>). Its KV cache is the
/// conversation's: this grain holds only what is needed to return the response and to continue from it. After the
/// TTL (<see cref="ModelHostOptions.ResponseTtlSeconds"/>, OpenAI's 30 days by default) the response is gone: the
/// stored time is checked on every read, and an activation's timer clears the state once it passes. A response no one
/// reads again is dropped by the store at twice the TTL: Redis by the entry expiry the silo sets for responses,
/// PostgreSQL by the silo's sweep of expired rows.
/// </summary>
public sealed class ResponseGrain(
    IOptions<ModelHostOptions> options,
    [PersistentState(ResponseGrain.StateName, WeftStorage.Name)] IPersistentState<ResponseState> state)
    : Grain, IResponseGrain
{
    /// <summary>The name of its state in the store (the silo's Redis store keeps these apart from
    /// conversations).</summary>
    public const string StateName = "response";

    readonly TimeSpan? _ttl = options.Value.ResponseTtlSeconds > 0
        ? TimeSpan.FromSeconds(options.Value.ResponseTtlSeconds) : null;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (_ttl is not { } ttl) return;
        // a response stored before expiry was tracked has no time: its clock starts now
        if (state.State is { Response: not null, StoredUtc.Ticks: 0 }) state.State.StoredUtc = DateTime.UtcNow;
        await ExpireAsync();
        // the conversations' check period: a quarter of the TTL, between a quarter second and a minute
        var period = ConversationGrain.CheckPeriod(ttl);
        this.RegisterGrainTimer(_ => ExpireAsync(),
            new GrainTimerCreationOptions(period, period) { KeepAlive = false });
    }

    public async Task<StoredResponse?> GetAsync()
    {
        await ExpireAsync();
        return state.State.Response;
    }

    public Task SetAsync(StoredResponse response)
    {
        state.State.Response = response;
        state.State.StoredUtc = DateTime.UtcNow;
        return state.WriteStateAsync();
    }

    public async Task<bool> DeleteAsync()
    {
        await ExpireAsync();
        if (state.State.Response is null) return false;
        await ClearAsync();
        return true;
    }

    /// <summary>Clears the response once its TTL has passed.</summary>
    async Task ExpireAsync()
    {
        if (_ttl is { } ttl && state.State.Response is not null && DateTime.UtcNow - state.State.StoredUtc >= ttl)
            await ClearAsync();
    }

    async Task ClearAsync()
    {
        await state.ClearStateAsync();
        state.State = new ResponseState();
        DeactivateOnIdle();
    }
}
