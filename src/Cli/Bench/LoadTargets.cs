using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Weft.Abstractions;

namespace Weft.Cli.Bench;

/// <summary>Something that generates a completion for a token-id prompt and reports how many tokens each streamed piece
/// held.</summary>
interface ILoadTarget
{
    IAsyncEnumerable<int> GenerateAsync(int[] prompt, int maxTokens, CancellationToken cancellationToken);
}

/// <summary>The server refused a request for now (HTTP 429: its queue or the tenant's limit is full); the benchmark
/// counts these apart from failures.</summary>
sealed class RefusedException(string message) : Exception(message);

/// <summary>Conversations through grains, each request its own conversation; with a JSON schema, every reply is
/// constrained by it.</summary>
sealed class GrainTarget(IGrainFactory grains, string? jsonSchema = null) : ILoadTarget
{
    public async IAsyncEnumerable<int> GenerateAsync(int[] prompt, int maxTokens,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var conversation = grains.GetGrain<IConversationGrain>(Guid.NewGuid().ToString("n"));
        var request = new TurnRequest
        {
            PromptTokenIds = prompt,
            ReturnTokenIds = true,
            Sampling = new SamplingOptions
            {
                Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true, JsonSchema = jsonSchema
            },
        };
        await foreach (var d in conversation.SendAsync(request, cancellationToken))
            if (d.TokenIds.Count > 0) yield return d.TokenIds.Count;
    }
}

/// <summary>Streaming /v1/completions of an OpenAI-compatible server (token ids counted with
/// return_token_ids).</summary>
sealed class HttpTarget(HttpClient http, string model) : ILoadTarget
{
    public static async Task<HttpTarget> ConnectAsync(string url, string? apiKey)
    {
        var http = ApiHttp.Client(url, apiKey);
        JsonObject models;
        try
        {
            models = await http.GetFromJsonAsync<JsonObject>("v1/models")
                ?? throw new InvalidOperationException($"{url}: no model list");
        }
        catch (HttpRequestException e)
        {
            http.Dispose();
            throw new HttpRequestException(e.HttpRequestError, $"{url}: {e.Message}", e.InnerException, e.StatusCode);
        }
        string model = models["data"]?[0]?["id"]?.GetValue<string>()
            ?? throw new InvalidOperationException($"{url}: serves no model");
        return new HttpTarget(http, model);
    }

    public string Model => model;

    public async IAsyncEnumerable<int> GenerateAsync(int[] prompt, int maxTokens,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var body = new JsonObject
        {
            ["model"] = model,
            ["prompt"] = new JsonArray(prompt.Select(t => (JsonNode)t).ToArray()),
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
            ["stream"] = true,
            ["return_token_ids"] = true,
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.StatusCode == System.Net.HttpStatusCode.TooManyRequests)
            throw new RefusedException(await response.Content.ReadAsStringAsync(cancellationToken));
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException(
                $"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var data = line.AsMemory(6);
            if (data.Span.SequenceEqual("[DONE]")) yield break;
            var chunk = JsonNode.Parse(data.Span.ToString());
            if (chunk?["error"] is { } error)
                throw new InvalidOperationException($"server error: {error.ToJsonString()}");
            int n = chunk?["choices"]?[0]?["token_ids"]?.AsArray().Count ?? 0;
            if (n > 0) yield return n;
        }
    }
}
