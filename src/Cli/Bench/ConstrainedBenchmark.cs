using System.Diagnostics.Metrics;
using Weft.GpuRuntime.Sampling.Grammar;

namespace Weft.Cli.Bench;

/// <summary>Figures of one concurrency level of `bench serve --json-schema`: the same load unconstrained and
/// constrained, and the constrained tokens' mask times.</summary>
public sealed record ConstrainedLevel(int Concurrency, double UnconstrainedTokensPerSecond,
    double ConstrainedTokensPerSecond, double Ratio, double MaskP50Micros, double MaskP99Micros, int Masks,
    int Failed);

/// <summary>
/// `weft bench serve --inprocess --json-schema FILE`: at each concurrency, one closed-loop pass unconstrained and one
/// with every reply constrained by the schema, back to back on the same silo, so their ratio is what constraining
/// costs. The masks' times come from the server's own histogram (weft_constraint_mask_time), read in process.
/// </summary>
static class ConstrainedBenchmark
{
    public static async Task<IReadOnlyList<ConstrainedLevel>> RunAsync(ILoadTarget plain, ILoadTarget constrained,
        int[] concurrency, int prompt, int gen, int requestsPerClient, TextWriter output)
    {
        using var masks = new MaskTimes();
        output.WriteLine($"closed loop: each client sends {requestsPerClient} requests back to back; {prompt}-token " +
            $"prompts, {gen} tokens each (ignore_eos), unconstrained then constrained by the schema");
        // both paths once at every level first, so neither pass pays for JIT tiering
        int round = 0;
        await CliProgress.RunAsync("warming up", async report =>
        {
            for (int i = 0; i < concurrency.Length; i++)
            {
                await ServeBenchmark.LoadAsync(plain, ++round, concurrency[i], 1, prompt, gen, _ => { });
                await ServeBenchmark.LoadAsync(constrained, ++round, concurrency[i], 1, prompt, gen, _ => { });
                report((i + 1.0) / concurrency.Length);
            }
            return round;
        });
        output.WriteLine($"{"clients",7} {"tok/s",9} {"schema",9} {"schema/plain",13} {"mask p50",9} {"p99",9} " +
            $"{"masks",7}");
        var levels = new List<ConstrainedLevel>();
        foreach (int c in concurrency)
        {
            var a = await CliProgress.RunAsync($"{c} clients, unconstrained",
                report => ServeBenchmark.LoadAsync(plain, ++round, c, requestsPerClient, prompt, gen, report));
            masks.Take();
            var b = await CliProgress.RunAsync($"{c} clients, constrained",
                report => ServeBenchmark.LoadAsync(constrained, ++round, c, requestsPerClient, prompt, gen, report));
            var micros = masks.Take();
            double plainRate = a.Tokens / a.Seconds, constrainedRate = b.Tokens / b.Seconds;
            var level = new ConstrainedLevel(c, plainRate, constrainedRate, constrainedRate / plainRate,
                ServeBenchmark.Percentile(micros, 50), ServeBenchmark.Percentile(micros, 99), micros.Count,
                a.Failed + b.Failed + a.Refused + b.Refused);
            levels.Add(level);
            output.WriteLine($"{c,7} {plainRate,9:F1} {constrainedRate,9:F1} {level.Ratio,13:P1} " +
                $"{level.MaskP50Micros,7:F1}µs {level.MaskP99Micros,7:F1}µs {micros.Count,7}");
            if (level.Failed > 0)
                output.WriteLine($"{"",7} {level.Failed} requests failed or were refused " +
                    $"(first: {a.FirstError ?? b.FirstError ?? "429"})");
        }
        return levels;
    }

    /// <summary>The mask times this process records, in microseconds.</summary>
    sealed class MaskTimes : IDisposable
    {
        readonly MeterListener _listener = new();
        readonly List<double> _micros = [];

        public MaskTimes()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == MaskTiming.MeterName && instrument.Name == MaskTiming.InstrumentName)
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<double>((_, seconds, _, _) =>
            {
                lock (_micros) _micros.Add(seconds * 1e6);
            });
            _listener.Start();
        }

        public List<double> Take()
        {
            lock (_micros)
            {
                var taken = new List<double>(_micros);
                _micros.Clear();
                return taken;
            }
        }

        public void Dispose() => _listener.Dispose();
    }
}
