using Microsoft.VisualStudio.TestPlatform.ObjectModel;
using Microsoft.VisualStudio.TestPlatform.ObjectModel.Client;

namespace Weft.TestLogger;

/// <summary>
/// Prints each skipped test with its reason at any verbosity. The console logger shows a skip's reason only at
/// "detailed", which also lists every passed test; xunit's adapter logs it as an informational message, which
/// "minimal" (the default of dotnet test) drops.
/// </summary>
[FriendlyName(FriendlyName)]
[ExtensionUri("logger://Weft/SkipReasons/v1")]
public sealed class SkipReasonLogger : ITestLogger
{
    public const string FriendlyName = "skip-reasons";

    public void Initialize(TestLoggerEvents events, string testRunDirectory) => events.TestResult += (_, e) =>
    {
        if (e.Result.Outcome != TestOutcome.Skipped) return;
        string name = string.IsNullOrWhiteSpace(e.Result.DisplayName) ? e.Result.TestCase.DisplayName
            : e.Result.DisplayName;
        Console.WriteLine($"  Skipped {name}: {e.Result.ErrorMessage ?? "no reason given"}");
    };
}
