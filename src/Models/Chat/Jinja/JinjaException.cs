namespace Weft.Models.Chat.Jinja;

/// <summary>A template that does not parse or fails while rendering; the message says where (line and column of the
/// template text, both from 1).</summary>
public class JinjaException : Exception
{
    public JinjaException(string reason, int line, int column)
        : base($"{reason} (template line {line}, column {column})")
    {
        Reason = reason;
        Line = line;
        Column = column;
    }

    /// <summary>What went wrong, without the location.</summary>
    public string Reason { get; }
    public int Line { get; }
    public int Column { get; }
}

/// <summary>The template itself refused the input with raise_exception(message), e.g. roles that do not
/// alternate.</summary>
public sealed class JinjaRaisedException(string reason, int line, int column) : JinjaException(reason, line, column);

// Thrown below the node that knows its position; the interpreter adds the position on the way out.
sealed class JinjaRuntimeError(string reason) : Exception(reason);

// raise_exception's message, positioned by the interpreter like a runtime error.
sealed class JinjaRaise(string reason) : Exception(reason);
