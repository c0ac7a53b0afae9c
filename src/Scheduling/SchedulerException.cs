namespace Weft.Scheduling;

/// <summary>
/// A request the scheduler refuses at admission. <see cref="Retryable"/> requests may succeed later (the waiting queue
/// is full: HTTP 429); the others never will as sent (too long for the model or the KV cache: HTTP 400).
/// </summary>
public sealed class SchedulerException(string message, bool retryable) : Exception(message)
{
    public bool Retryable { get; } = retryable;
}
