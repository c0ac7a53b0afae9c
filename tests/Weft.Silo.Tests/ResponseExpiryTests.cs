using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Weft.Abstractions;
using Weft.Grains;

namespace Weft.Silo.Tests;

/// <summary>Stored responses that expire 2 s after they are stored.</summary>
public sealed class ExpiringResponsesSilo : SiloFixture
{
    protected override string[] Options => ["--response-ttl", "2"];
}

public sealed class ResponseExpiryTests(ExpiringResponsesSilo silo) : IClassFixture<ExpiringResponsesSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_stored_response_is_removed_after_its_ttl_even_if_no_one_reads_it()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/responses",
            """{"input":"Remember me.","max_output_tokens":2}""", Ct);
        Assert.Equal(HttpStatusCode.OK, status);
        string id = (string)body["id"]!;
        using (var fresh = await silo.Http.GetAsync($"/v1/responses/{id}", Ct))
            Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);

        var grain = silo.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IResponseGrain>(ConversationKey.Of(WeftDefaults.Tenant, id));
        var storage = silo.App.Services.GetRequiredKeyedService<IGrainStorage>(WeftStorage.Name);
        async Task<bool> Stored()
        {
            var state = new GrainState<ResponseState>();
            await storage.ReadStateAsync("response", grain.GetGrainId(), state);
            return state.RecordExists;
        }
        Assert.True(await Stored());
        // only the store is polled: the activation's own timer clears the state, not a read
        await Http.WaitUntil(async () => !await Stored(), "the response expired", Ct);

        using var gone = await silo.Http.GetAsync($"/v1/responses/{id}", Ct);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        var next = await silo.Http.PostAsync("/v1/responses",
            $$"""{"input":"Again.","max_output_tokens":2,"previous_response_id":"{{id}}"}""", Ct);
        Assert.Equal(HttpStatusCode.BadRequest, next.Status);
        Assert.Equal("previous_response_id", (string?)next.Body["error"]!["param"]);
    }

    [Fact]
    public async Task A_response_read_after_its_ttl_is_gone_on_that_read()
    {
        var (_, body) = await silo.Http.PostAsync("/v1/responses",
            """{"input":"Brief.","max_output_tokens":2}""", Ct);
        string id = (string)body["id"]!;
        var grain = silo.App.Services.GetRequiredService<IGrainFactory>()
            .GetGrain<IResponseGrain>(ConversationKey.Of(WeftDefaults.Tenant, id));
        Assert.NotNull(await grain.GetAsync());
        // past the TTL with a margin: Task.Delay counts a coarse millisecond tick while the grain compares
        // DateTime.UtcNow, and on CI's machine a delay of exactly the TTL once ended before the TTL had passed
        await Task.Delay(TimeSpan.FromSeconds(2.5), Ct);
        // whether or not the timer came first, the first read after the TTL finds nothing, and delete has nothing
        Assert.Null(await grain.GetAsync());
        using var delete = await silo.Http.DeleteAsync($"/v1/responses/{id}", Ct);
        Assert.Equal(HttpStatusCode.NotFound, delete.StatusCode);
    }
}
