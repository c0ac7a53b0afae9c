using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>The vocabularies the grammar and mask tests walk, read back from a GGUF file as a model's tokenizer is;
/// made once for the test run.</summary>
static class GrammarVocabularies
{
    public static Tokenizer Spm => SpmTokenizer.Value;
    public static Tokenizer Bpe => BpeTokenizer.Value;

    static readonly Lazy<Tokenizer> SpmTokenizer = new(() => Load(DemoVocabulary.SentencePiece(1024)));
    static readonly Lazy<Tokenizer> BpeTokenizer = new(() => Load(DemoVocabulary.ByteLevelBpe(2048)));

    static Tokenizer Load(VocabularySpec spec)
    {
        string path = Path.Combine(Path.GetTempPath(), $"weft-grammar-{Guid.NewGuid():N}.gguf");
        try
        {
            var w = new GgufWriter();
            spec.WriteTo(w);
            w.Write(path);
            using var file = GgufFile.Open(path);
            return Tokenizer.FromGguf(file);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
