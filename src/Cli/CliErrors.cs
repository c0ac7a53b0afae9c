using Weft.Models.Gguf;

namespace Weft.Cli;

/// <summary>Turns the errors a user can cause (bad files, bad options) into one line on stderr and exit code
/// 1.</summary>
static class CliErrors
{
    public static int Run(Func<int> main)
    {
        try
        {
            return main();
        }
        catch (Exception e) when (e is GgufFormatException or ArgumentException or NotSupportedException or IOException
            or InvalidOperationException)
        {
            Console.Error.WriteLine($"weft: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is HttpRequestException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine($"weft: the server did not answer as an OpenAI-compatible API: {e.Message}");
            return 1;
        }
    }
}
