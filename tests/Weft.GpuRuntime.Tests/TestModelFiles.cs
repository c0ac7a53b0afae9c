using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

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
            DemoModel.Write(path, shape, DemoVocabulary.SentencePiece(shape.VocabSize, ChatTemplates.TinyLlama));
            _written[shape] = path;
            return path;
        }
    }

    /// <summary>A path for a file of the test's own in the temporary folder.</summary>
    public string PathOf(string name) => Path.Combine(_dir, name);

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
