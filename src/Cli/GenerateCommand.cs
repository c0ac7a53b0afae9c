using System.CommandLine;
using System.Diagnostics;
using Weft.GpuRuntime.Engine;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.Cli;

static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model")
        { Description = "GGUF file (default: the demo model, generated into the cache on first use)" };
        var prompt = new Option<string?>("--prompt") { Description = "prompt text" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "prompt as token ids, comma-separated" };
        var chat = new Option<bool>("--chat")
        { Description = "wrap --prompt as a user message in the model's chat template" };
        var engine = new Option<string>("--engine")
        { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var showIds = new Option<bool>("--show-ids") { Description = "print the generated token ids" };
        var sampling = new SamplingOptionsBinder();
        var cmd = new Command("generate", "generate a completion locally (no silo), streaming text as it comes")
            { model, prompt, promptIds, chat, engine, showIds };
        sampling.AddTo(cmd);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(model) ?? CliProgress.Run("preparing the demo model",
                report => DemoModel.Cached("tiny", DemoModel.DefaultCacheDirectory, report));
            var options = new EngineOptions
            {
                Engine = EngineKinds.Parse(r.GetValue(engine)!), MaxNumSeqs = 1, MaxNumBatchedTokens = 512,
                KvCacheMemoryMiB = 256
            };
            using var eng = CliProgress.Run($"loading {Path.GetFileName(path)}",
                report => InferenceEngine.Load(path, options, progress: report));
            var tokenizer = Tokenizer.FromGguf(eng.File);
            int[] tokens = Prompt(r.GetValue(prompt), r.GetValue(promptIds), r.GetValue(chat), tokenizer, eng);
            var p = sampling.Params(r, eng.Config.VocabSize);
            if (tokens.Length + p.MaxTokens > eng.MaxModelLen)
                throw new ArgumentException($"the prompt ({tokens.Length} tokens) plus --max-tokens ({p.MaxTokens}) " +
                    $"exceeds the context of {eng.MaxModelLen} tokens");

            var batch = BatchEngine.Create(eng,
                new SchedulerOptions { MaxModelLen = eng.MaxModelLen, MaxNumSeqs = 1, MaxNumBatchedTokens = 512 },
                tokenizer.EndOfGenerationIds);
            var seq = new Sequence(1, tokens, p);
            batch.Scheduler.Add(seq);
            var decoder = new ReplyDecoder(tokenizer, sampling.Stop(r));
            var sw = Stopwatch.StartNew();
            TimeSpan firstToken = default;
            while (batch.Scheduler.HasWork && !decoder.Stopped)
            {
                var tick = batch.TickAsync().GetAwaiter().GetResult();
                foreach (var (_, token, _) in tick.Sampled)
                {
                    if (firstToken == default) firstToken = sw.Elapsed;
                    Console.Write(decoder.Push(token));
                }
            }
            Console.Write(decoder.Finish());
            Console.WriteLine();
            var total = sw.Elapsed;
            int generated = seq.NumCompletionTokens;
            if (r.GetValue(showIds)) Console.WriteLine($"[{string.Join(",", seq.TokenIds.Skip(seq.NumPromptTokens))}]");
            Console.Error.WriteLine($"{tokens.Length} prompt tokens in {firstToken.TotalMilliseconds:F0} ms " +
                $"({tokens.Length / firstToken.TotalSeconds:F1} tok/s); " +
                $"{generated} tokens in {total.TotalSeconds:F2} s " +
                $"({(generated - 1) / (total - firstToken).TotalSeconds:F1} tok/s); " +
                $"finish: {(decoder.Stopped ? "stop string" : seq.FinishReason)}; {eng.Description}");
            return 0;
        });
        return cmd;
    }

    static int[] Prompt(string? text, string? ids, bool chat, Tokenizer tokenizer, InferenceEngine eng)
    {
        if ((text is null) == (ids is null))
            throw new ArgumentException("give exactly one of --prompt and --prompt-ids");
        if (ids is not null)
        {
            var tokens = BenchCommands.Ints(ids, "--prompt-ids", allowZero: true);
            foreach (var t in tokens)
                if (t >= eng.Config.VocabSize) throw new ArgumentException(
                    $"token id {t} is outside the vocabulary (0..{eng.Config.VocabSize - 1})");
            return tokens;
        }
        if (!chat) return tokenizer.Encode(text!, addSpecial: true, parseSpecial: false);
        var template = ChatTemplate.Resolve(eng.File.GetStringOrNull("tokenizer.chat_template"), null,
            tokenizer.TokenText(tokenizer.BosId), tokenizer.TokenText(tokenizer.EosId), tokenizer.AddBos);
        string rendered = template.Render([("user", text!)], addGenerationPrompt: true);
        return tokenizer.EncodeChat(rendered);
    }
}
