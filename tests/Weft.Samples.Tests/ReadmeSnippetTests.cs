using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Weft.Samples.Tests;

/// <summary>Every C# snippet of the READMEs compiles as written, as the top-level program of a new console project
/// (with its implicit usings) that references the Weft client and the packages the snippets name.</summary>
public sealed partial class ReadmeSnippetTests
{
    static readonly string Root = FindRoot();

    public static TheoryData<string> Readmes => new("README.md", Path.Combine("samples", "ChatBackend", "README.md"));

    [Theory]
    [MemberData(nameof(Readmes))]
    public void Every_csharp_snippet_of_the_readme_compiles(string readme)
    {
        var snippets = Snippets(File.ReadAllText(Path.Combine(Root, readme)));
        Assert.NotEmpty(snippets);
        var failures = snippets.Select((code, i) => (i, Errors: Errors(code)))
            .Where(s => s.Errors.Count > 0)
            .Select(s => $"snippet {s.i + 1} of {readme}:\n{snippets[s.i]}\n  {string.Join("\n  ", s.Errors)}")
            .ToList();
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    [Fact]
    public void A_snippet_that_needs_a_missing_using_does_not_compile()
    {
        var errors = Errors("var options = new SamplingOptions { MaxTokens = 64 };");
        Assert.Contains(errors, e => e.Contains("SamplingOptions", StringComparison.Ordinal));
        Assert.Empty(Errors("using Weft.Abstractions;\nvar options = new SamplingOptions { MaxTokens = 64 };"));
    }

    static List<string> Snippets(string markdown) =>
        Fence().Matches(markdown).Select(m => m.Groups[1].Value).ToList();

    [GeneratedRegex(@"^```csharp[ \t]*\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fence();

    /// <summary>The implicit usings of a Microsoft.NET.Sdk console project.</summary>
    const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    static readonly MetadataReference[] References =
        ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
        .Concat(Directory.GetFiles(AppContext.BaseDirectory, "*.dll"))
        .Where(p => p.EndsWith(".dll", StringComparison.Ordinal))
        .DistinctBy(Path.GetFileName)
        .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
        .ToArray();

    static List<string> Errors(string program)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Preview);
        var compilation = CSharpCompilation.Create("Snippet",
            [CSharpSyntaxTree.ParseText(ImplicitUsings, parse), CSharpSyntaxTree.ParseText(program, parse)],
            References, new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions:
                NullableContextOptions.Enable));
        return compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d => d.ToString())
            .ToList();
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Orleans.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Orleans.sln above {AppContext.BaseDirectory}");
    }
}
