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
        return bench;
    }

    static Command Engine()
    {
        var model = new Option<string>("--model") { Description = "GGUF file", Required = true };
        var engine = new Option<string>("--engine") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "cpu" };
        var batch = new Option<string>("--batch") { Description = "batch sizes, comma-separated", DefaultValueFactory = _ => "1,4,16,32" };
        var gen = new Option<int>("--gen") { Description = "decode steps per batch size", DefaultValueFactory = _ => 32 };
        var prompt = new Option<int>("--prompt") { Description = "prompt tokens per sequence before decoding", DefaultValueFactory = _ => 32 };
        var prefill = new Option<int>("--prefill") { Description = "also time the prefill of one prompt of this many tokens (0: skip)", DefaultValueFactory = _ => 512 };
        var peer = new Option<string?>("--peer") { Description = "run the same measurements with llama.cpp (LLamaSharp) on the same file: llama.cpp" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for both engines (0: all cores)" };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON to this file" };
        var cmd = new Command("engine", "decode tokens/s of the engine alone at each batch size, beside llama.cpp and the memory roofline")
            { model, engine, batch, gen, prompt, prefill, peer, threads, json };
        cmd.SetAction(r =>
        {
            string? p = r.GetValue(peer);
            if (p is not null && p != "llama.cpp") throw new ArgumentException($"unknown peer '{p}' (supported: llama.cpp)");
            int[] batches = Ints(r.GetValue(batch)!, "--batch");
            return EngineBenchmark.Run(new EngineBenchOptions(r.GetValue(model)!, EngineKinds.Parse(r.GetValue(engine)!), batches,
                Positive(r.GetValue(gen), "--gen"), Positive(r.GetValue(prompt), "--prompt"), r.GetValue(prefill), p is not null,
                r.GetValue(threads), r.GetValue(json)), Console.Out);
        });
        return cmd;
    }

    public static int[] Ints(string csv, string option, bool allowZero = false)
    {
        try
        {
            var xs = csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
            return xs.Length > 0 && xs.All(x => x > 0 || (allowZero && x == 0)) ? xs : throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new ArgumentException($"{option} expects {(allowZero ? "non-negative" : "positive")} integers separated by commas, got '{csv}'");
        }
    }

    static int Positive(int x, string option) => x > 0 ? x : throw new ArgumentException($"{option} must be positive");
}
