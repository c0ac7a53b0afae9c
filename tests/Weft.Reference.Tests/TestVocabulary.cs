using Weft.GpuRuntime.Tokenization;

namespace Weft.Reference.Tests;

static class TestVocabulary
{
    /// <summary>A minimal SentencePiece-style vocabulary: unk, bos, eos, the 256 byte tokens, then filler pieces.</summary>
    public static VocabularySpec SentencePiece(int size)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add((int)TokenType.Byte); }
        for (int i = 0; tokens.Count < size; i++) { tokens.Add("▁w" + i); types.Add((int)TokenType.Normal); }
        return new VocabularySpec("llama", [.. tokens], [.. types], tokens.Select((_, j) => -(float)j).ToArray(), null, null, 1, 2, 0, null, true, true, null);
    }
}
