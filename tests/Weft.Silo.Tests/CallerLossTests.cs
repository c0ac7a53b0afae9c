using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Weft.Abstractions;
using Weft.Testing;

namespace Weft.Silo.Tests;

/// <summary>
/// A turn whose API edge went away with its silo, as in the multi-host test: two silos of one cluster in this process
/// on the test PostgreSQL, the edge on one, the conversation on the other. The edge reads the first delta and its
/// silo stops without ending the reply, as a silo killed mid-stream does. Needs WEFT_TEST_POSTGRES
/// (scripts/start-postgres.sh).
/// </summary>
public sealed class CallerLossTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static readonly string? Server = TestHosts.Postgres;

    readonly PostgresScratch _pg = new("weft-caller-");

    [Fact]
    public async Task A_turn_whose_edge_silo_is_gone_frees_its_conversation_for_the_next_turn_within_seconds()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        string store = await CreateDatabase();
        var edge = await StartSilo(store);
        var owner = await StartSilo(store);
        var ownerAddress = owner.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        await Http.WaitUntil(() => Task.FromResult(owner.Services.GetRequiredService<IClusterMembershipService>()
            .CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active) == 2), "both silos active", Ct);

        // new conversations go to either silo: talk to them until one lives on the owner
        string? id = null;
        for (int i = 0; i < 64 && id is null; i++)
        {
            var conversation = Conversation(owner, $"orphan-{i}");
            await conversation.RunAsync(Chat("Tell me about the sea.", 8), Ct);
            if ((await conversation.GetHistoryAsync()).Silo == ownerAddress.ToString()) id = $"orphan-{i}";
        }
        Assert.NotNull(id);

        // the edge opens a long turn as the API does and reads its first delta; then its silo goes, the reply unended
        var deltas = await ClusterFailover.OpenAsync(Conversation(edge, id), Chat("And the mountains?", 900),
            edge.Services.GetRequiredService<SiloOptions>(),
            edge.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress, Ct);
        Assert.NotNull(deltas.Current);
        await edge.StopAsync(Ct);

        // Orleans would drop the unread reply only after 30 to 60 s; until then every turn was a 409
        var waited = Stopwatch.StartNew();
        var conversationOnOwner = Conversation(owner, id);
        while (true)
        {
            try
            {
                await conversationOnOwner.RunAsync(Chat("And the rivers?", 8), Ct);
                break;
            }
            catch (WeftException e) when (e.Code == WeftErrorCode.Conflict && waited.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(100, Ct);
            }
        }
        Assert.InRange(waited.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        // the orphaned turn left nothing in the history
        Assert.Equal(["Tell me about the sea.", null, "And the rivers?", null],
            (await conversationOnOwner.GetHistoryAsync()).Messages.Select(m => m.Role == "user" ? m.Content : null));
    }

    static TurnRequest Chat(string user, int maxTokens) => new()
    {
        Messages = [new ChatMessage("user", user)],
        Sampling = new SamplingOptions { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true },
    };

    static IConversationGrain Conversation(WebApplication silo, string id) => silo.Services
        .GetRequiredService<IGrainFactory>().GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, id));

    Task<string> CreateDatabase() => _pg.CreateDatabaseAsync(Ct);

    Task<WebApplication> StartSilo(string store) => _pg.StartSiloAsync(store, Ct);

    public ValueTask DisposeAsync() => _pg.DisposeAsync();
}
