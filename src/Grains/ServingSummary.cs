using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Weft.Grains;

/// <summary>
/// The silo's periodic summary line, as vLLM logs one: prompt and generation throughput since the last line, requests
/// running and waiting, and each device's KV cache usage. Written only while there is work, so an idle silo's log
/// stays quiet.
/// </summary>
sealed partial class ServingSummary(ModelHost host, IOptions<ModelHostOptions> options, ILogger<ServingSummary> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        int seconds = options.Value.SummaryIntervalSeconds;
        if (seconds == 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(seconds));
        var last = new Dictionary<DeviceMetrics, (long Prompt, long Generation)>();
        long since = Stopwatch.GetTimestamp();
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                double elapsed = Stopwatch.GetElapsedTime(since).TotalSeconds;
                since = Stopwatch.GetTimestamp();
                long prompt = 0, generation = 0;
                int running = 0, waiting = 0;
                var kv = new List<string>();
                // a device whose BatchGrain was deactivated drops out; a new activation starts from zero
                var next = new Dictionary<DeviceMetrics, (long Prompt, long Generation)>();
                foreach (var (scheduler, device) in Metrics.Devices.Where(d => d.Device.Host == host)
                    .OrderBy(d => d.Device.Device, StringComparer.Ordinal))
                {
                    var before = last.GetValueOrDefault(device);
                    var now = (device.PromptTokens, device.GenerationTokens);
                    prompt += now.PromptTokens - before.Prompt;
                    generation += now.GenerationTokens - before.Generation;
                    next[device] = now;
                    running += scheduler.NumRunning;
                    waiting += scheduler.NumWaiting;
                    kv.Add($"{scheduler.KvCacheUsage:P1} (device {device.Device})");
                }
                last = next;
                if (prompt + generation + running + waiting == 0) continue;
                LogSummary(logger, host.ModelName, prompt / elapsed, generation / elapsed, running, waiting,
                    string.Join(", ", kv));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Model}: prompt throughput {PromptTokensPerSecond:F1} " +
        "tok/s, generation throughput {GenerationTokensPerSecond:F1} tok/s, {Running} running, {Waiting} waiting, " +
        "KV cache usage {KvCacheUsage}")]
    static partial void LogSummary(ILogger logger, string model, double promptTokensPerSecond,
        double generationTokensPerSecond, int running, int waiting, string kvCacheUsage);
}
