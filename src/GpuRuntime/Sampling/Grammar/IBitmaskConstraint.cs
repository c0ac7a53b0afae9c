using Weft.Scheduling;

namespace Weft.GpuRuntime.Sampling.Grammar;

/// <summary>
/// A constraint whose mask is a set of allowed tokens, as bits: a device sampler uploads the bits (a 32nd of the
/// logits' bytes) rather than bringing the row's logits to the host for <see cref="ITokenConstraint.Apply"/>.
/// </summary>
interface IBitmaskConstraint : ITokenConstraint
{
    /// <summary>Writes the tokens allowed after <paramref name="tokens"/> as <see cref="ITokenConstraint.Apply"/>
    /// would leave them: token t is bit t % 64 of word t / 64 of <paramref name="allowed"/>, which spans the
    /// vocabulary. <see cref="ITokenConstraint.Accepted"/> follows with the token sampled under it.</summary>
    void Mask(IReadOnlyList<int> tokens, int numPromptTokens, Span<ulong> allowed);
}
