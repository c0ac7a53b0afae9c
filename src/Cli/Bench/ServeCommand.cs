using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Weft.Abstractions;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Grains;
using Weft.LlamaCpp;
using Weft.Models;

namespace Weft.Cli.Bench;

public sealed record ServeBenchOptions(string? Url, string? ModelPath, EngineKind Engine, int[] Concurrency, int Prompt,
    int Gen, int Requests, string? ApiKey, string? JsonPath, string? ChartPath, int Threads, bool PeerLlamaCpp = false,
    string? JsonSchemaPath = null);

static class ServeCommand
{
    public static async Task<int> RunAsync(ServeBenchOptions o, TextWriter output)
    {
        if (o.JsonSchemaPath is not null) return await ConstrainedAsync(o, output);
        IReadOnlyList<ServeLevel> levels;
        string title;
        if (o.Url is not null)
        {
            var target = await HttpTarget.ConnectAsync(o.Url, o.ApiKey);
            title = $"weft bench serve --url {o.Url} ({target.Model})";
            output.WriteLine(title);
            var peer = o.PeerLlamaCpp ? PeerFigures(o.ModelPath!, o, output) : null;
            levels = await ServeBenchmark.RunAsync(target, o.Concurrency, o.Prompt, o.Gen, o.Requests, null, null,
                output, peer is null ? null : c => peer[c]);
        }
        else (title, levels) = await InProcessAsync(o, output);

        if (o.JsonPath is not null)
            ServeBenchmark.WriteJson(o.JsonPath, new { title, o.Prompt, o.Gen, o.Requests, levels });
        if (o.ChartPath is not null) SvgChart.Write(o.ChartPath, title, levels);
        int requests = levels.Sum(l => l.Requests), refused = levels.Sum(l => l.Refused),
            failed = levels.Sum(l => l.Failed);
        string? firstError = levels.Select(l => l.FirstError).FirstOrDefault(e => e is not null);
        FailIfNoneSucceeded(requests, refused + failed, $"{refused} of {requests} refused (429), {failed} failed" +
            (firstError is null ? "" : $" (first: {firstError})"));
        return 0;
    }

    /// <summary>A run whose every request was refused or failed measured nothing: the figures printed per level say
    /// how each went, and the exit code says that the run as a whole did not, so scripts and CI notice.</summary>
    static void FailIfNoneSucceeded(int requests, int unsuccessful, string how)
    {
        if (requests > 0 && unsuccessful == requests)
            throw new InvalidOperationException($"no request succeeded: {how}");
    }

    static EngineOptions EngineOptionsFor(ServeBenchOptions o) => new()
    {
        Engine = o.Engine,
        MaxNumSeqs = Math.Max(o.Concurrency.Max(), 1),
        MaxNumBatchedTokens = Math.Max(512, o.Concurrency.Max()),
        KvBlocks = o.Concurrency.Max() * ((o.Prompt + o.Gen + 16) / 16 + 2) + 64,
        Threads = o.Threads,
    };

    /// <summary>
    /// The same load unconstrained and constrained by a JSON schema at each level, with the masks' times (see
    /// <see cref="ConstrainedBenchmark"/>).
    /// </summary>
    static async Task<int> ConstrainedAsync(ServeBenchOptions o, TextWriter output)
    {
        string schema = File.ReadAllText(o.JsonSchemaPath!);
        try
        {
            using var doc = JsonDocument.Parse(schema);
            JsonGrammar.FromSchema(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or SchemaException)
        {
            throw new ArgumentException($"--json-schema {o.JsonSchemaPath}: {e.Message}");
        }
        string model = o.ModelPath ?? DemoModel.Cached("tiny", DemoModel.DefaultCacheDirectory);
        string title = $"weft bench serve --inprocess --model {Path.GetFileName(model)} ({o.Engine.Name()} engine) " +
            $"--json-schema {Path.GetFileName(o.JsonSchemaPath)}";
        output.WriteLine(title);
        using var host = await StartSiloAsync(model, EngineOptionsFor(o), o.Concurrency.Max());
        try
        {
            var grains = host.Services.GetRequiredService<IGrainFactory>();
            var levels = await ConstrainedBenchmark.RunAsync(new GrainTarget(grains), new GrainTarget(grains, schema),
                o.Concurrency, o.Prompt, o.Gen, o.Requests, output);
            if (o.JsonPath is not null)
                ServeBenchmark.WriteJson(o.JsonPath, new { title, o.Prompt, o.Gen, o.Requests, levels });
            // each level ran its requests twice, unconstrained and constrained; Failed counts refusals too
            int requests = levels.Sum(l => 2 * l.Concurrency * o.Requests), failed = levels.Sum(l => l.Failed);
            FailIfNoneSucceeded(requests, failed, $"all {requests} failed or were refused");
            return 0;
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>A silo in this process serving <paramref name="model"/> on one device, started and ready.</summary>
    static async Task<IHost> StartSiloAsync(string model, EngineOptions engineOptions, int maxClients)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(siloPort: FreePort(), gatewayPort: FreePort());
            silo.AddMemoryGrainStorage(WeftStorage.Name);
            // one device, like the engine-only figures it stands beside
            silo.AddWeft(new ModelHostOptions
            {
                Model = model, Engine = engineOptions, MaxWaiting = 4 * maxClients, Devices = 1
            });
        });
        var host = builder.Build();
        await CliProgress.RunAsync("starting a silo", async _ =>
        {
            await host.StartAsync();
            await host.Services.GetRequiredService<ModelHost>().Ready;
            return host;
        });
        return host;
    }

    static async Task<(string, IReadOnlyList<ServeLevel>)> InProcessAsync(ServeBenchOptions o, TextWriter output)
    {
        string model = o.ModelPath ?? DemoModel.Cached("tiny", DemoModel.DefaultCacheDirectory);
        int maxClients = o.Concurrency.Max();
        var engineOptions = EngineOptionsFor(o);
        string title = $"weft bench serve --inprocess --model {Path.GetFileName(model)} ({o.Engine.Name()} engine)";
        output.WriteLine(title);
        var peer = o.PeerLlamaCpp ? PeerFigures(model, o, output) : null;

        // The engine alone first, on its own instance, so the two never compete for the cores.
        var engineFigures = new Dictionary<int, double>();
        using (var engine = CliProgress.Run($"loading {Path.GetFileName(model)}",
            report => InferenceEngine.Load(model, engineOptions, progress: report)))
        {
            output.WriteLine($"engine     {engine.Description}");
            // every level once to warm up (JIT tiers, caches), then the median of three
            CliProgress.Run("engine alone", report =>
            {
                int runs = 0, total = 4 * o.Concurrency.Length;
                foreach (int c in o.Concurrency)
                {
                    ServeBenchmark.EngineOnly(engine, c, o.Prompt, o.Gen, 1);
                    report(++runs / (double)total);
                }
                foreach (int c in o.Concurrency)
                    engineFigures[c] = Enumerable.Range(0, 3)
                        .Select(_ =>
                        {
                            double tokensPerSecond = ServeBenchmark.EngineOnly(engine, c, o.Prompt, o.Gen, o.Requests);
                            report(++runs / (double)total);
                            return tokensPerSecond;
                        })
                        .Order().ElementAt(1);
                return runs;
            });
        }

        using var host = await StartSiloAsync(model, engineOptions, maxClients);
        try
        {
            var grains = host.Services.GetRequiredService<IGrainFactory>();
            var silo = host.Services.GetRequiredService<Orleans.Runtime.ILocalSiloDetails>().SiloAddress;
            var batch = grains.GetGrain<IBatchGrain>(new DeviceKey(silo, 0).ToString());
            var levels = await ServeBenchmark.RunAsync(new GrainTarget(grains), o.Concurrency, o.Prompt, o.Gen,
                o.Requests,
                c => engineFigures[c],
                batch.GetStatsAsync,
                output, peer is null ? null : c => peer[c]);
            return (title, levels);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>
    /// llama.cpp decoding as many sequences as each level has clients, on the same file, before any load runs so the
    /// two never share the cores: its batched decode without prefill or delivery, the figure the served path is held
    /// to. Generated tokens/s from the median step, as `bench engine --peer` reports it.
    /// </summary>
    static Dictionary<int, double> PeerFigures(string model, ServeBenchOptions o, TextWriter output)
    {
        int most = o.Concurrency.Max();
        using var peer = CliProgress.Run("loading llama.cpp", _ => new LlamaCppModel(model,
            contextSize: most * (o.Prompt + o.Gen + 8), batchSize: 512, threads: o.Threads, sequences: most));
        var figures = new Dictionary<int, double>();
        foreach (int c in o.Concurrency)
        {
            var steps = CliProgress.Run($"llama.cpp, {c} sequences", _ =>
                peer.DecodeStepTimes(c, o.Prompt, o.Gen, EngineBenchmark.WarmUpSteps, EngineBenchmark.WarmUpTime));
            figures[c] = c / steps.Order().ElementAt(steps.Count / 2);
        }
        output.WriteLine($"peer       llama.cpp: batched decode of as many sequences as clients " +
            $"({o.Gen} steps after {o.Prompt}-token prompts, median step)");
        return figures;
    }

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
