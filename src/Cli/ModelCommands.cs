using System.CommandLine;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Gguf;

namespace Weft.Cli;

static class ModelCommands
{
    public static Command Create()
    {
        var model = new Command("model", "create and inspect GGUF models");
        model.Subcommands.Add(CreateModel());
        model.Subcommands.Add(Inspect());
        model.Subcommands.Add(Quantize());
        return model;
    }

    static Command CreateModel()
    {
        var preset = new Option<string>("--preset")
        {
            Description = $"model shape: {string.Join(", ", DemoModelShape.Presets.Select(p => p.Name))}",
            DefaultValueFactory = _ => "tiny"
        };
        var output = new Option<string>("--out") { Description = "GGUF file to write", Required = true };
        var type = new Option<string?>("--type")
        { Description = "weight type: f32, f16, bf16 or q8_0 (default: the preset's)" };
        var seed = new Option<ulong>("--seed")
        { Description = "random seed of the weights", DefaultValueFactory = _ => 42UL };
        var arch = new Option<string>("--arch")
        {
            Description = $"architecture: {string.Join(", ", DemoModel.Architectures)}",
            DefaultValueFactory = _ => "llama",
        };
        // a shape of one's own, for benchmarks that must not be tuned to the presets
        Option<int?> Size(string name, string what) => new(name) { Description = $"{what} (default: the preset's)" };
        var dim = Size("--dim", "model dimension");
        var layers = Size("--layers", "transformer layers");
        var heads = Size("--heads", "attention heads");
        var kvHeads = Size("--kv-heads", "key/value heads (grouped-query attention)");
        var ffn = Size("--ffn", "feed-forward dimension");
        var context = Size("--context", "context length");
        var longRope = new Option<int?>("--longrope")
        {
            Description = "phi3 only: LongRoPE factors (Phi-3.5-mini's, Phi-4-mini's RoPE scaling) from this " +
                "original context up to the context length",
        };
        var ropeDims = new Option<int?>("--rope-dims")
        {
            Description = "partial RoPE: rotate only this many of each head's dimensions (Phi-4-mini: 96 of 128; " +
                $"{string.Join(", ", ModelConfig.PartialRopeArchitectures)} only, as in llama.cpp)",
        };
        var cmd = new Command("create",
            "write a deterministic random-weight model with the kind of vocabulary and the chat template its " +
            "family ships (llama: SentencePiece-style and TinyLlama's; qwen: byte-level BPE and ChatML; gemma, phi3: " +
            "SentencePiece-style and their own)")
            { preset, output, type, seed, arch, dim, layers, heads, kvHeads, ffn, context, longRope, ropeDims };
        cmd.SetAction(r =>
        {
            var shape = DemoModelShape.Preset(r.GetValue(preset)!) with { Architecture = r.GetValue(arch)! };
            if (r.GetValue(type) is { } t) shape = shape with { Type = ParseType(t) };
            if (r.GetValue(longRope) is { } original) shape = shape with { LongRopeOriginalContext = original };
            if (r.GetValue(ropeDims) is { } rotated) shape = shape with { RopeDims = rotated };
            if (new[] { dim, layers, heads, kvHeads, ffn, context }.Any(o => r.GetValue(o) is not null))
                shape = (shape with
                {
                    Name = "custom",
                    Dim = r.GetValue(dim) ?? shape.Dim,
                    Layers = r.GetValue(layers) ?? shape.Layers,
                    Heads = r.GetValue(heads) ?? shape.Heads,
                    KvHeads = r.GetValue(kvHeads) ?? shape.KvHeads,
                    FfnDim = r.GetValue(ffn) ?? shape.FfnDim,
                    ContextLength = r.GetValue(context) ?? shape.ContextLength,
                }).Validated();
            string path = r.GetValue(output)!;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            CliProgress.Run($"writing {path}", report =>
            {
                DemoModel.Create(path, shape, r.GetValue(seed), report);
                return path;
            });
            Console.WriteLine($"{path}: {shape.Name} ({shape.Architecture}, {shape.Type}, dim {shape.Dim}, " +
                $"{shape.Layers} layers, " +
                $"{shape.Heads}/{shape.KvHeads} heads, ffn {shape.FfnDim}, context {shape.ContextLength}, " +
                $"vocab {shape.VocabSize}" +
                (shape.LongRopeOriginalContext > 0 ? $", LongRoPE from {shape.LongRopeOriginalContext}" : "") +
                (shape.RopeDims > 0 ? $", RoPE on {shape.RopeDims} dimensions of each head" : "") + "), " +
                $"{new FileInfo(path).Length / 1e6:F1} MB in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }

    static GgmlType ParseType(string t) => t.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        _ => throw new ArgumentException($"unknown weight type '{t}' (expected f32, f16, bf16 or q8_0)"),
    };

    static Command Quantize()
    {
        var source = new Argument<string>("source") { Description = "GGUF file to quantize (f32, f16 or bf16)" };
        var output = new Option<string>("--out") { Description = "GGUF file to write", Required = true };
        var type = new Option<string>("--type")
        {
            Description = $"llama-quantize preset: {string.Join(", ", LlamaCppModel.QuantizePresets.Keys)}",
            Required = true
        };
        var cmd = new Command("quantize",
            "quantize a model with llama.cpp's own quantizer, as the files people download are made")
            { source, output, type };
        cmd.SetAction(r =>
        {
            string src = r.GetValue(source)!, dst = r.GetValue(output)!, preset = r.GetValue(type)!;
            if (!LlamaCppModel.QuantizePresets.TryGetValue(preset, out var ftype))
                throw new ArgumentException($"unknown preset '{preset}' (expected one of " +
                    $"{string.Join(", ", LlamaCppModel.QuantizePresets.Keys)})");
            if (!File.Exists(src)) throw new FileNotFoundException($"no such file: {src}");
            var sw = System.Diagnostics.Stopwatch.StartNew();
            if (!CliProgress.Run($"quantizing to {preset}",
                    _ => LlamaCppModel.Quantize(src, dst, ftype, Environment.ProcessorCount)))
                throw new IOException($"llama.cpp could not quantize {src} to {preset}");
            Console.WriteLine($"{dst}: {preset}, {new FileInfo(dst).Length / 1e6:F1} MB in " +
                $"{sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }

    static Command Inspect()
    {
        var path = new Argument<string>("path") { Description = "GGUF file" };
        var all = new Option<bool>("--all") { Description = "print every element of metadata arrays" };
        var cmd = new Command("inspect", "print a GGUF file's metadata, tensors and sizes") { path, all };
        cmd.SetAction(r =>
        {
            using var f = GgufFile.Open(r.GetValue(path)!);
            bool full = r.GetValue(all);
            Console.WriteLine($"{f.Path}: GGUF v{f.Version}, {f.FileSize / 1e6:F1} MB, " +
                $"{f.Metadata.Count} metadata keys, {f.Tensors.Count} tensors, alignment {f.Alignment}");
            Console.WriteLine();
            int keyWidth = f.Metadata.Keys.Select(k => k.Length).DefaultIfEmpty().Max();
            foreach (var (key, value) in f.Metadata)
                Console.WriteLine($"  {key.PadRight(keyWidth)}  {Describe(value, full)}");
            Console.WriteLine();
            int nameWidth = f.Tensors.Select(t => t.Name.Length).DefaultIfEmpty().Max();
            foreach (var t in f.Tensors)
                Console.WriteLine($"  {t.Name.PadRight(nameWidth)}  {t.Type,-5} " +
                    $"{("[" + string.Join(", ", t.Dims) + "]"),-20} {t.ByteSize / 1e6,10:F2} MB");
            var byType = f.Tensors.GroupBy(t => t.Type)
                .Select(g => $"{g.Key}: {g.Count()} tensors, {g.Sum(t => t.ByteSize) / 1e6:F1} MB");
            Console.WriteLine();
            Console.WriteLine(
                $"  {f.Tensors.Sum(t => t.ElementCount) / 1e6:F1} M parameters; {string.Join("; ", byType)}");
            return 0;
        });
        return cmd;
    }

    static string Describe(GgufValue v, bool full)
    {
        if (v.Value is not Array a) return v.Value is string s ? Quote(s) : v.ToString();
        var items = a.Cast<object>().Select(x => x is string s ? Quote(s)
            : Convert.ToString(x, System.Globalization.CultureInfo.InvariantCulture));
        return full || a.Length <= 8
            ? $"[{string.Join(", ", items)}]"
            : $"[{string.Join(", ", items.Take(6))}, … ] ({a.Length} × {v.ElementType})";
    }

    static string Quote(string s)
    {
        var q = s.ReplaceLineEndings("\\n");
        return q.Length > 120 ? $"\"{q[..117]}…\"" : $"\"{q}\"";
    }
}
