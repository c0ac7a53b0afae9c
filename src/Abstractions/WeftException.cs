namespace Weft.Abstractions;

/// <summary>Why a turn was refused; the HTTP API maps each to a status code.</summary>
public enum WeftErrorCode
{
    /// <summary>Malformed or out-of-range request fields (400). (Codes start at 1: a code lost on the way reads as
    /// 0.)</summary>
    InvalidRequest = 1,
    /// <summary>Prompt plus max_tokens exceeds the model's context (400).</summary>
    ContextLengthExceeded,
    /// <summary>The waiting queue is full; retry later (429).</summary>
    QueueFull,
    /// <summary>The model is still loading (503).</summary>
    Unavailable,
    /// <summary>The conversation is busy with another turn (409): turns of one conversation run one at a time, and a
    /// second one is refused rather than queued, so nobody can stall a conversation by flooding it.</summary>
    Conflict,
    /// <summary>The tenant is over one of its limits (429).</summary>
    TenantLimit,
    /// <summary>Another activation of the conversation (on a silo that took it over) stored a turn first; this turn
    /// was not stored and is to be resent (503).</summary>
    Superseded,
    /// <summary>The conversation store did not answer; nothing of the turn was stored that a resend would repeat
    /// (503).</summary>
    StorageUnavailable,
}

/// <summary>A refusal of a request, as opposed to a failure of the system: it carries a code and whether retrying can
/// help.</summary>
[GenerateSerializer, Alias("weft.WeftException")]
public sealed class WeftException : Exception
{
    public WeftException(WeftErrorCode code, string message, string? param = null) : base(message) =>
        (Code, Param) = (code, param);

    [Id(0)] public WeftErrorCode Code { get; }
    /// <summary>The request field at fault, as the OpenAI API names it ("temperature", "max_tokens"), when there is
    /// one.</summary>
    [Id(1)] public string? Param { get; }

    public bool Retryable => Code is WeftErrorCode.QueueFull or WeftErrorCode.Unavailable or WeftErrorCode.TenantLimit
        or WeftErrorCode.Superseded or WeftErrorCode.StorageUnavailable;
}
