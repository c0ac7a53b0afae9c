using Microsoft.Extensions.Logging;

namespace Weft.Grains;

/// <summary>
/// One line per request, named by the id its client got (the API's chatcmpl-…, cmpl-… or resp_… id), in a category
/// of its own so that an operator can turn it off (Logging:LogLevel:Weft.Requests=Warning).
/// </summary>
static partial class RequestLog
{
    public const string Category = "Weft.Requests";

    [LoggerMessage(Level = LogLevel.Information, Message = "request {Id} tenant '{Tenant}' conversation " +
        "'{Conversation}' device {Device}: {PromptTokens} prompt tokens ({CachedTokens} cached), {CompletionTokens} " +
        "completion tokens, queue {QueueMs:F0} ms, TTFT {TtftMs:F0} ms, {DurationMs:F0} ms, {Status}")]
    public static partial void Ended(ILogger logger, string id, string tenant, string conversation, int device,
        int promptTokens, int cachedTokens, int completionTokens, double queueMs, double ttftMs, double durationMs,
        string status);

    /// <summary>A 429: the request never ran. A tenant's limit refuses it before a device is chosen.</summary>
    [LoggerMessage(Level = LogLevel.Information, Message = "request {Id} tenant '{Tenant}' conversation " +
        "'{Conversation}': refused ({Reason}): {Problem}")]
    public static partial void Refused(ILogger logger, string id, string tenant, string conversation, string reason,
        string problem);
}
