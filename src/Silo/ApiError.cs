using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// A request the API refuses, with its HTTP status and the OpenAI error body
/// {"error":{"message","type","param","code"}}.
/// </summary>
sealed class ApiException(int status, string type, string code, string message, string? param = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string Code { get; } = code;
    public string? Param { get; } = param;
    /// <summary>Seconds after which retrying may succeed (429, 503).</summary>
    public int? RetryAfter { get; init; }

    public ErrorBody Body => new(new ErrorDetail(Message, Type, Param, Code));

    public static ApiException BadRequest(string message, string? param = null, string code = "invalid_value") =>
        new(StatusCodes.Status400BadRequest, "invalid_request_error", code, message, param);

    public static ApiException WrongType(string param, string expected) =>
        BadRequest($"'{param}' must be {expected}", param, "invalid_type");

    public static ApiException Unsupported(string param, string message) =>
        BadRequest(message, param, "unsupported_parameter");

    public static ApiException ModelNotFound(string name, string served) =>
        new(StatusCodes.Status404NotFound, "not_found_error", "model_not_found",
            $"the model '{name}' does not exist; this server serves '{served}'", "model");

    public static ApiException NotFound(string message) =>
        new(StatusCodes.Status404NotFound, "not_found_error", "not_found", message);

    public static ApiException Unauthorized() =>
        new(StatusCodes.Status401Unauthorized, "authentication_error", "invalid_api_key",
            "a valid API key is required: send the header 'Authorization: Bearer <key>'");

    public static ApiException Internal() =>
        new(StatusCodes.Status500InternalServerError, "server_error", "internal_error",
            "the server failed to process the request; see its log");

    /// <summary>The HTTP face of a grain's refusal.</summary>
    public static ApiException From(WeftException e) => e.Code switch
    {
        WeftErrorCode.ContextLengthExceeded => BadRequest(e.Message, e.Param, code: "context_length_exceeded"),
        WeftErrorCode.QueueFull =>
            new(StatusCodes.Status429TooManyRequests, "rate_limit_error", "queue_full", e.Message) { RetryAfter = 1 },
        WeftErrorCode.Unavailable => Unavailable(e.Message),
        WeftErrorCode.TenantLimit =>
            new(StatusCodes.Status429TooManyRequests, "rate_limit_error", "rate_limit_exceeded", e.Message)
            { RetryAfter = 1 },
        // by then the other silo holds the conversation: a resend soon is served from its stored copy
        WeftErrorCode.Superseded =>
            new(StatusCodes.Status503ServiceUnavailable, "service_unavailable", "conversation_superseded", e.Message)
            { RetryAfter = 1 },
        WeftErrorCode.StorageUnavailable => StorageUnavailable(),
        // a resend (a client whose connection broke mid-turn) can come before the turn it repeats ends: retrying
        // after a second, rather than at once, lets that turn finish and the resend be answered from its stored reply
        WeftErrorCode.Conflict =>
            new(StatusCodes.Status409Conflict, "invalid_request_error", "conversation_busy", e.Message, e.Param)
            { RetryAfter = 1 },
        _ => BadRequest(e.Message, e.Param),
    };

    public static ApiException Unavailable(string message) =>
        new(StatusCodes.Status503ServiceUnavailable, "service_unavailable", "model_not_ready", message)
        { RetryAfter = 5 };

    /// <summary>The store (membership and conversations) does not answer; the request changed nothing
    /// durable.</summary>
    public static ApiException StorageUnavailable() =>
        new(StatusCodes.Status503ServiceUnavailable, "service_unavailable", "storage_unavailable",
            "the conversation store is unreachable; retry later")
        { RetryAfter = 5 };

    public async Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        if (RetryAfter is { } seconds)
            response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await response.WriteAsJsonAsync(Body, ApiJson.Default.ErrorBody);
    }
}
