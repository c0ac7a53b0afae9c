using System.Net;

namespace Weft.Cli.Tests;

/// <summary>The weft tool as a new user meets it: URLs as the SDKs take them, failures as one line and a non-zero
/// exit, a load test that survives a server past its capacity, and the README's examples on the demo model.</summary>
public sealed class CliTests
{
    [Theory]
    [InlineData("http://127.0.0.1:8000")]
    [InlineData("http://127.0.0.1:8000/")]
    [InlineData("http://127.0.0.1:8000/v1")]
    [InlineData("http://127.0.0.1:8000/v1/")]
    public void A_server_url_means_its_root_with_or_without_v1(string url) =>
        Assert.Equal(new Uri("http://127.0.0.1:8000/"), ApiHttp.Root(url));

    [Fact]
    public async Task Chat_over_http_with_no_server_exits_1_with_one_line()
    {
        var (exitCode, stdout, stderr) = await WeftProcess.RunAsync("Hello\n",
            "chat", "--http", $"http://127.0.0.1:{FakeServer.FreePort()}/v1");

        Assert.Equal(1, exitCode);
        Assert.Empty(stdout);
        string line = Assert.Single(WeftProcess.Lines(stderr));
        Assert.StartsWith("weft: no server answers:", line);
    }

    [Fact]
    public async Task Chat_over_http_talks_to_a_server_given_with_v1()
    {
        using var server = new FakeServer(_ => HttpStatusCode.OK);
        // the fake serves completions only: the chat turn fails, and the piped session says so by its exit code
        var (exitCode, _, stderr) = await WeftProcess.RunAsync("Hello\n",
            "chat", "--http", $"http://127.0.0.1:{server.Port}/v1");

        Assert.Equal(1, exitCode);
        Assert.Contains($"HTTP http://127.0.0.1:{server.Port}/v1", stderr);
        Assert.Contains("weft: HTTP 404: Not Found", stderr);
    }

    [Fact]
    public async Task Bench_serve_counts_refused_and_failed_requests_per_level_and_goes_on()
    {
        // Requests are numbered across the run: 3 of warm-up (one per client of each level), then 4 and 8.
        using var server = new FakeServer(n => n % 2 == 0 ? HttpStatusCode.TooManyRequests
            : n % 3 == 0 ? HttpStatusCode.InternalServerError : HttpStatusCode.OK);
        var (exitCode, stdout, stderr) = await WeftProcess.RunAsync(null, "bench", "serve",
            "--url", $"http://127.0.0.1:{server.Port}/v1", "--concurrency", "1,2", "--requests", "4",
            "--prompt", "4", "--gen", "2");

        Assert.True(exitCode == 0, stderr);
        Assert.Equal(3 + 4 + 8, server.Requests);
        var lines = WeftProcess.Lines(stdout);
        // requests 4-7: two refused; 8-15: four refused, 9 and 15 failed
        Assert.Contains(lines, l => l.Trim() == "2 of 4 requests refused (429), 0 failed");
        Assert.Contains(lines, l => l.Trim().StartsWith("4 of 8 requests refused (429), 2 failed (first: HTTP 500",
            StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(HttpStatusCode.TooManyRequests, "weft: no request succeeded: 6 of 6 refused (429), 0 failed")]
    [InlineData(HttpStatusCode.InternalServerError,
        "weft: no request succeeded: 0 of 6 refused (429), 6 failed (first: HTTP 500")]
    public async Task Bench_serve_where_no_request_succeeds_still_prints_every_level_then_exits_1_with_one_line(
        HttpStatusCode answer, string expected)
    {
        using var server = new FakeServer(_ => answer);
        var (exitCode, stdout, stderr) = await WeftProcess.RunAsync(null, "bench", "serve",
            "--url", $"http://127.0.0.1:{server.Port}/v1", "--concurrency", "1,2", "--requests", "2",
            "--prompt", "4", "--gen", "2");

        Assert.Equal(1, exitCode);
        Assert.Equal(3 + 2 + 4, server.Requests);
        Assert.StartsWith(expected, Assert.Single(WeftProcess.Lines(stderr)), StringComparison.Ordinal);
        var lines = WeftProcess.Lines(stdout);
        Assert.Contains(lines, l => l.Trim().StartsWith(
            answer == HttpStatusCode.TooManyRequests ? "4 of 4 requests refused (429)" : "0 of 4 requests refused",
            StringComparison.Ordinal));
    }

    [Fact]
    public async Task Generate_runs_the_readme_prompt_ids_example_on_the_demo_model()
    {
        var (exitCode, _, stderr) = await WeftProcess.RunAsync(null,
            "generate", "--prompt-ids", "1,450,1000", "--max-tokens", "16", "--temperature", "0");

        Assert.True(exitCode == 0, stderr);
        Assert.Contains("3 prompt tokens", stderr);
        Assert.Contains("16 tokens in", stderr);
    }

    [Fact]
    public async Task Generate_with_a_token_id_outside_the_vocabulary_exits_1_with_one_line()
    {
        var (exitCode, _, stderr) = await WeftProcess.RunAsync(null,
            "generate", "--prompt-ids", "1,450,4996", "--max-tokens", "16");

        Assert.Equal(1, exitCode);
        Assert.Equal("weft: token id 4996 is outside the vocabulary (0..2047)",
            Assert.Single(WeftProcess.Lines(stderr)));
    }

    [Fact]
    public async Task Model_create_writes_a_shape_of_ones_own_that_generates()
    {
        string path = Path.Combine(Path.GetTempPath(), $"weft-cli-custom-{Guid.NewGuid():N}.gguf");
        try
        {
            var (exitCode, stdout, stderr) = await WeftProcess.RunAsync(null, "model", "create", "--out", path,
                "--dim", "192", "--layers", "3", "--heads", "6", "--kv-heads", "2", "--ffn", "500", "--context", "512");

            Assert.True(exitCode == 0, stderr);
            Assert.Contains("custom (llama, F32, dim 192, 3 layers, 6/2 heads, ffn 500, context 512, vocab 2048)",
                stdout);
            (exitCode, _, stderr) = await WeftProcess.RunAsync(null,
                "generate", "--model", path, "--prompt-ids", "1,450,1000", "--max-tokens", "4", "--temperature", "0");
            Assert.True(exitCode == 0, stderr);
            Assert.Contains("4 tokens in", stderr);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Model_create_with_heads_that_do_not_divide_the_dimension_exits_1_with_one_line()
    {
        string path = Path.Combine(Path.GetTempPath(), $"weft-cli-bad-{Guid.NewGuid():N}.gguf");
        var (exitCode, _, stderr) = await WeftProcess.RunAsync(null, "model", "create", "--out", path,
            "--dim", "200", "--heads", "6");

        Assert.Equal(1, exitCode);
        Assert.Equal("weft: dim 200 is not a multiple of 6 heads", Assert.Single(WeftProcess.Lines(stderr)));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Bench_serve_prints_llama_cpp_decoding_as_many_sequences_beside_each_level()
    {
        var (exitCode, stdout, stderr) = await WeftProcess.RunAsync(null, "bench", "serve", "--inprocess",
            "--peer", "llama.cpp", "--concurrency", "1,2", "--requests", "1", "--prompt", "4", "--gen", "4");

        Assert.True(exitCode == 0, stderr);
        var lines = WeftProcess.Lines(stdout);
        Assert.Contains(lines, l => l.StartsWith("peer       llama.cpp: batched decode", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("served/llama.cpp", StringComparison.Ordinal));
        // each level's row ends with llama.cpp's tokens/s and the ratio to it
        foreach (string clients in new[] { "1", "2" })
        {
            string row = Assert.Single(lines, l => l.TrimStart().StartsWith(clients + " ", StringComparison.Ordinal));
            string[] cells = row.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.EndsWith("x", cells[^1]);
            Assert.True(double.Parse(cells[^2], System.Globalization.CultureInfo.InvariantCulture) > 0, row);
        }
    }

    [Fact]
    public async Task Bench_serve_against_a_url_with_a_peer_but_no_model_file_exits_1_with_one_line()
    {
        var (exitCode, _, stderr) = await WeftProcess.RunAsync(null, "bench", "serve", "--url",
            "http://127.0.0.1:1/v1", "--peer", "llama.cpp");

        Assert.Equal(1, exitCode);
        Assert.Equal("weft: --peer with --url needs --model: the GGUF file the server serves",
            Assert.Single(WeftProcess.Lines(stderr)));
    }
}
