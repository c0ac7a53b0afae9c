using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace Weft.Cli.Tests;

/// <summary>
/// The README's shell examples of the weft tool, run as written: each line of a ```bash block that calls `weft` or
/// `dotnet run --project src/Cli`, with `weft` the built weft.dll, in order (later lines read the files earlier ones
/// wrote). Files the examples write under /tmp go to a folder of the test's own, so that runs side by side do not
/// share them, and the examples run there beside a copy of the repository's samples/schemas, which they name by a
/// relative path; an optional part in brackets ("[--http URL]") is left out. The lines that talk to a server get the
/// README's silo (`dotnet run --project src/Silo`, on its default ports 8000 and 30000).
/// </summary>
public sealed class ReadmeExamplesTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Every_weft_example_of_the_readme_exits_0()
    {
        string repo = Repo();
        var examples = Examples(File.ReadAllText(Path.Combine(repo, "README.md")));
        Assert.Contains(examples, e => e.StartsWith("weft model create", StringComparison.Ordinal));
        string tmp = Directory.CreateTempSubdirectory("weft-readme-").FullName;
        string schemas = Directory.CreateDirectory(Path.Combine(tmp, "samples", "schemas")).FullName;
        foreach (string schema in Directory.GetFiles(Path.Combine(repo, "samples", "schemas")))
            File.Copy(schema, Path.Combine(schemas, Path.GetFileName(schema)));
        Process? silo = null;
        var failures = new List<string>();
        try
        {
            foreach (string example in examples)
            {
                if (example.StartsWith("weft chat", StringComparison.Ordinal)
                    || example.Contains("http://127.0.0.1:8000", StringComparison.Ordinal))
                    silo ??= await StartSiloAsync(repo);
                var (exitCode, output) = await RunAsync(example.Replace("/tmp/", tmp + "/"), tmp);
                if (exitCode != 0) failures.Add($"{example}: exit code {exitCode}\n{output}");
            }
        }
        finally
        {
            if (silo is not null)
            {
                silo.Kill(entireProcessTree: true);
                await silo.WaitForExitAsync(CancellationToken.None);
                silo.Dispose();
            }
            Directory.Delete(tmp, recursive: true);
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>The example lines, with `dotnet run --project src/Cli -c Release --` spelled `weft` and optional
    /// parts left out.</summary>
    static List<string> Examples(string readme)
    {
        var lines = Regex.Matches(readme, "(?ms)^```bash\n(.*?)^```").SelectMany(b => b.Groups[1].Value.Split('\n'));
        return lines.Select(l => Regex.Replace(l.Trim(), @"^dotnet run --project src/Cli -c Release --( |$)", "weft$1"))
            .Where(l => l.StartsWith("weft ", StringComparison.Ordinal))
            .Select(l => Regex.Replace(l, @" \[[^\]]*\]", ""))
            .ToList();
    }

    static async Task<(int ExitCode, string Output)> RunAsync(string example, string dir)
    {
        string weft = Path.Combine(AppContext.BaseDirectory, "weft.dll");
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            WorkingDirectory = dir,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"weft() {{ dotnet '{weft}' \"$@\"; }}\n{example}");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(Ct);
        var stderr = process.StandardError.ReadToEndAsync(Ct);
        // an interactive chat: one turn, then the README's /exit
        await process.StandardInput.WriteAsync("Hello\n/exit\n");
        process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>The README's first command, the silo on the demo model, once it is ready.</summary>
    static async Task<Process> StartSiloAsync(string repo)
    {
        foreach (int port in new[] { 8000, 11111, 30000 })
            Assert.SkipUnless(IsFree(port), $"port {port}, which the README's examples use, is in use");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = repo,
        };
        foreach (string a in new[] { "run", "--project", "src/Silo", "-c", "Release", "--no-build" })
            start.ArgumentList.Add(a);
        var silo = Process.Start(start)!;
        var log = new StringBuilder();
        silo.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        silo.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        silo.BeginOutputReadLine();
        silo.BeginErrorReadLine();
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(300);
        while (true)
        {
            try
            {
                using var health = await http.GetAsync("http://127.0.0.1:8000/health", Ct);
                if (health.StatusCode == HttpStatusCode.OK && !silo.HasExited) return silo;
            }
            catch (HttpRequestException)
            {
            }
            if (silo.HasExited || DateTime.UtcNow > deadline)
            {
                silo.Kill(entireProcessTree: true);
                lock (log) Assert.Fail($"the silo did not become ready:\n{log}");
            }
            await Task.Delay(200, Ct);
        }
    }

    /// <summary>Nothing answers on the port (a bind test passes beside a listener that set address reuse).</summary>
    static bool IsFree(int port)
    {
        using var client = new TcpClient();
        try
        {
            client.Connect(IPAddress.Loopback, port);
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    static string Repo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Orleans.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no Orleans.sln above {AppContext.BaseDirectory}");
    }
}
