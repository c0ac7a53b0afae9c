using Weft.Abstractions;

namespace Weft.Grains.Tests;

/// <summary>A silo with two devices (two cpu engines, one BatchGrain each).</summary>
public sealed class TwoDeviceCluster : WeftCluster
{
    protected override ModelHostOptions Options => base.Options with { Devices = 2 };
}

public sealed class DevicesTests(TwoDeviceCluster cluster) : IClassFixture<TwoDeviceCluster>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static TurnRequest Request(int i) => new()
    {
        PromptTokenIds = [1, .. Enumerable.Range(0, 4 + i % 7).Select(j => 300 + (i * 37 + j * 11) % 600)],
        Sampling = new SamplingOptions { Temperature = 0, MaxTokens = 6 + i % 5, IgnoreEos = true },
    };

    [Fact]
    public async Task Conversations_spread_over_the_devices_and_stay_on_theirs()
    {
        const int n = 24;
        Assert.Equal(2, cluster.Host.Engines.Count);
        var alone = new TurnResult[n];
        for (int i = 0; i < n; i++)
            alone[i] = await cluster.Grains.GetGrain<IConversationGrain>($"dev-alone-{i}").RunAsync(Request(i), Ct);
        var before = await Task.WhenAll(Enumerable.Range(0, 2)
            .Select(d => cluster.BatchGrain(device: d).GetStatsAsync()));

        var conversations = Enumerable.Range(0, n)
            .Select(i => cluster.Grains.GetGrain<IConversationGrain>($"dev-together-{i}")).ToArray();
        var together = await Task.WhenAll(conversations.Select((c, i) => c.RunAsync(Request(i), Ct)));
        for (int i = 0; i < n; i++) Assert.Equal(alone[i].TokenIds, together[i].TokenIds);

        var after = await Task.WhenAll(Enumerable.Range(0, 2)
            .Select(d => cluster.BatchGrain(device: d).GetStatsAsync()));
        long[] generated = [.. Enumerable.Range(0, 2)
            .Select(d => after[d].TokensGenerated - before[d].TokensGenerated)];
        Assert.Equal(together.Sum(t => (long)t.Usage.CompletionTokens), generated.Sum());
        Assert.All(generated, g => Assert.True(g > 0,
            $"both devices should have served turns (tokens per device: {string.Join(", ", generated)})"));

        // a second turn finds its KV cache on the device that served the first
        var second = await Task.WhenAll(conversations.Select((c, i) => c.RunAsync(new TurnRequest
        {
            PromptTokenIds = [.. together[i].PromptTokenIds, .. together[i].TokenIds, 500, 501],
            Sampling = Request(i).Sampling,
        }, Ct)));
        for (int i = 0; i < n; i++)
            Assert.Equal(together[i].Usage.PromptTokens + together[i].Usage.CompletionTokens - 1,
                second[i].Usage.CachedTokens);
    }
}
