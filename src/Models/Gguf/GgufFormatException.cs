namespace Weft.Models.Gguf;

/// <summary>The one error a broken or unsupported model file raises; the message names the file and the
/// problem.</summary>
public sealed class GgufFormatException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}
