using Weft.Abstractions;

namespace Weft.Grains;

[GenerateSerializer, Alias("weft.ResponseState")]
public sealed class ResponseState
{
    [Id(0)] public StoredResponse? Response { get; set; }
}

/// <summary>A stored response, persisted with the conversations (<see cref="WeftStorage.Name"/>). Its KV cache is the
/// conversation's: this grain holds only what is needed to return the response and to continue from it.</summary>
public sealed class ResponseGrain(
    [PersistentState("response", WeftStorage.Name)] IPersistentState<ResponseState> state)
    : Grain, IResponseGrain
{
    public Task<StoredResponse?> GetAsync() => Task.FromResult(state.State.Response);

    public Task SetAsync(StoredResponse response)
    {
        state.State.Response = response;
        return state.WriteStateAsync();
    }

    public async Task<bool> DeleteAsync()
    {
        if (state.State.Response is null) return false;
        await state.ClearStateAsync();
        state.State = new ResponseState();
        DeactivateOnIdle();
        return true;
    }
}
