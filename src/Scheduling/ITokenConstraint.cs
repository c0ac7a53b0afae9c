namespace Weft.Scheduling;

/// <summary>
/// Restricts a sequence's next token (a grammar, a JSON schema). One instance belongs to one sequence's turn and is
/// called by one sampler at a time; it follows the sequence's generated tokens itself, so preemption and batching do
/// not change what it allows.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logit of every token the constraint forbids after <paramref name="tokens"/> to negative
    /// infinity.</summary>
    /// <param name="tokens">The sequence's tokens so far (prompt then generated).</param>
    void Apply(Span<float> logits, IReadOnlyList<int> tokens, int numPromptTokens);

    /// <summary>The token the sampler picked after <see cref="Apply"/>: the constraint may compute the next step's
    /// mask now, while the next forward pass runs.</summary>
    void Accepted(int token);
}
