using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Weft.Abstractions;
using Weft.Grains;
using Weft.Models;

namespace Weft.Silo.Tests;

/// <summary>A model host that has validated its file but not yet loaded it onto the device, as during
/// start-up.</summary>
public sealed class LoadingTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("weft-silo-loading-").FullName;

    [Fact]
    public async Task While_the_model_loads_health_and_generation_answer_503()
    {
        string path = Path.Combine(_dir, "model.gguf");
        DemoModel.Create(path, SiloFixture.Shape);
        using var host = new ModelHost(Options.Create(new ModelHostOptions { Model = path }),
            NullLogger<ModelHost>.Instance);
        var api = new OpenAiApi(host, new SiloOptions(), null!, null!, NullLogger<OpenAiApi>.Instance);

        var health = new DefaultHttpContext();
        health.Response.Body = new MemoryStream();
        await api.HealthAsync(health);
        Assert.Equal(StatusCodes.Status503ServiceUnavailable, health.Response.StatusCode);
        Assert.Equal("loading", (string?)JsonNode.Parse(((MemoryStream)health.Response.Body).ToArray())!["status"]);

        var chat = new DefaultHttpContext();
        chat.Request.Body = new MemoryStream(Encoding.UTF8.GetBytes(
            """{"messages":[{"role":"user","content":"hi"}]}"""));
        var refusal = await Assert.ThrowsAsync<WeftException>(() => api.ChatAsync(chat));
        var error = ApiException.From(refusal);
        Assert.Equal(StatusCodes.Status503ServiceUnavailable, error.Status);
        Assert.NotNull(error.RetryAfter);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
