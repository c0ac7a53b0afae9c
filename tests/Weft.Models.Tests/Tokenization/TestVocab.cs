using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Models.Tests.Tokenization;

/// <summary>Tokenizers loaded the way the runtime loads them: from a GGUF file holding tokenizer metadata.</summary>
static class TestVocab
{
    public static readonly Tokenizer Spm = Load(DemoVocabulary.SentencePiece(2048));
    public static readonly Tokenizer Llama3 = Load(DemoVocabulary.ByteLevelBpe(2048));
    public static readonly Tokenizer Qwen2 = Load(DemoVocabulary.ByteLevelBpe(2048, "qwen2") with { AddBos = false });

    public static Tokenizer Load(VocabularySpec spec) => Load(spec.WriteTo);

    public static Tokenizer Load(Action<GgufWriter> metadata) => WithFile(metadata, Tokenizer.FromGguf);

    /// <summary>Loads the spec's metadata with one key replaced, or removed when <paramref name="value"/> is
    /// null.</summary>
    public static Tokenizer LoadWith(VocabularySpec spec, string key, GgufValue? value)
    {
        var metadata = WithFile(spec.WriteTo, f => f.Metadata);
        return Load(w =>
        {
            foreach (var (k, v) in metadata)
                if (k != key) w.Add(k, v);
            if (value is not null) w.Add(key, value);
        });
    }

    /// <summary>Writes a temporary GGUF file with the given metadata, opens it for <paramref name="use"/>, then deletes
    /// it.</summary>
    static T WithFile<T>(Action<GgufWriter> metadata, Func<GgufFile, T> use)
    {
        string path = Path.Combine(Path.GetTempPath(), $"weft-tokenizer-{Guid.NewGuid():N}.gguf");
        try
        {
            var w = new GgufWriter();
            metadata(w);
            w.Write(path);
            using var file = GgufFile.Open(path);
            return use(file);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static string[] Pieces(Tokenizer t, IEnumerable<int> ids) => ids.Select(t.TokenText).ToArray();

    /// <summary>A hand-made SentencePiece vocabulary: &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, then the given pieces with
    /// falling scores.</summary>
    public static VocabularySpec TinySpm(params (string Piece, TokenType Type)[] pieces) => new(
        "llama",
        ["<unk>", "<s>", "</s>", .. pieces.Select(p => p.Piece)],
        [(int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control, .. pieces.Select(p => (int)p.Type)],
        [0, 0, 0, .. pieces.Select((_, i) => -(float)i)],
        Merges: null, Pre: null, BosId: 1, EosId: 2, UnkId: 0, PadId: null, AddBos: true, AddSpacePrefix: true,
        ChatTemplate: null);
}
