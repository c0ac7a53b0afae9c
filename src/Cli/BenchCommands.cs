using System.CommandLine;
using Weft.Cli.Bench;
using Weft.GpuRuntime.Engine;

namespace Weft.Cli;

static class BenchCommands
{
    public static Command Create()
    {
        var bench = new Command("bench", "measure throughput and latency");
        bench.Subcommands.Add(Engine());
        bench.Subcommands.Add(Serve());
        return bench;
    }

    static Command Engine()
    {
        var model = new Option<string>("--model") { Description = "GGUF file", Required = true };
        var engine = new Option<string>("--engine")
        { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "cpu" };
        var batch = new Option<string>("--batch")
        { Description = "batch sizes, comma-separated", DefaultValueFactory = _ => "1,4,16,32" };
        var gen = new Option<int>("--gen")
        { Description = "decode steps per batch size", DefaultValueFactory = _ => 32 };
        var prompt = new Option<int>("--prompt")
        { Description = "prompt tokens per sequence before decoding", DefaultValueFactory = _ => 32 };
        var prefill = new Option<int>("--prefill")
        {
            Description = "also time the prefill of one prompt of this many tokens (0: skip)",
            DefaultValueFactory = _ => 512
        };
        var peer = new Option<string?>("--peer")
        { Description = "run the same measurements with llama.cpp (LLamaSharp) on the same file: llama.cpp" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for both engines (0: all cores)" };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON to this file" };
        var profile = new Option<bool>("--profile")
        { Description = "also print where a decode step's time goes, per kind of kernel (cpu engine)" };
        var bandwidth = new Option<double?>("--bandwidth")
        {
            Description = "memory bandwidth in GB/s for the roofline instead of measuring it " +
                "(e.g. 4800 for an H200's HBM)"
        };
        var cmd = new Command("engine",
            "decode tokens/s of the engine alone at each batch size, beside llama.cpp and the memory roofline")
            { model, engine, batch, gen, prompt, prefill, peer, threads, json, profile, bandwidth };
        cmd.SetAction(r =>
        {
            string? p = r.GetValue(peer);
            if (p is not null && p != "llama.cpp")
                throw new ArgumentException($"unknown peer '{p}' (supported: llama.cpp)");
            int[] batches = Ints(r.GetValue(batch)!, "--batch");
            return EngineBenchmark.Run(new EngineBenchOptions(r.GetValue(model)!,
                EngineKinds.Parse(r.GetValue(engine)!), batches,
                Positive(r.GetValue(gen), "--gen"), Positive(r.GetValue(prompt), "--prompt"), r.GetValue(prefill),
                p is not null,
                r.GetValue(threads), r.GetValue(json), r.GetValue(profile), r.GetValue(bandwidth) is { } gbs
                ? Positive(gbs, "--bandwidth") * 1e9 : null), Console.Out);
        });
        return cmd;
    }

    static Command Serve()
    {
        var url = new Option<string?>("--url")
        { Description = "a running server's base URL (OpenAI-compatible HTTP API)" };
        var inprocess = new Option<bool>("--inprocess")
        { Description = "host a silo in this process and drive conversations through grains" };
        var model = new Option<string?>("--model")
        { Description = "GGUF file for --inprocess (default: the demo model)" };
        var engine = new Option<string>("--engine")
        { Description = "engine for --inprocess: auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "cpu" };
        var concurrency = new Option<string>("--concurrency")
        { Description = "concurrent clients, comma-separated", DefaultValueFactory = _ => "1,4,16,32" };
        var prompt = new Option<int>("--prompt")
        { Description = "prompt tokens per request", DefaultValueFactory = _ => 32 };
        var gen = new Option<int>("--gen")
        { Description = "tokens generated per request", DefaultValueFactory = _ => 32 };
        var requests = new Option<int>("--requests")
        { Description = "requests each client sends back to back", DefaultValueFactory = _ => 2 };
        var apiKey = new Option<string?>("--api-key") { Description = "bearer token for --url" };
        var json = new Option<string?>("--json") { Description = "write the figures as JSON to this file" };
        var chart = new Option<string?>("--chart")
        { Description = "write an SVG chart of throughput and latency against concurrency" };
        var threads = new Option<int>("--threads")
        { Description = "CPU threads for --inprocess and for the peer (0: all cores)" };
        var peer = new Option<string?>("--peer")
        {
            Description = "also time llama.cpp (LLamaSharp) decoding as many sequences as there are clients, on the " +
                "--model file: llama.cpp"
        };
        var jsonSchema = new Option<string?>("--json-schema")
        {
            Description = "with --inprocess: run each level unconstrained and with every reply constrained by the " +
                "JSON schema in this file; print both throughputs, their ratio and the mask time per token (p50, p99)"
        };
        var cmd = new Command("serve",
            "load a server with concurrent streaming requests: tokens/s, TTFT and ITL percentiles at each concurrency")
        {
            url, inprocess, model, engine, concurrency, prompt, gen, requests, apiKey, json, chart, threads, peer,
            jsonSchema,
        };
        cmd.SetAction(async (r, ct) =>
        {
            if ((r.GetValue(url) is null) == !r.GetValue(inprocess))
                throw new ArgumentException("give exactly one of --url and --inprocess");
            string? p = r.GetValue(peer);
            if (p is not null && p != "llama.cpp")
                throw new ArgumentException($"unknown peer '{p}' (supported: llama.cpp)");
            if (p is not null && r.GetValue(url) is not null && r.GetValue(model) is null)
                throw new ArgumentException("--peer with --url needs --model: the GGUF file the server serves");
            string? schema = r.GetValue(jsonSchema);
            if (schema is not null && (r.GetValue(url) is not null || p is not null || r.GetValue(chart) is not null))
                throw new ArgumentException("--json-schema runs with --inprocess, which reads the masks' times in " +
                    "process, and without --peer or --chart");
            var o = new ServeBenchOptions(r.GetValue(url), r.GetValue(model), EngineKinds.Parse(r.GetValue(engine)!),
                Ints(r.GetValue(concurrency)!, "--concurrency"),
                Positive(r.GetValue(prompt), "--prompt"), Positive(r.GetValue(gen), "--gen"),
                Positive(r.GetValue(requests), "--requests"),
                r.GetValue(apiKey), r.GetValue(json), r.GetValue(chart), r.GetValue(threads), p is not null, schema);
            return await ServeCommand.RunAsync(o, Console.Out);
        });
        return cmd;
    }

    public static int[] Ints(string csv, string option, bool allowZero = false)
    {
        try
        {
            var xs = csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(int.Parse).ToArray();
            return xs.Length > 0 && xs.All(x => x > 0 || (allowZero && x == 0)) ? xs : throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new ArgumentException($"{option} expects {(allowZero ? "non-negative" : "positive")} integers " +
                $"separated by commas, got '{csv}'");
        }
    }

    static int Positive(int x, string option) => x > 0 ? x : throw new ArgumentException($"{option} must be positive");
    static double Positive(double x, string option) =>
        x > 0 && double.IsFinite(x) ? x : throw new ArgumentException($"{option} must be positive");
}
