using Weft.Abstractions;

namespace Weft.Grains.Tests;

/// <summary>A silo started with --logprobs-mode processed_logprobs.</summary>
public sealed class ProcessedLogprobsCluster : WeftCluster
{
    protected override ModelHostOptions Options => base.Options with { LogprobsMode = "processed_logprobs" };
}

public sealed class LogprobsModeTests(ProcessedLogprobsCluster cluster) : IClassFixture<ProcessedLogprobsCluster>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static async Task<TokenLogprob> FirstLogprob(IConversationGrain conversation, SamplingOptions sampling)
    {
        await foreach (var d in conversation.SendAsync(Turns.Chat("Name three colours.", sampling), Ct))
            if (d.Logprobs is [var first, ..]) return first;
        throw new InvalidOperationException("no logprobs came back");
    }

    [Fact]
    public async Task Processed_logprobs_renormalise_over_what_a_logit_bias_left()
    {
        var greedy = new SamplingOptions { Temperature = 0, MaxTokens = 1, Logprobs = 3 };
        var plain = await FirstLogprob(cluster.Grains.GetGrain<IConversationGrain>("plain"), greedy);
        int top = plain.TopIds[0];
        var banned = await FirstLogprob(cluster.Grains.GetGrain<IConversationGrain>("banned"),
            greedy with { LogitBias = new Dictionary<int, float> { [top] = -100 } });

        Assert.Equal(top, plain.Token);
        Assert.DoesNotContain(top, banned.TopIds);
        Assert.Equal(plain.TopIds[1], banned.Token);
        // with the top token banned, the next one's probability is p1 / (1 - p0)
        double expected = plain.TopLogprobs[1] - Math.Log(1 - Math.Exp(plain.TopLogprobs[0]));
        Assert.Equal(expected, banned.Logprob, 1e-4);
        Assert.Equal(banned.Logprob, banned.TopLogprobs[0]);
    }

    [Fact]
    public void An_unknown_logprobs_mode_is_refused_by_name()
    {
        var problems = new ModelHostOptions { LogprobsMode = "processed_logits" }.Validate().ToList();
        Assert.Contains("logprobs-mode must be raw_logprobs or processed_logprobs", problems);
        Assert.Empty(new ModelHostOptions { LogprobsMode = "processed_logprobs" }.Validate());
    }
}
