using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Weft.Abstractions;
using Weft.Testing;

namespace Weft.Silo.Tests;

/// <summary>
/// Two activations of one conversation writing to one PostgreSQL store, as after a partition: the cut-off silo still
/// holds its activation while the survivor has activated the conversation again. Two silos of one service in two
/// clusters (<c>--cluster-id</c>) never see each other, so each holds an activation of its own, and the test orders
/// their writes exactly. Needs WEFT_TEST_POSTGRES (scripts/start-postgres.sh).
/// </summary>
public sealed class StaleActivationTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static readonly string? Server = TestHosts.Postgres;
    const string Id = "split";

    readonly PostgresScratch _pg = new("weft-stale-");
    string _store = "";

    [Fact]
    public async Task A_turn_stored_first_by_the_cut_off_silo_is_the_one_the_resending_client_gets()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        var (cutOff, owner) = await TwoActivations();

        // The client sent the turn to the cut-off silo, which applied it, but the reply never reached the client. The
        // client resends it (same turn id) to the new owner, which has read the history before that write.
        var resent = Chat("And the mountains?", "turn-2", seed: 2);
        var lost = await cutOff.RunAsync(resent with { Sampling = resent.Sampling with { Seed = 1 } }, Ct);
        await Refused(owner, resent);

        // the next resend is served from the stored copy: what the client gets is what is stored
        var got = await owner.RunAsync(resent, Ct);
        Assert.Equal(lost.Text, got.Text);
        Assert.Equal(got.Text, (await Stored())[^1].Content);
    }

    [Fact]
    public async Task A_cut_off_silo_neither_overwrites_nor_extends_what_the_new_owner_stored()
    {
        Assert.SkipWhen(Server is null, TestHosts.NoPostgres);
        var (cutOff, owner) = await TwoActivations();

        // each turn of the cut-off silo comes after a write of the owner that it has not seen: one that replaces the
        // whole history (chat completions), one appended to it
        await owner.RunAsync(Chat("And the mountains?", "turn-2", seed: 2), Ct);
        await Refused(cutOff, Chat("And the rivers?", "turn-3", seed: 3) with { ReplaceHistory = true });
        var kept = await owner.RunAsync(Chat("And the hills?", "turn-4", seed: 4), Ct);
        await Refused(cutOff, Chat("And the rivers?", "turn-5", seed: 5));

        var stored = await Stored();
        Assert.Equal(6, stored.Count);
        Assert.Equal(kept.Text, stored[^1].Content);
        Assert.DoesNotContain(stored, m => m.Content == "And the rivers?");
        // the cut-off silo took the stored copy: its next turn goes on from the owner's history
        await cutOff.RunAsync(Chat("And the lakes?", "turn-6", seed: 6), Ct);
        var history = (await cutOff.GetHistoryAsync()).Messages;
        Assert.Equal(8, history.Count);
        Assert.Equal(kept.Text, history[5].Content);
    }

    static async Task Refused(IConversationGrain conversation, TurnRequest turn)
    {
        var refused = await Assert.ThrowsAsync<WeftException>(() => conversation.RunAsync(turn, Ct));
        Assert.Equal(WeftErrorCode.Superseded, refused.Code);
    }

    /// <summary>The conversation after a first turn, active on both silos with that turn's history.</summary>
    async Task<(IConversationGrain CutOff, IConversationGrain Owner)> TwoActivations()
    {
        await CreateDatabase();
        var cutOff = Conversation(await StartSilo("weft-a"));
        var owner = Conversation(await StartSilo("weft-b"));
        await cutOff.RunAsync(Chat("Tell me about the sea.", "turn-1", seed: 0), Ct);
        Assert.Equal(2, (await owner.GetHistoryAsync()).Messages.Count);
        return (cutOff, owner);
    }

    static TurnRequest Chat(string user, string turnId, ulong seed) => new()
    {
        Messages = [new ChatMessage("user", user)],
        // sampled: the two silos' replies to one turn differ, so the test tells which one was kept
        Sampling = new SamplingOptions { Temperature = 1, MaxTokens = 16, IgnoreEos = true, Seed = seed },
        TurnId = turnId,
    };

    static IConversationGrain Conversation(WebApplication silo) => silo.Services.GetRequiredService<IGrainFactory>()
        .GetGrain<IConversationGrain>(ConversationKey.Of(WeftDefaults.Tenant, Id));

    /// <summary>The stored history, as a fresh activation on a silo of a third cluster reads it.</summary>
    async Task<IReadOnlyList<ChatMessage>> Stored() =>
        (await Conversation(await StartSilo($"weft-reader-{_pg.Silos}")).GetHistoryAsync()).Messages;

    async Task CreateDatabase() => _store = await _pg.CreateDatabaseAsync(Ct);

    Task<WebApplication> StartSilo(string clusterId) => _pg.StartSiloAsync(_store, Ct, "--cluster-id", clusterId);

    public ValueTask DisposeAsync() => _pg.DisposeAsync();
}
