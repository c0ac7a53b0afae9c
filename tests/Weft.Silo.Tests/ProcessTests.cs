using System.Diagnostics;
using Weft.Models;

namespace Weft.Silo.Tests;

/// <summary>The built silo run as a user runs it: what it prints and how it exits when it cannot start.</summary>
public sealed class ProcessTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("weft-silo-process-").FullName;
    string Good => Path.Combine(_dir, "good.gguf");

    public ProcessTests() => DemoModel.Create(Good, SiloFixture.Shape);

    static async Task<(int ExitCode, string StdOut, string StdErr)> RunSiloAsync(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Weft.Silo.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Ports nothing listens on: the silo must fail before it binds any.</summary>
    static readonly string[] Ports = ["--urls", "http://127.0.0.1:1", "--silo-port", "2", "--gateway-port", "0"];

    [Fact]
    public async Task A_bad_model_file_stops_the_silo_with_one_line_naming_the_file()
    {
        var bytes = await File.ReadAllBytesAsync(Good, TestContext.Current.CancellationToken);
        var files = new Dictionary<string, string>
        {
            ["missing.gguf"] = "file not found",
            ["text.gguf"] = "not a GGUF file",
            ["truncated.gguf"] = "truncated",
        };
        await File.WriteAllTextAsync(Path.Combine(_dir, "text.gguf"), "hello, I am not a model\n",
            TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(Path.Combine(_dir, "truncated.gguf"), bytes[..(bytes.Length / 2)],
            TestContext.Current.CancellationToken);

        foreach (var (name, problem) in files)
        {
            string path = Path.Combine(_dir, name);
            var (exitCode, stdout, stderr) = await RunSiloAsync(["--model", path, .. Ports]);
            Assert.NotEqual(0, exitCode);
            string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains(path, line);
            Assert.Contains(problem, line);
            Assert.DoesNotContain(" at ", stdout + stderr);
        }
    }

    [Theory]
    [InlineData("--max-num-seqs=many", "not an integer")]
    [InlineData("--engine=tpu", "unknown engine")]
    [InlineData("--no-such-option=1", "unknown option")]
    [InlineData("--kv-blocks=-3", "kv-blocks")]
    [InlineData("--chat-template=nonsense", "nonsense")]
    [InlineData("--chat-template={% if messages %}{{ messages[0] }", "template line 1, column 33")]
    [InlineData("--urls=http://nohost:abc", "not a listen address")]
    [InlineData("--max-waiting=0", "max-waiting")]
    [InlineData("--max-model-len=1", "MaxModelLen must be at least 2")]
    [InlineData("--mmap=sometimes", "not true or false")]
    [InlineData("--conversation-ttl=-1", "conversation-ttl")]
    [InlineData("--response-ttl=-1", "response-ttl must not be negative")]
    [InlineData("--tenant-max-requests=0", "tenant-max-requests")]
    [InlineData("--logprobs-mode=processed_logits", "logprobs-mode must be raw_logprobs or processed_logprobs")]
    [InlineData("--max-request-bytes=0", "max-request-bytes")]
    public async Task Bad_options_stop_the_silo_with_one_line_and_exit_code2(string option, string problem)
    {
        var (exitCode, _, stderr) = await RunSiloAsync(["--model", Good, .. Ports, option]);
        Assert.Equal(2, exitCode);
        Assert.Contains(problem, Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public async Task A_bad_api_key_file_stops_the_silo_with_one_line_naming_the_file_and_line()
    {
        var files = new Dictionary<string, (string Text, string Problem)>
        {
            ["three-fields.txt"] = ("# tenants\nacme key-1\nglobex key 2\n", ":3: expected 'TENANT KEY'"),
            ["slash.txt"] = ("acme/evil key-1\n", ":1: tenant 'acme/evil'"),
            ["twice.txt"] = ("acme key-1\n\nglobex key-1\n", ":3: the key of tenant 'globex' is given twice"),
            ["empty.txt"] = ("# nobody yet\n\n", "holds no keys"),
        };
        foreach (var (name, (text, problem)) in files)
        {
            string path = Path.Combine(_dir, name);
            await File.WriteAllTextAsync(path, text, TestContext.Current.CancellationToken);
            var (exitCode, stdout, stderr) = await RunSiloAsync(["--model", Good, .. Ports, "--api-keys", path]);
            Assert.Equal(2, exitCode);
            string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains(path, line);
            Assert.Contains(problem, line);
            Assert.DoesNotContain("key-", stdout + stderr);
        }
        string missing = Path.Combine(_dir, "missing.txt");
        var (code, _, error) = await RunSiloAsync(["--model", Good, .. Ports, "--api-keys", missing]);
        Assert.Equal(2, code);
        Assert.Contains($"cannot read {missing}",
            Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    [Fact]
    public async Task A_busy_silo_port_stops_the_silo_with_one_line()
    {
        // Orleans would share a busy port (it binds with address reuse): two silos on one port must not happen
        using var other = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        other.Start();
        int port = ((System.Net.IPEndPoint)other.LocalEndpoint).Port;
        var (exitCode, _, stderr) = await RunSiloAsync("--model", Good, "--urls", "http://127.0.0.1:0", "--silo-port",
            port.ToString(), "--gateway-port", "0");
        Assert.Equal(1, exitCode);
        Assert.Equal($"weft-silo: silo port {port} is already in use",
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
