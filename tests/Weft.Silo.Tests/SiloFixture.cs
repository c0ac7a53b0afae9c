using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using Weft.Abstractions;
using Weft.Grains;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Silo.Tests;

/// <summary>The silo as Program.cs builds it, on loopback ports of its own, serving a small generated model on the cpu
/// engine.</summary>
public class SiloFixture : IAsyncLifetime
{
    public const string ModelName = "test-model";
    public static readonly DemoModelShape Shape = new("silo-test", 64, 2, 4, 2, 160, 1024, 1024, GgmlType.F32);

    readonly string _dir = Directory.CreateTempSubdirectory("weft-silo-").FullName;
    /// <summary>A folder of the fixture's own, deleted with it.</summary>
    protected string Dir => _dir;
    public string ModelPath => Path.Combine(_dir, "model.gguf");
    public WebApplication App { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Extra command-line options of a fixture.</summary>
    protected virtual string[] Options => [];

    /// <summary>The model the fixture serves.</summary>
    protected virtual DemoModelShape ModelShape => Shape;

    public async ValueTask InitializeAsync()
    {
        DemoModel.Write(ModelPath, ModelShape,
            DemoVocabulary.SentencePiece(ModelShape.VocabSize, ChatTemplates.TinyLlama));
        App = WeftSilo.Build([
            "--model", ModelPath, "--served-model-name", ModelName, "--engine", "cpu", "--kv-blocks", "1024",
            "--urls", "http://127.0.0.1:0", "--silo-port", TestHosts.FreePort().ToString(), "--gateway-port", "0",
            .. Options]);
        await App.StartAsync(TestContext.Current.CancellationToken);
        await App.Services.GetRequiredService<ModelHost>().Ready;
        BaseAddress = new Uri(App.Urls.Single());
        Http = Client();
    }

    /// <summary>
    /// A client that closes its connection when a response is disposed before its end, as a client that goes away
    /// does (by default .NET reads up to 1 MB of the rest to reuse the connection, and the server would not notice).
    /// </summary>
    public HttpClient Client() =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = BaseAddress };

    public OpenAIClient OpenAI(string key = "unused") =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(BaseAddress, "/v1") });

    public IBatchGrain BatchGrain() => App.Services.GetRequiredService<IGrainFactory>()
        .GetGrain<IBatchGrain>(
            new DeviceKey(App.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress, 0).ToString());

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
        GC.SuppressFinalize(this);
    }

}

/// <summary>Raw HTTP helpers: the tests see exactly what a client gets.</summary>
public static class Http
{
    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<(HttpStatusCode Status, JsonNode Body)> PostAsync(this HttpClient http, string path,
        string json, CancellationToken ct)
    {
        using var response = await http.PostAsync(path, Json(json), ct);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync(ct))!);
    }

    /// <summary>The "data:" payloads of a server-sent event stream, up to and including [DONE].</summary>
    public static async Task<List<string>> EventsAsync(HttpResponseMessage response, CancellationToken ct)
    {
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            events.Add(line["data: ".Length..]);
        }
        return events;
    }

    public static async Task<List<string>> StreamAsync(this HttpClient http, string path, string json,
        CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(json) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return await EventsAsync(response, ct);
    }

    public static async Task WaitUntil(Func<Task<bool>> condition, string what, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what}: not reached in 30 s");
            await Task.Delay(20, ct);
        }
    }
}
