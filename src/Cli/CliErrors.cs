using Weft.Models.Gguf;

namespace Weft.Cli;

/// <summary>Turns every failure into one line on stderr and exit code 1: the errors a user can cause (bad files, bad
/// options, a server that is not there) by their message, anything else with its type too.</summary>
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
            Console.Error.WriteLine($"weft: {OneLine(e.Message)}");
            return 1;
        }
        catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ConnectionError
            or HttpRequestError.NameResolutionError)
        {
            Console.Error.WriteLine($"weft: no server answers: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e) when (e is HttpRequestException or System.Text.Json.JsonException)
        {
            Console.Error.WriteLine(
                $"weft: the server did not answer as an OpenAI-compatible API: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"weft: {e.GetType().Name}: {OneLine(e.Message)}");
            return 1;
        }
    }

    static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
