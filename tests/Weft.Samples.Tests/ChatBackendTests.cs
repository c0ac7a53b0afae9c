using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Weft.Grains;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;
using Weft.Samples.ChatBackend;
using Weft.Silo;

namespace Weft.Samples.Tests;

/// <summary>samples/ChatBackend against a silo started as Program.cs starts it, with a gateway on a port of its
/// own: users open conversations, talk in them concurrently, and see only their own.</summary>
public sealed class ChatBackendTests : IAsyncLifetime
{
    static readonly DemoModelShape Shape = new("sample-test", 64, 2, 4, 2, 160, 1024, 1024, GgmlType.F32);
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    readonly string _dir = Directory.CreateTempSubdirectory("weft-sample-").FullName;
    WebApplication _silo = null!, _backend = null!;
    HttpClient _http = null!;

    public async ValueTask InitializeAsync()
    {
        string model = Path.Combine(_dir, "model.gguf");
        DemoModel.Write(model, Shape, DemoVocabulary.SentencePiece(Shape.VocabSize, ChatTemplates.TinyLlama));
        int gateway = FreePort();
        _silo = WeftSilo.Build(["--model", model, "--engine", "cpu", "--kv-blocks", "256",
            "--urls", "http://127.0.0.1:0", "--silo-port", FreePort().ToString(),
            "--gateway-port", gateway.ToString()]);
        await _silo.StartAsync(Ct);
        await _silo.Services.GetRequiredService<ModelHost>().Ready;
        _backend = ChatBackendApp.Build(["--urls", "http://127.0.0.1:0", "--Weft:GatewayPort", gateway.ToString()]);
        await _backend.StartAsync(Ct);
        _http = new HttpClient { BaseAddress = new Uri(_backend.Urls.Single()) };
    }

    async Task<string> OpenAsync(string user)
    {
        var response = await _http.PostAsync($"users/{user}/conversations", null, Ct);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonObject>(Ct))!["id"]!.GetValue<string>();
    }

    async Task<string> SayAsync(string user, string id, string text)
    {
        var response = await _http.PostAsJsonAsync($"users/{user}/conversations/{id}/messages",
            new { text, maxTokens = 8, temperature = 0 }, Ct);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(Ct));
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsStringAsync(Ct);
    }

    async Task<string[]> RolesAsync(string user, string id) =>
        (await _http.GetFromJsonAsync<JsonArray>($"users/{user}/conversations/{id}", Ct))!
        .Select(m => m!["role"]!.GetValue<string>()).ToArray();

    [Fact]
    public async Task Users_talk_in_conversations_of_their_own_at_the_same_time()
    {
        string[] users = ["alice", "bob", "carol", "dave"];
        var ids = await Task.WhenAll(users.Select(OpenAsync));
        var first = await Task.WhenAll(users.Select((u, i) => SayAsync(u, ids[i], "Hello!")));
        // the same greedy first turn gives the same reply, whoever asks
        Assert.All(first, reply => Assert.Equal(first[0], reply));
        Assert.NotEmpty(first[0]);

        await SayAsync("alice", ids[0], "And then?");
        Assert.Equal(["user", "assistant", "user", "assistant"], await RolesAsync("alice", ids[0]));
        Assert.Equal(["user", "assistant"], await RolesAsync("bob", ids[1]));

        var alices = await _http.GetFromJsonAsync<JsonArray>("users/alice/conversations", Ct);
        Assert.Equal([ids[0]], alices!.Select(c => c!["id"]!.GetValue<string>()));
        // bob can neither read nor write alice's conversation
        Assert.Equal(HttpStatusCode.NotFound,
            (await _http.GetAsync($"users/bob/conversations/{ids[0]}", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await _http.PostAsJsonAsync($"users/bob/conversations/{ids[0]}/messages",
            new { text = "hi" }, Ct)).StatusCode);

        Assert.Equal(HttpStatusCode.NoContent,
            (await _http.DeleteAsync($"users/alice/conversations/{ids[0]}", Ct)).StatusCode);
        Assert.Empty((await _http.GetFromJsonAsync<JsonArray>("users/alice/conversations", Ct))!);
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _backend.StopAsync(CancellationToken.None);
        await _backend.DisposeAsync();
        await _silo.StopAsync(CancellationToken.None);
        await _silo.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
