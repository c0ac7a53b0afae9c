using Weft.GpuRuntime.Engine;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Engine;

public sealed class StepInputsTests
{
    [Fact]
    public void Block_and_token_ids_outside_the_pool_or_vocabulary_are_refused_before_any_kernel_sees_them()
    {
        var step = new StepInputs(maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4, blockSize: 4, numBlocks: 8,
            vocabSize: 100);
        var greedy = SamplingParams.Greedy(1);
        var e = Assert.Throws<ArgumentException>(
            () => step.Add(new StepItem([1, 2, 3], 0, 3, [8], true, greedy, 0, 3)));
        Assert.Contains("block 8 is outside the KV pool of 8 blocks", e.Message);
        e = Assert.Throws<ArgumentException>(() => step.Add(new StepItem([1, 100, 3], 0, 3, [7], true, greedy, 0, 3)));
        Assert.Contains("token id 100 is outside the vocabulary", e.Message);
        Assert.Equal((0, 0), (step.NumSeqs, step.NumTokens)); // a refused item leaves the step as it was

        step.Add(new StepItem([1, 99, 3, 4, 5], 0, 5, [7, 0], true, greedy, 0, 5));
        Assert.Equal([28, 29, 30, 31, 0], step.SlotMapping[..5]);
    }

    [Fact]
    public void A_window_pool_s_items_bring_a_window_table_that_never_writes_the_zero_block()
    {
        var step = new StepInputs(maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4, blockSize: 4, numBlocks: 8,
            vocabSize: 100, numWindowBlocks: 4);
        var greedy = SamplingParams.Greedy(1);
        var e = Assert.Throws<ArgumentException>(
            () => step.Add(new StepItem([1, 2, 3], 0, 3, [7], true, greedy, 0, 3)));
        Assert.Contains("needs its window block table", e.Message);
        e = Assert.Throws<ArgumentException>(
            () => step.Add(new StepItem([1, 2, 3], 0, 3, [7], true, greedy, 0, 3, [4])));
        Assert.Contains("block 4 is outside the window pool of 4 blocks", e.Message);
        e = Assert.Throws<ArgumentException>(
            () => step.Add(new StepItem([1, 2, 3, 4, 5], 4, 1, [7, 6], true, greedy, 0, 5, [3, 0])));
        Assert.Contains("entry 1 of the window table, written now, is the zero block", e.Message);

        // entries before the window may name the zero block; the written ones may not
        step.Add(new StepItem([1, 2, 3, 4, 5, 6], 4, 2, [7, 6], true, greedy, 0, 6, [0, 3]));
        Assert.Equal([24, 25], step.SlotMapping[..2]);
        Assert.Equal([12, 13], step.WindowSlotMapping[..2]);
    }
}
