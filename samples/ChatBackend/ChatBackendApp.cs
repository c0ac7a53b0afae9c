using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using Weft.Abstractions;
using Weft.Client;

namespace Weft.Samples.ChatBackend;

/// <summary>
/// A chat backend for many users on a Weft cluster, as an application would put one in front of it: each user has
/// conversations of their own, the cluster keeps their histories and KV caches, and replies stream back as plain text.
/// The application only keeps which conversations are whose (in memory here; a real one would use its database).
/// </summary>
public static partial class ChatBackendApp
{
    /// <summary>A reply's length when the request does not say: without a limit a random-weight demo model rambles
    /// on for its whole context (~1,750 tokens in a first try).</summary>
    const int DefaultMaxTokens = 256;

    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        // the silo's gateway, 30000 unless it was started with --gateway-port
        int gatewayPort = builder.Configuration.GetValue("Weft:GatewayPort", WeftDefaults.GatewayPort);
        builder.AddWeftClient(client =>
            client.UseLocalhostClustering(gatewayPort, WeftDefaults.ServiceId, WeftDefaults.ClusterId));
        builder.Services.AddSingleton<Owners>();
        var app = builder.Build();

        app.MapPost("/users/{user}/conversations", (string user, Owners owners) =>
            Valid(user) ? Results.Ok(new { id = owners.Open(user) }) : Results.BadRequest());

        app.MapGet("/users/{user}/conversations", (string user, Owners owners) =>
            Results.Ok(owners.Of(user).Select(id => new { id })));

        app.MapGet("/users/{user}/conversations/{id}",
            async (string user, string id, Owners owners, WeftClient weft) =>
            {
                if (!owners.Owns(user, id)) return Results.NotFound();
                var history = await weft.Conversation(Key(user, id)).GetHistoryAsync();
                return Results.Ok(history.Messages.Select(m => new { m.Role, m.Content }));
            });

        // The user's message goes to the conversation's grain, which holds the history: only the new message is
        // sent, and the reply streams back as it is generated.
        app.MapPost("/users/{user}/conversations/{id}/messages",
            async (string user, string id, MessageRequest message, Owners owners, IChatClient chat,
                HttpResponse response, CancellationToken ct) =>
            {
                if (!owners.Owns(user, id)) return Results.NotFound();
                var options = new ChatOptions
                {
                    ConversationId = Key(user, id),
                    MaxOutputTokens = message.MaxTokens ?? DefaultMaxTokens,
                    Temperature = message.Temperature,
                };
                try
                {
                    var updates = chat.GetStreamingResponseAsync([new(ChatRole.User, message.Text)], options, ct);
                    await using var enumerator = updates.GetAsyncEnumerator(ct);
                    // the first update comes once the request is admitted: a refusal can still be an HTTP status
                    bool any = await enumerator.MoveNextAsync();
                    response.ContentType = "text/plain; charset=utf-8";
                    while (any)
                    {
                        await response.WriteAsync(enumerator.Current.Text, ct);
                        await response.Body.FlushAsync(ct);
                        any = await enumerator.MoveNextAsync();
                    }
                    return Results.Empty;
                }
                // once the reply has started its status is sent; a failure then cuts the stream short
                catch (WeftException e) when (e.Retryable && !response.HasStarted)
                {
                    return Results.Problem(e.Message, statusCode: StatusCodes.Status429TooManyRequests);
                }
                catch (WeftException e) when (!response.HasStarted)
                {
                    return Results.Problem(e.Message, statusCode: StatusCodes.Status400BadRequest);
                }
            });

        app.MapDelete("/users/{user}/conversations/{id}",
            async (string user, string id, Owners owners, WeftClient weft) =>
            {
                if (!owners.Close(user, id)) return Results.NotFound();
                await weft.Conversation(Key(user, id)).DeleteAsync();
                return Results.NoContent();
            });
        return app;
    }

    /// <summary>The cluster's conversation id: the user's name keeps one user's ids apart from another's.</summary>
    static string Key(string user, string id) => $"{user}:{id}";

    static bool Valid(string user) => UserName().IsMatch(user);

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex UserName();

    /// <summary>Which conversations are whose.</summary>
    sealed class Owners
    {
        readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _byUser = new();

        public string Open(string user)
        {
            string id = Guid.NewGuid().ToString("n");
            _byUser.GetOrAdd(user, _ => new())[id] = 0;
            return id;
        }

        public bool Owns(string user, string id) => _byUser.TryGetValue(user, out var ids) && ids.ContainsKey(id);

        public bool Close(string user, string id) => _byUser.TryGetValue(user, out var ids) && ids.TryRemove(id, out _);

        public IEnumerable<string> Of(string user) => _byUser.TryGetValue(user, out var ids) ? ids.Keys : [];
    }
}

/// <param name="MaxTokens">The reply's limit in tokens (default 256).</param>
/// <param name="Temperature">0 is greedy; null leaves the server's default.</param>
public sealed record MessageRequest(string Text, int? MaxTokens = null, float? Temperature = null);
