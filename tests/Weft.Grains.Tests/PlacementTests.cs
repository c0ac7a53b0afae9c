using Weft.Abstractions;

namespace Weft.Grains.Tests;

public sealed class TwoSiloCluster : WeftCluster
{
    protected override int Silos => 2;
}

public sealed class PlacementTests(TwoSiloCluster cluster) : IClassFixture<TwoSiloCluster>
{
    [Fact]
    public async Task Conversations_spread_over_the_silos_and_stay_on_theirs()
    {
        var ct = TestContext.Current.CancellationToken;
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = 4, IgnoreEos = true };
        var conversations = Enumerable.Range(0, 16)
            .Select(i => cluster.Grains.GetGrain<IConversationGrain>($"placed-{i}")).ToArray();
        await Task.WhenAll(conversations.Select((c, i) => c.RunAsync(Turns.Chat($"Hello number {i}", sampling), ct)));
        var silos = await Task.WhenAll(conversations.Select(async c => (await c.GetHistoryAsync()).Silo));
        Assert.Equal(2, silos.Distinct().Count());

        var second = await Task.WhenAll(conversations.Select(c => c.RunAsync(Turns.Chat("Again", sampling), ct)));
        Assert.All(second, t => Assert.True(t.Usage.CachedTokens > 0, "a second turn finds its cache on its silo"));
        Assert.Equal(silos, await Task.WhenAll(conversations.Select(async c => (await c.GetHistoryAsync()).Silo)));
    }
}
