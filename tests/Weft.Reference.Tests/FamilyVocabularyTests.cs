using Weft.GpuRuntime.Engine;
using Weft.LlamaCpp;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Reference.Tests;

/// <summary>
/// Each family's model written with the kind of vocabulary, turn markers and chat template the family ships
/// (<see cref="DemoVocabulary.Family"/>, what `weft model create --arch` writes): a chat rendered by the file's own
/// template tokenizes as llama.cpp tokenizes it, the turn markers end generation for both, and greedy replies to it
/// are llama.cpp's.
/// </summary>
public sealed class FamilyVocabularyTests : IDisposable
{
    readonly TempDirectory dir = new();
    const int Generate = 32;

    public static TheoryData<string> Families => ["qwen2", "qwen3", "gemma2", "gemma3", "phi3"];

    /// <summary>As <see cref="ArchitectureParityTests"/>' shapes, in three layers; llama.cpp reads qwen2's head size
    /// only as dim / heads.</summary>
    static DemoModelShape Shape(string arch) => arch switch
    {
        "phi3" => new DemoModelShape("fam-phi", 256, 3, 4, 2, 768, 1024, 512, GgmlType.F32, Architecture: arch),
        _ => new DemoModelShape($"fam-{arch}", 256, 3, 8, 2, 768, 1024, 512, GgmlType.F32, RopeFreqBase: 1000000f,
            HeadDim: arch == "qwen2" ? null : 64, Architecture: arch, SlidingWindow: 16),
    };

    /// <summary>Gemma's template refuses a system turn; the others get one.</summary>
    static (string Role, string Content)[] Chat(string arch) =>
    [
        .. arch.StartsWith("gemma", StringComparison.Ordinal) ? [] : new[] { ("system", "You answer briefly.") },
        ("user", "What is the capital of France?"),
        ("assistant", " Paris, of course. "),
        ("user", "And the river that runs through it?\n"),
    ];

    [Theory]
    [MemberData(nameof(Families))]
    public void A_chat_rendered_by_the_family_s_template_is_tokenized_and_answered_as_llama_cpp_does(string arch)
    {
        var shape = Shape(arch);
        string path = dir.File($"{shape.Name}.gguf");
        DemoModel.Create(path, shape);
        using var file = GgufFile.Open(path);
        var tokenizer = Tokenizer.FromGguf(file);
        var template = ChatTemplate.Resolve(file.GetStringOrNull("tokenizer.chat_template"), null,
            tokenizer.TokenText(tokenizer.BosId), tokenizer.TokenText(tokenizer.EosId), tokenizer.AddBos);
        string text = template.Render(Chat(arch), addGenerationPrompt: true);
        int[] prompt = [.. tokenizer.EncodeChat(text)];

        using var llama = new LlamaCppModel(path, contextSize: 256, f16Cache: false);
        Assert.Equal(llama.Tokenize(text, addSpecial: true, parseSpecial: true), prompt);
        // the family's turn markers are single control tokens, and the end of a turn ends generation for both
        using var vocab = LlamaVocab.Load(path);
        string end = arch switch { "phi3" => "<|end|>", "gemma2" or "gemma3" => "<end_of_turn>", _ => "<|im_end|>" };
        int endId = Assert.Single(tokenizer.Encode(end, addSpecial: false, parseSpecial: true));
        Assert.Contains(endId, prompt.Skip(1));
        Assert.Contains(endId, tokenizer.EndOfGenerationIds);
        Assert.True(vocab.IsEndOfGeneration(endId), $"llama.cpp does not end generation at {end}");

        int[] ours = ForwardParityTests.GreedyWeft(path, prompt, Generate, KvCacheType.F32);
        int[] theirs = llama.Greedy(prompt, Generate);
        Assert.True(ours.SequenceEqual(theirs), $"{arch}: diverged at token {ForwardParityTests.FirstDifference(ours,
            theirs)}\nweft:      {string.Join(",", ours)}\nllama.cpp: {string.Join(",", theirs)}");
        Assert.True(ours.Distinct().Count() > Generate / 4, $"{arch}: output too repetitive: {string.Join(",", ours)}");
    }

    [Theory]
    [InlineData("qwen3", "gpt2", "qwen2", false)]
    [InlineData("gemma3", "llama", null, true)]
    [InlineData("phi3", "llama", null, true)]
    public void The_family_s_vocabulary_is_the_kind_it_ships(string arch, string model, string? pre, bool addBos)
    {
        var shape = Shape(arch);
        string path = dir.File($"{shape.Name}-kind.gguf");
        DemoModel.Create(path, shape);
        using var file = GgufFile.Open(path);
        Assert.Equal(model, file.GetString("tokenizer.ggml.model"));
        Assert.Equal(pre, file.GetStringOrNull("tokenizer.ggml.pre"));
        Assert.Equal(addBos, Tokenizer.FromGguf(file).AddBos);
        Assert.Equal(shape.VocabSize, Tokenizer.FromGguf(file).VocabSize);
    }

    public void Dispose() => dir.Dispose();
}
