using System.Net;

namespace Weft.Silo.Tests;

/// <summary>The chat page is served from the silo's own assembly (tests/chat-page drives it in a browser).</summary>
public sealed class ChatPageTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    [Fact]
    public async Task The_root_serves_the_chat_page_without_a_key_or_any_file_beside_the_silo()
    {
        using var response = await silo.Http.GetAsync("/", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string html = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Contains("<title>Weft chat</title>", html);
        // the page talks to the API of its own origin, streaming and bound to the conversation's KV cache
        Assert.Contains("fetch(\"v1/chat/completions\"", html);
        Assert.Contains("conversation_id: current.id", html);
    }
}
