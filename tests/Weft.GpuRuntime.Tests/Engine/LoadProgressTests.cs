using Weft.GpuRuntime.Engine;
using Weft.Models;

namespace Weft.GpuRuntime.Tests.Engine;

/// <summary>What the CLI's progress bars are fed while a model is written and loaded: fractions that only grow, many
/// of them on the way, and 1 at the end.</summary>
public sealed class LoadProgressTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    [Fact]
    public void Creating_a_model_reports_a_growing_fraction_of_its_tensors_that_ends_at_1()
    {
        var fractions = new List<double>();
        DemoModel.Create(models.PathOf("progress.gguf"), TestModelFiles.Tiny, progress: fractions.Add);

        AssertProgress(fractions, TestModelFiles.Tiny.Layers);
    }

    [Fact]
    public void Loading_a_model_reports_a_growing_fraction_of_its_weights_that_ends_at_1()
    {
        var fractions = new List<double>();
        using var engine = InferenceEngine.Load(models.Write(TestModelFiles.Tiny),
            new EngineOptions { Engine = EngineKind.Cpu, KvBlocks = 16, MaxNumSeqs = 1, Threads = 1 },
            progress: f =>
            {
                // reported from the device thread while the test waits in Load
                lock (fractions) fractions.Add(f);
            });

        AssertProgress(fractions, TestModelFiles.Tiny.Layers);
    }

    /// <summary>Non-decreasing, within (0, 1], ending at 1, and at least one report per layer before the
    /// end.</summary>
    static void AssertProgress(List<double> fractions, int layers)
    {
        Assert.Equal(1.0, fractions[^1]);
        Assert.All(fractions, f => Assert.InRange(f, double.Epsilon, 1.0));
        for (int i = 1; i < fractions.Count; i++)
            Assert.True(fractions[i] >= fractions[i - 1], $"{fractions[i]} after {fractions[i - 1]}");
        Assert.True(fractions.Count(f => f < 1) >= layers, string.Join(", ", fractions));
    }
}
