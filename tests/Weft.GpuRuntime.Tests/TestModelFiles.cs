using Weft.GpuRuntime.Gguf;
using Weft.GpuRuntime.Models;
using Weft.GpuRuntime.Tokenization;

namespace Weft.GpuRuntime.Tests;

/// <summary>Generated model files for one test class, written once per shape into a temporary folder.</summary>
public sealed class TestModelFiles : IDisposable
{
    public static readonly DemoModelShape Tiny = new("tiny-test", 64, 2, 4, 2, 160, 1024, 512, GgmlType.F32);

    readonly string _dir = Directory.CreateTempSubdirectory("weft-test-").FullName;
    readonly Dictionary<DemoModelShape, string> _written = [];

    public string Write(DemoModelShape shape)
    {
        lock (_written)
        {
            if (_written.TryGetValue(shape, out var path)) return path;
            path = Path.Combine(_dir, $"{shape.Name}-{shape.Type}-{_written.Count}.gguf");
            DemoModel.Write(path, shape, Vocabulary(shape.VocabSize));
            _written[shape] = path;
            return path;
        }
    }

    static VocabularySpec Vocabulary(int size)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { (int)TokenType.Unknown, (int)TokenType.Control, (int)TokenType.Control };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add((int)TokenType.Byte); }
        for (int i = 0; tokens.Count < size; i++) { tokens.Add("▁w" + i); types.Add((int)TokenType.Normal); }
        return new VocabularySpec("llama", [.. tokens], [.. types], tokens.Select((_, j) => -(float)j).ToArray(), null, null, 1, 2, 0, null, true, true, null);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
