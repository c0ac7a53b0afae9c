using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Weft.Models;
using Weft.Models.Gguf;

namespace Weft.Silo.Tests;

/// <summary>A silo whose log is captured, on a model slow enough for the observability tests.</summary>
public abstract class LoggedSilo : SiloFixture
{
    /// <summary>Wider and deeper than the other silos' model, so that a 1000-token reply outlasts a second's
    /// summary (the fixture's own wrote one in a few hundred milliseconds, and a stream the test means to cancel
    /// could finish first) and a long reply outlasts a refused request.</summary>
    protected override DemoModelShape ModelShape { get; } =
        new("observed", 256, 6, 8, 4, 768, 1024, 1024, GgmlType.F32);

    LogCapture? _logs;

    /// <summary>The log from the first call on (the provider joins the silo's logger factory then).</summary>
    public LogCapture Logs
    {
        get
        {
            if (_logs is null)
            {
                _logs = new LogCapture();
                App.Services.GetRequiredService<ILoggerFactory>().AddProvider(_logs);
            }
            return _logs;
        }
    }
}

/// <summary>A silo with room for one running and one waiting request, a summary every second, and its log
/// captured.</summary>
public sealed class ObservedSilo : LoggedSilo
{
    protected override string[] Options =>
        ["--max-num-seqs", "1", "--max-num-batched-tokens", "64", "--max-waiting", "1", "--summary-interval", "1"];
}

/// <summary>Keeps every log line (category, level, message).</summary>
public sealed class LogCapture : ILoggerProvider
{
    public ConcurrentQueue<(string Category, LogLevel Level, string Message)> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, Lines);

    public void Dispose() { }

    sealed class Logger(string category, ConcurrentQueue<(string, LogLevel, string)> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter) =>
            lines.Enqueue((category, logLevel, formatter(state, exception)));
    }
}

/// <summary>What an operator sees: /metrics labelled by model, device and tenant, counters for every way a request
/// ends, the service named in target_info, one log line per request and a periodic summary.</summary>
public sealed class ObservabilityTests(ObservedSilo silo) : IClassFixture<ObservedSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    const string Model = SiloFixture.ModelName;

    [Fact]
    public async Task Metrics_carry_model_device_and_tenant_and_target_info_names_the_service()
    {
        var logs = silo.Logs;
        using var response = await silo.Http.PostAsync("/v1/completions",
            Http.Json("""{"prompt":"metrics","max_tokens":4,"temperature":0}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string id = (string)JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["id"]!;
        Assert.Equal(id, Assert.Single(response.Headers.GetValues("X-Request-Id")));
        // the request is counted when its sequence finishes, which may come just after the reply's last byte
        string finished =
            $"weft_requests_total{{otel_scope_name=\"Weft\",device=\"0\",finish_reason=\"length\",model=\"{Model}\"," +
            "tenant=\"default\"}";
        string text = "";
        await Http.WaitUntil(async () => Count(text = await silo.Http.GetStringAsync("/metrics", Ct), finished) >= 1,
            "the finished request counted", Ct);

        Assert.Matches("""(?m)^target_info\{.*service_name="weft".*\} 1$""", text);
        string request = $"device=\"0\",model=\"{Model}\",tenant=\"default\"";
        foreach (var histogram in new[] { "weft_request_queue_time_seconds", "weft_request_prefill_time_seconds",
            "weft_time_to_first_token_seconds", "weft_e2e_request_latency_seconds" })
        {
            Assert.Contains($"# TYPE {histogram} histogram\n", text);
            // the other test's cancelled streams may have had their first tokens too
            Assert.Matches($"{histogram}_count{{otel_scope_name=\"Weft\",{request}}} [1-9]", text);
        }
        // gauges: one series per device, not an average over the devices
        Assert.Contains($"weft_kv_cache_usage_ratio{{otel_scope_name=\"Weft\",device=\"0\",model=\"{Model}\"}}", text);
        Assert.Contains($"weft_requests_running{{otel_scope_name=\"Weft\",device=\"0\",model=\"{Model}\"}} ", text);
        Assert.Contains(logs.Lines, l => l.Category == "Weft.Requests" && l.Level == LogLevel.Information
            && Regex.IsMatch(l.Message, $"^request {id} tenant 'default' conversation 'default/.+' device 0: " +
                @"[0-9]+ prompt tokens \(0 cached\), 4 completion tokens, queue [0-9]+ ms, TTFT [0-9]+ ms, " +
                "[0-9]+ ms, length$"));
    }

    [Fact]
    public async Task Refused_and_cancelled_requests_are_counted_and_the_summary_shows_the_queue()
    {
        var logs = silo.Logs;
        using var http = silo.Client();
        const string longRequest =
            """{"prompt":"A long story","temperature":0,"max_tokens":1000,"ignore_eos":true,"stream":true}""";
        using var streams = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var sends = new List<Task<HttpResponseMessage>>();
        try
        {
            foreach (var (running, waiting) in new[] { (1, 0), (1, 1) })
            {
                sends.Add(http.SendAsync(
                    new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(longRequest) },
                    HttpCompletionOption.ResponseHeadersRead, streams.Token));
                await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load is var l
                    && l.Running == running && l.Waiting == waiting, $"{running} running, {waiting} waiting", Ct);
            }
            using var refused = await http.PostAsync("/v1/completions", Http.Json(longRequest), Ct);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            string id = Assert.Single(refused.Headers.GetValues("X-Request-Id"));
            Assert.StartsWith("cmpl-", id, StringComparison.Ordinal);
            Assert.Contains(logs.Lines, l => l.Category == "Weft.Requests" && l.Level == LogLevel.Information
                && Regex.IsMatch(l.Message, $"^request {id} tenant 'default' conversation 'default/.+': " +
                    @"refused \(queue_full\): "));
            // the summary of a second with work names the queue (its counts are those of that moment: the first
            // stream may already have ended on a fast machine)
            await Http.WaitUntil(() => Task.FromResult(logs.Lines.Any(l => l.Category == "Weft.Grains.ServingSummary"
                && Regex.IsMatch(l.Message, "[0-9]+ running, [0-9]+ waiting"))), "a summary line", Ct);
        }
        finally
        {
            streams.Cancel();
            foreach (var send in sends)
                try
                {
                    (await send).Dispose();
                }
                catch (OperationCanceledException)
                {
                }
        }
        string labels = $"{{otel_scope_name=\"Weft\",device=\"0\",model=\"{Model}\"";
        await Http.WaitUntil(async () => Count(await silo.Http.GetStringAsync("/metrics", Ct),
                $"weft_requests_cancelled_total{labels},tenant=\"default\"}}") >= 2,
            "both streams counted as cancelled", Ct);
        string text = await silo.Http.GetStringAsync("/metrics", Ct);
        Assert.True(
            Count(text, $"weft_requests_refused_total{labels},reason=\"queue_full\",tenant=\"default\"}}") >= 1);
        Assert.Equal(2, logs.Lines.Count(l => l.Category == "Weft.Requests" && l.Message.EndsWith(", cancelled",
            StringComparison.Ordinal)));
        // no error-level line for any of it
        Assert.DoesNotContain(logs.Lines, l => l.Level >= LogLevel.Error);
    }

    [Fact]
    public async Task A_chunked_prompts_prefill_spans_all_its_chunks_not_only_the_last()
    {
        // 200 prompt tokens at the silo's 64 per forward pass: four chunks, the last of which samples the one token
        string prompt = string.Join(",", Enumerable.Range(300, 200));
        var before = await silo.BatchGrain().GetStatsAsync();
        using var response = await silo.Http.PostAsync("/v1/completions",
            Http.Json($$"""{"prompt":[{{prompt}}],"max_tokens":1,"temperature":0}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var after = await silo.BatchGrain().GetStatsAsync();

        Assert.Equal(1, after.FirstTokens - before.FirstTokens);
        Assert.Equal(4, after.Ticks - before.Ticks);
        double forwardMs = after.MeanForwardMs * after.Ticks - before.MeanForwardMs * before.Ticks;
        double prefillMs = after.PrefillMs - before.PrefillMs;
        // from the start of the first chunk's pass to the end of the last one's: every pass and the gaps between them
        Assert.True(prefillMs >= 0.99 * forwardMs, $"prefill {prefillMs:F2} ms, forward passes {forwardMs:F2} ms");
    }

    /// <summary>The weft_* families whose series are a request's (labelled by tenant too); the others are a
    /// device's.</summary>
    static readonly string[] PerRequest =
    [
        "weft_prompt_tokens_total", "weft_cached_prompt_tokens_total", "weft_requests_total",
        "weft_requests_cancelled_total", "weft_requests_failed_total", "weft_requests_refused_total",
        "weft_request_queue_time_seconds", "weft_request_prefill_time_seconds", "weft_time_to_first_token_seconds",
        "weft_inter_token_latency_seconds", "weft_e2e_request_latency_seconds", "weft_constraint_mask_time_seconds",
    ];
    static readonly string[] PerDevice =
    [
        "weft_generation_tokens_total", "weft_tick_duration_seconds", "weft_batch_size", "weft_requests_running",
        "weft_requests_waiting", "weft_kv_cache_usage_ratio", "weft_preemptions_total",
    ];

    [Fact]
    public async Task Every_weft_series_carries_model_and_device_and_those_of_requests_the_tenant()
    {
        string text = await MetricsAfterARequestAsync();
        var families = Regex.Matches(text, "(?m)^# TYPE (weft_[a-z0-9_]+) ").Select(m => m.Groups[1].Value);
        // a new metric must be placed in one of the two lists
        Assert.Equal(PerRequest.Concat(PerDevice).Order(), families.Order());
        var samples = Regex.Matches(text, @"(?m)^(weft_[a-z0-9_]+)\{([^}]*)\} ");
        Assert.NotEmpty(samples);
        foreach (Match sample in samples)
        {
            string name = sample.Groups[1].Value;
            string family = PerRequest.Concat(PerDevice).Single(f => name == f
                || (name.StartsWith(f, StringComparison.Ordinal)
                    && name[f.Length..] is "_bucket" or "_sum" or "_count"));
            var labels = Regex.Matches(sample.Groups[2].Value, "([a-z_]+)=\"([^\"]*)\"")
                .ToDictionary(l => l.Groups[1].Value, l => l.Groups[2].Value);
            Assert.True(labels.GetValueOrDefault("model") is { Length: > 0 }, sample.Value);
            // a tenant's limit refuses a request before a device is chosen
            Assert.True(labels.GetValueOrDefault("device") is { Length: > 0 }
                || (labels.ContainsKey("device") && labels.GetValueOrDefault("reason") == "tenant_limit"),
                sample.Value);
            Assert.True(PerRequest.Contains(family) == labels.ContainsKey("tenant"), sample.Value);
        }
        // the rare endings are on /metrics at 0 from a tenant's first request on
        string request = $"device=\"0\",model=\"{Model}\"";
        Assert.Contains($"weft_requests_failed_total{{otel_scope_name=\"Weft\",{request},tenant=\"default\"}} ",
            text);
        Assert.Matches($"weft_inter_token_latency_seconds_count{{otel_scope_name=\"Weft\",{request}," +
            "tenant=\"default\"} [1-9]", text);
    }

    /// <summary>
    /// docs/grafana/weft.json: an importable dashboard (the datasource an input, every panel on it) whose every
    /// PromQL expression names only series this silo exports, so the dashboard cannot drift from the code.
    /// </summary>
    [Fact]
    public async Task The_grafana_dashboard_queries_only_series_the_silo_exports()
    {
        string text = await MetricsAfterARequestAsync();
        var exported = Regex.Matches(text, "(?m)^([a-z_][a-z0-9_]*)[{ ]").Select(m => m.Groups[1].Value).ToHashSet();
        var dashboard = JsonNode.Parse(await File.ReadAllTextAsync(
            Path.Combine(DockerFilesTests.Repo, "docs", "grafana", "weft.json"), Ct))!;

        Assert.Equal("DS_PROMETHEUS", (string?)dashboard["__inputs"]![0]!["name"]);
        Assert.Equal("prometheus", (string?)dashboard["__inputs"]![0]!["pluginId"]);
        Assert.Null(dashboard["id"]);
        Assert.True((int)dashboard["schemaVersion"]! >= 36);
        var panels = dashboard["panels"]!.AsArray().Select(p => p!).ToList();
        Assert.Equal(panels.Count, panels.Select(p => (int)p["id"]!).Distinct().Count());
        var variables = dashboard["templating"]!["list"]!.AsArray().Select(v => v!).ToList();
        Assert.Equal(["model", "device", "tenant"], variables.Select(v => (string)v["name"]!));

        var queries = new List<string>();
        foreach (var panel in panels.Where(p => (string?)p["type"] != "row"))
        {
            Assert.Equal("${DS_PROMETHEUS}", (string?)panel["datasource"]!["uid"]);
            Assert.NotNull(panel["gridPos"]);
            var targets = panel["targets"]!.AsArray();
            Assert.NotEmpty(targets);
            foreach (var target in targets)
            {
                Assert.Equal("${DS_PROMETHEUS}", (string?)target!["datasource"]!["uid"]);
                queries.Add((string)target["expr"]!);
            }
        }
        foreach (var variable in variables)
        {
            Assert.Equal("${DS_PROMETHEUS}", (string?)variable["datasource"]!["uid"]);
            queries.Add((string)variable["query"]!["query"]!);
        }
        var named = queries.SelectMany(q => Regex.Matches(q, "weft_[a-z0-9_]+").Select(m => (Query: q, Name: m.Value)))
            .ToList();
        Assert.All(named, n => Assert.True(exported.Contains(n.Name), $"{n.Name} in {n.Query}"));
        // every family the silo exports is on the dashboard
        Assert.All(PerRequest.Concat(PerDevice),
            f => Assert.Contains(named, n => n.Name.StartsWith(f, StringComparison.Ordinal)));
    }

    /// <summary>/metrics once a greedy 4-token request and a JSON-constrained one (whose masks have a histogram of
    /// their own) have been counted as finished.</summary>
    async Task<string> MetricsAfterARequestAsync()
    {
        using var response = await silo.Http.PostAsync("/v1/completions",
            Http.Json("""{"prompt":"metrics","max_tokens":4,"temperature":0}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var constrained = await silo.Http.PostAsync("/v1/chat/completions", Http.Json("""
            {"messages":[{"role":"user","content":"metrics"}],"max_tokens":4,"temperature":0,
             "response_format":{"type":"json_object"}}
            """), Ct);
        Assert.Equal(HttpStatusCode.OK, constrained.StatusCode);
        string text = "";
        string finished =
            $"weft_requests_total{{otel_scope_name=\"Weft\",device=\"0\",finish_reason=\"length\",model=\"{Model}\"," +
            "tenant=\"default\"}";
        await Http.WaitUntil(async () => Count(text = await silo.Http.GetStringAsync("/metrics", Ct), finished) >= 1,
            "the finished request counted", Ct);
        return text;
    }

    /// <summary>A series' value in Prometheus text, 0 when absent. The exporter reads every meter named "Weft" in the
    /// process, and other test classes run silos in this one: counts are at least this test's own, not exactly
    /// them.</summary>
    static long Count(string text, string series) =>
        Regex.Match(text, $"(?m)^{Regex.Escape(series)} ([0-9]+)( [0-9]+)?$") is { Success: true } m
            ? long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
}

/// <summary>A silo where a tenant has one request in progress at most, and its log captured.</summary>
public sealed class TenantLimitedSilo : LoggedSilo
{
    protected override string[] Options => ["--tenant-max-requests", "1"];
}

/// <summary>A tenant's limit as an operator sees it: the refusal counted by its reason and logged under the id the
/// client got.</summary>
public sealed class TenantLimitObservabilityTests(TenantLimitedSilo silo) : IClassFixture<TenantLimitedSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_request_over_the_tenants_limit_is_counted_as_refused_for_tenant_limit_and_logged()
    {
        var logs = silo.Logs;
        using var http = silo.Client();
        using var streams = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var send = http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Http.Json(
                """{"prompt":"A long story","temperature":0,"max_tokens":1000,"ignore_eos":true,"stream":true}""")
        }, HttpCompletionOption.ResponseHeadersRead, streams.Token);
        try
        {
            await Http.WaitUntil(async () => (await silo.BatchGrain().GetStatsAsync()).Load.Running == 1,
                "the first request running", Ct);
            using var refused = await http.PostAsync("/v1/completions",
                Http.Json("""{"prompt":"one more","max_tokens":4}"""), Ct);

            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("rate_limit_exceeded",
                (string?)JsonNode.Parse(await refused.Content.ReadAsStringAsync(Ct))!["error"]!["code"]);
            string id = Assert.Single(refused.Headers.GetValues("X-Request-Id"));
            Assert.Contains(logs.Lines, l => l.Category == "Weft.Requests" && l.Level == LogLevel.Information
                && Regex.IsMatch(l.Message, $"^request {id} tenant 'default' conversation 'default/.+': " +
                    @"refused \(tenant_limit\): "));
        }
        finally
        {
            streams.Cancel();
            try
            {
                (await send).Dispose();
            }
            catch (OperationCanceledException)
            {
            }
        }
        // refused before a device was chosen: the device label is empty
        string text = await silo.Http.GetStringAsync("/metrics", Ct);
        Assert.Matches($"(?m)^weft_requests_refused_total{{otel_scope_name=\"Weft\",device=\"\"," +
            $"model=\"{SiloFixture.ModelName}\",reason=\"tenant_limit\",tenant=\"default\"}} 1( |$)", text);
    }
}
