namespace Weft.Silo;

/// <summary>
/// The chat page at "/": one static HTML file with its script, embedded in the silo's assembly so that serving it
/// needs no build step and no files beside the binary. It talks to the OpenAI-compatible API of the same origin.
/// </summary>
public static class ChatPage
{
    const string Resource = "Weft.Silo.chat.html";

    static readonly Lazy<byte[]> Html = new(() =>
    {
        using var stream = typeof(ChatPage).Assembly.GetManifestResourceStream(Resource)
            ?? throw new InvalidOperationException($"the silo's assembly lacks {Resource}");
        using var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        return bytes.ToArray();
    });

    public static void MapChatPage(this WebApplication app) =>
        app.MapGet("/", () => Results.Bytes(Html.Value, "text/html; charset=utf-8"));
}
