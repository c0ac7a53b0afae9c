using ILGPU.Runtime.CPU;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Ilgpu;

/// <summary>
/// logit_bias and constraint masks in the ILGPU sampling kernel, against the CPU <see cref="Sampler"/> on the same
/// logits, in the CPU accelerator's one-thread shape, a GPU-like one (groups of 16 sharing a row) and on CUDA where
/// there is a device. The rows stay on the device: <see cref="IlgpuBackend.RowsSampledOnHost"/> counts those whose
/// logits came back instead.
/// </summary>
public sealed class DeviceBiasAndMaskTests(TestModelFiles models) : IClassFixture<TestModelFiles>
{
    const int Rows = 8;

    /// <summary>A constraint of fixed allowed tokens, with the bits the device gets.</summary>
    sealed class FixedMask(ulong[] allowed) : IBitmaskConstraint
    {
        public bool Allows(int t) => (allowed[t >> 6] & 1UL << t) != 0;

        public void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens)
        {
            for (int t = 0; t < logits.Length; t++)
                if (!Allows(t)) logits[t] = float.NegativeInfinity;
        }

        public void Mask(IReadOnlyList<int> tokens, int numPromptTokens, Span<ulong> bits) => allowed.CopyTo(bits);

        public void Accepted(int token) { }
    }

    /// <summary>The same constraint without bits: only its <see cref="Apply"/> knows the mask.</summary>
    sealed class LogitsOnly(FixedMask mask) : ITokenConstraint
    {
        public void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens) =>
            mask.Apply(logits, tokens, numPromptTokens);

        public void Accepted(int token) { }
    }

    /// <summary>The backend with a model's configuration (a vocabulary of 1000: the mask's last word is partial), a
    /// step of decodes, and logits written straight into its tensor.</summary>
    sealed class Device : IDisposable
    {
        public readonly IlgpuBackend Backend;
        public readonly int Vocab;
        readonly StepInputs _step;
        readonly DeviceTensor _logits;

        public Device(string path, string shape)
        {
            Backend = shape switch
            {
                "one-thread" => new IlgpuBackend(EngineKind.IlgpuCpu),
                "gpu-like" => new IlgpuBackend(new CPUDevice(4, 32, 1), new LaunchShape(4, 16, 64, 9)),
                _ => new IlgpuBackend(EngineKind.Cuda),
            };
            ModelConfig config;
            using (var file = GgufFile.Open(path)) config = ModelConfig.FromGguf(file);
            Vocab = config.VocabSize;
            Backend.AllocateKvCache(config, 64, 0, 4, KvCacheType.F32);
            _step = new StepInputs(Rows, Rows, 4, 4, 64, Vocab);
            _logits = Backend.Allocate((long)Rows * Vocab);
        }

        /// <summary>Samples each row's logits after its history on the device; the CPU sampler's tokens and
        /// log-probabilities of the same rows come back as the expected ones.</summary>
        public (int[] Actual, int[] Expected, StepLogprobs Logprobs, StepLogprobs ExpectedLogprobs) Sample(
            float[][] logits, SamplingParams[] sampling, int[][] histories, int numPromptTokens)
        {
            _step.Clear();
            for (int i = 0; i < logits.Length; i++)
                _step.Add(new StepItem(histories[i], histories[i].Length - 1, 1, [2 * i, 2 * i + 1], true,
                    sampling[i], sampling[i].Seed ?? 0, numPromptTokens));
            Backend.BeginStep(_step);
            IlgpuBackend.Write(_logits, [.. logits.SelectMany(l => l)]);
            var actual = new int[logits.Length];
            var logprobs = new StepLogprobs(Rows);
            Backend.Sample(_logits, Vocab, actual, logprobs);

            var sampler = new Sampler(Vocab);
            var expected = new int[logits.Length];
            var expectedLogprobs = new StepLogprobs(Rows);
            for (int i = 0; i < logits.Length; i++)
            {
                float[] row = [.. logits[i]];
                var p = sampling[i];
                expected[i] = p.Logprobs is { } k
                    ? sampler.Sample(row, p, p.Seed ?? 0, histories[i], numPromptTokens,
                        expectedLogprobs.Ids(i)[..k], expectedLogprobs.Values(i)[..k],
                        out expectedLogprobs.Sampled[i])
                    : sampler.Sample(row, p, p.Seed ?? 0, histories[i], numPromptTokens);
            }
            return (actual, expected, logprobs, expectedLogprobs);
        }

        public void Dispose() => Backend.Dispose();
    }

    Device Open(string shape) => new(models.Write(TestModelFiles.Tiny with { VocabSize = 1000 }), shape);

    static float[] RandomLogits(int vocab, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, vocab).Select(_ => (random.NextSingle() - 0.5f) * 8)];
    }

    static int[] History(int i) => [1, 10 + i, 20 + i, 20 + i, 30 + i];

    [Theory]
    [InlineData("one-thread")]
    [InlineData("gpu-like")]
    public void A_token_banned_by_logit_bias_never_appears_and_one_raised_by_100_always_wins(string shape)
    {
        using var device = Open(shape);
        for (int step = 0; step < 6; step++)
        {
            var logits = Enumerable.Range(0, Rows).Select(i => RandomLogits(device.Vocab, 100 * step + i)).ToArray();
            // the banned token is the row's most likely; the raised one its least likely
            var banned = logits.Select(l => Sampler.ArgMax(l)).ToArray();
            var raised = logits.Select(l => Array.IndexOf(l, l.Min())).ToArray();
            var sampling = Enumerable.Range(0, Rows).Select(i => new SamplingParams
            {
                Temperature = 1.5f,
                TopK = i % 3 == 0 ? 40 : 0,
                Seed = (ulong)(step * Rows + i),
                LogitBias = i % 2 == 0
                    ? new Dictionary<int, float> { [banned[i]] = -100, [(banned[i] + 1) % device.Vocab] = 2.5f }
                    : new Dictionary<int, float> { [raised[i]] = 100 },
            }).ToArray();
            var (actual, expected, _, _) = device.Sample(logits, sampling, [.. Enumerable.Range(0, Rows)
                .Select(History)], 3);

            Assert.Equal(expected, actual);
            for (int i = 0; i < Rows; i++)
                if (i % 2 == 0) Assert.NotEqual(banned[i], actual[i]);
                else Assert.Equal(raised[i], actual[i]);
            Assert.Equal(0, device.Backend.RowsSampledOnHost);
        }
    }

    [Theory]
    [InlineData("one-thread")]
    [InlineData("gpu-like")]
    public void Only_tokens_a_constraint_mask_allows_are_sampled_on_the_device(string shape)
    {
        using var device = Open(shape);
        // about one token in ten, among them the vocabulary's last (in the mask's partial word)
        var random = new Random(7);
        var bits = new ulong[(device.Vocab + 63) / 64];
        foreach (int t in Enumerable.Range(0, device.Vocab).Where(t => t == device.Vocab - 1 || random.Next(10) == 0))
            bits[t >> 6] |= 1UL << t;
        var mask = new FixedMask(bits);
        var seen = new HashSet<int>();
        for (int step = 0; step < 8; step++)
        {
            var logits = Enumerable.Range(0, Rows).Select(i => RandomLogits(device.Vocab, 1000 + 10 * step + i))
                .ToArray();
            logits[0][device.Vocab - 1] = 50;
            var sampling = Enumerable.Range(0, Rows).Select(i => new SamplingParams
            {
                Temperature = i == 0 ? 0 : 2f,
                TopP = i % 2 == 0 ? 0.9f : 1,
                Seed = (ulong)(step * Rows + i),
                Constraint = mask,
            }).ToArray();
            var (actual, expected, _, _) = device.Sample(logits, sampling, [.. Enumerable.Range(0, Rows)
                .Select(History)], 3);

            Assert.Equal(expected, actual);
            Assert.All(actual, t => Assert.True(mask.Allows(t), $"token {t} is not allowed"));
            Assert.Equal(device.Vocab - 1, actual[0]);
            Assert.Equal(0, device.Backend.RowsSampledOnHost);
            seen.UnionWith(actual);
        }
        // the draws spread over the allowed tokens rather than repeat one
        Assert.True(seen.Count > 20, $"only {seen.Count} distinct tokens");
    }

    /// <summary>Masked, biased, penalised and plain rows in one launch, with raw and processed log-probabilities: the
    /// tokens and values of the CPU sampler. A row raised by 100 on a token its penalties also change reports that
    /// token's raw log-probability; a constraint that has no bits is the only row sampled on the host.</summary>
    [Theory]
    [InlineData("one-thread")]
    [InlineData("gpu-like")]
    public void A_mixed_batch_of_masked_biased_penalised_and_plain_rows_matches_the_cpu_sampler(string shape) =>
        AssertMixedBatch(shape);

    [Fact]
    [Trait("Device", "cuda")]
    public void Cuda_samples_a_mixed_batch_of_masked_biased_penalised_and_plain_rows_as_the_cpu_sampler()
    {
        Assert.SkipUnless(IlgpuBackend.CudaDeviceCount() > 0,
            "no CUDA device on this host (scripts/gpu-check.sh runs these checks on a GPU host)");
        AssertMixedBatch("cuda");
    }

    void AssertMixedBatch(string shape)
    {
        using var device = Open(shape);
        var random = new Random(3);
        var bits = new ulong[(device.Vocab + 63) / 64];
        for (int t = 0; t < device.Vocab; t++)
            if (random.Next(4) == 0) bits[t >> 6] |= 1UL << t;
        var mask = new FixedMask(bits);
        var histories = Enumerable.Range(0, Rows).Select(History).ToArray();
        for (int step = 0; step < 4; step++)
        {
            ulong seed = (ulong)step * 31;
            SamplingParams[] sampling =
            [
                new() { Temperature = 0.9f, Seed = seed, Constraint = mask, Logprobs = 5 },
                new()
                {
                    Temperature = 1.2f, TopK = 50, Seed = seed + 1, LogitBias = new Dictionary<int, float>
                    {
                        [5] = 3, [6] = -100, [20 + 1] = 100,
                    },
                    RepetitionPenalty = 1.3f, PresencePenalty = 0.5f, Logprobs = 4,
                },
                new() { Temperature = 1.1f, MinP = 0.05f, TopP = 0.95f, Seed = seed + 2 },
                new() { Temperature = 0.8f, Seed = seed + 3, RepetitionPenalty = 1.4f, FrequencyPenalty = 0.7f },
                new()
                {
                    Temperature = 0, Constraint = mask, LogitBias = new Dictionary<int, float> { [7] = 4 },
                    FrequencyPenalty = 0.5f, Logprobs = 3, LogprobsMode = LogprobsMode.Processed,
                },
                new()
                {
                    Temperature = 1f, TopP = 0.8f, Seed = seed + 5, Constraint = mask, RepetitionPenalty = 1.2f,
                    Logprobs = 2,
                },
                new() { Temperature = 1f, Seed = seed + 6, Constraint = new LogitsOnly(mask) },
                SamplingParams.Greedy(1),
            ];
            var logits = Enumerable.Range(0, Rows).Select(i => RandomLogits(device.Vocab, 5000 + 10 * step + i))
                .ToArray();
            var (actual, expected, logprobs, expectedLogprobs) = device.Sample(logits, sampling, histories, 3);

            Assert.Equal(expected, actual);
            Assert.Equal(20 + 1, actual[1]);
            Assert.True(mask.Allows(actual[0]) && mask.Allows(actual[4]) && mask.Allows(actual[5]));
            Assert.Equal(1, device.Backend.RowsSampledOnHost);
            for (int i = 0; i < Rows; i++)
            {
                if (sampling[i].Logprobs is not { } k) continue;
                Assert.Equal(expectedLogprobs.Sampled[i], logprobs.Sampled[i], 1e-4);
                Assert.Equal(expectedLogprobs.Ids(i)[..k].ToArray(), logprobs.Ids(i)[..k].ToArray());
                for (int j = 0; j < k; j++)
                    Assert.Equal(expectedLogprobs.Values(i)[j], logprobs.Values(i)[j], 1e-4);
            }
            // the raised token's raw log-probability: its logit before the bias and the penalties
            double max = logits[1].Max(), lse = max + Math.Log(logits[1].Sum(l => Math.Exp(l - max)));
            Assert.Equal(logits[1][20 + 1] - lse, logprobs.Sampled[1], 1e-4);
        }
    }
}
