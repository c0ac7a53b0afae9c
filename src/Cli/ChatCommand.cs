using System.CommandLine;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Weft.Abstractions;
using Weft.Client;

namespace Weft.Cli;

/// <summary>`weft chat`: an interactive terminal chat with a running silo, streaming the reply as it is
/// generated.</summary>
static class ChatCommand
{
    public static Command Create()
    {
        var http = new Option<string?>("--http")
        {
            Description = "talk to the OpenAI-compatible HTTP API at this URL instead of joining the cluster as an " +
                "Orleans client"
        };
        var gateway = new Option<int>("--gateway-port")
        {
            Description = "the silo's Orleans gateway port (localhost clustering)",
            DefaultValueFactory = _ => WeftDefaults.GatewayPort
        };
        var conversation = new Option<string?>("--conversation")
        { Description = "continue the conversation with this id (default: a new one)" };
        var system = new Option<string?>("--system") { Description = "a system message to start with" };
        var apiKey = new Option<string?>("--api-key") { Description = "bearer token for --http" };
        var temperature = new Option<float>("--temperature") { DefaultValueFactory = _ => 0.7f };
        var maxTokens = new Option<int>("--max-tokens") { DefaultValueFactory = _ => 256 };
        var cmd = new Command("chat", "chat with a running silo; /reset starts over, /exit quits")
            { http, gateway, conversation, system, apiKey, temperature, maxTokens };
        cmd.SetAction(async (r, ct) =>
        {
            var sampling = new SamplingOptions
            { Temperature = r.GetValue(temperature), MaxTokens = r.GetValue(maxTokens) };
            string id = r.GetValue(conversation) ?? Guid.NewGuid().ToString("n");
            IChatSession session = r.GetValue(http) is { } url
                ? await HttpSession.ConnectAsync(url, r.GetValue(apiKey), id, sampling, ct)
                : await OrleansSession.ConnectAsync(r.GetValue(gateway), id, sampling, ct);
            // a refused turn (queue full, context exceeded) lets the user go on, but a script piping its input in
            // must see that a turn failed
            bool failed = false;
            await using (session)
            {
                Console.Error.WriteLine($"conversation {id} ({session.Describe}); /reset starts over, /exit quits");
                if (r.GetValue(system) is { } s) session.AddSystem(s);
                while (true)
                {
                    Console.Write("> ");
                    var line = Console.ReadLine();
                    if (line is null || line.Trim() == "/exit") return failed ? 1 : 0;
                    if (line.Trim() == "/reset")
                    {
                        await session.ResetAsync(ct);
                        Console.Error.WriteLine("(conversation reset)");
                        continue;
                    }
                    if (line.Trim().Length == 0) continue;
                    try
                    {
                        await foreach (var piece in session.SendAsync(line, ct)) Console.Write(piece);
                        Console.WriteLine();
                    }
                    // a server that went away (HttpRequestException) ends the chat with CliErrors' one line
                    catch (Exception e) when (e is WeftException or InvalidOperationException)
                    {
                        Console.Error.WriteLine($"\nweft: {e.Message}");
                        failed = true;
                    }
                }
            }
        });
        return cmd;
    }

    interface IChatSession : IAsyncDisposable
    {
        string Describe { get; }
        void AddSystem(string text);
        IAsyncEnumerable<string> SendAsync(string user, CancellationToken ct);
        Task ResetAsync(CancellationToken ct);
    }

    /// <summary>Joins the cluster as an Orleans client; the conversation grain keeps the history.</summary>
    sealed class OrleansSession(IHost host, WeftConversation conversation, SamplingOptions sampling, int port)
        : IChatSession
    {
        string? _system;

        public static async Task<OrleansSession> ConnectAsync(int gatewayPort, string id, SamplingOptions sampling,
            CancellationToken ct)
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Logging.SetMinimumLevel(LogLevel.None); // a failure to connect is reported below in one line
            builder.AddWeftClient(c =>
                c.UseLocalhostClustering(gatewayPort, WeftDefaults.ServiceId, WeftDefaults.ClusterId));
            var host = builder.Build();
            try
            {
                // the client keeps retrying a gateway that is not there; give up after a few seconds
                using var connect = CancellationTokenSource.CreateLinkedTokenSource(ct);
                connect.CancelAfter(TimeSpan.FromSeconds(10));
                await CliProgress.RunAsync($"connecting to gateway port {gatewayPort}", async _ =>
                {
                    await host.StartAsync(connect.Token);
                    return host;
                });
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                host.Dispose();
                throw new InvalidOperationException($"no silo answers on gateway port {gatewayPort} (start one with: " +
                    "dotnet run --project src/Silo -c Release)" +
                    $"{(e is OperationCanceledException ? "" : $": {e.Message}")}");
            }
            return new OrleansSession(host, host.Services.GetRequiredService<WeftClient>().Conversation(id), sampling,
                gatewayPort);
        }

        public string Describe => $"Orleans gateway localhost:{port}";

        public void AddSystem(string text) => _system = text;

        public async IAsyncEnumerable<string> SendAsync(string user,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            List<ChatMessage> messages =
                _system is null ? [new("user", user)] : [new("system", _system), new("user", user)];
            _system = null;
            await foreach (var d in
                conversation.SendAsync(new TurnRequest { Messages = messages, Sampling = sampling }, ct))
                yield return d.Text;
        }

        public Task ResetAsync(CancellationToken ct) => conversation.ResetAsync();

        public async ValueTask DisposeAsync()
        {
            await host.StopAsync();
            host.Dispose();
        }
    }

    /// <summary>The OpenAI-compatible API: the client sends the whole conversation, bound to one grain by its id so the
    /// server reuses its KV cache.</summary>
    sealed class HttpSession(string url, string? apiKey, string id, SamplingOptions sampling) : IChatSession
    {
        readonly HttpClient _http = ApiHttp.Client(url, apiKey);
        readonly List<JsonObject> _messages = [];

        /// <summary>Asks for the served model first, so a wrong URL or a dead port fails before the first
        /// prompt.</summary>
        public static async Task<HttpSession> ConnectAsync(string url, string? apiKey, string id,
            SamplingOptions sampling, CancellationToken ct)
        {
            var session = new HttpSession(url, apiKey, id, sampling);
            try
            {
                await session.ModelAsync(ct);
                return session;
            }
            catch (HttpRequestException e)
            {
                session._http.Dispose();
                throw new HttpRequestException(e.HttpRequestError, $"{url}: {e.Message}", e.InnerException,
                    e.StatusCode);
            }
            catch
            {
                session._http.Dispose();
                throw;
            }
        }

        public string Describe => $"HTTP {url}";

        public void AddSystem(string text) => _messages.Add(new JsonObject { ["role"] = "system", ["content"] = text });

        public async IAsyncEnumerable<string> SendAsync(string user,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            _messages.Add(new JsonObject { ["role"] = "user", ["content"] = user });
            var body = new JsonObject
            {
                ["model"] = await ModelAsync(ct),
                ["messages"] = new JsonArray(_messages.Select(m => (JsonNode)m.DeepClone()).ToArray()),
                ["stream"] = true,
                ["temperature"] = sampling.Temperature,
                ["max_tokens"] = sampling.MaxTokens,
            };
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            { Content = JsonContent.Create(body) };
            request.Headers.Add("X-Conversation-Id", id);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode)
            {
                _messages.RemoveAt(_messages.Count - 1);
                throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: " +
                    $"{ErrorMessage(await response.Content.ReadAsStringAsync(ct)) ?? response.ReasonPhrase}");
            }
            var reply = new System.Text.StringBuilder();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
            while (await reader.ReadLineAsync(ct) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]") continue;
                var chunk = JsonNode.Parse(line[6..]);
                if (chunk?["error"] is { } e) throw new InvalidOperationException(e["message"]?.ToString());
                if (chunk?["choices"]?[0]?["delta"]?["content"]?.GetValue<string>() is { Length: > 0 } text)
                {
                    reply.Append(text);
                    yield return text;
                }
            }
            _messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = reply.ToString() });
        }

        string? _model;

        /// <summary>The message of an OpenAI-style error body; null when the body is something else (a proxy's
        /// page, nothing).</summary>
        static string? ErrorMessage(string body)
        {
            try
            {
                return JsonNode.Parse(body)?["error"]?["message"]?.ToString();
            }
            catch (System.Text.Json.JsonException)
            {
                return null;
            }
        }

        async Task<string> ModelAsync(CancellationToken ct) =>
            _model ??= (await _http.GetFromJsonAsync<JsonObject>("v1/models", ct))
                ?["data"]?[0]?["id"]?.GetValue<string>()
                ?? throw new InvalidOperationException($"{url} serves no model");

        public Task ResetAsync(CancellationToken ct)
        {
            _messages.RemoveAll(m => m["role"]?.GetValue<string>() != "system");
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _http.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
