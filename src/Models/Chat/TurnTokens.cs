using System.Text;
using Weft.Models.Tokenization;

namespace Weft.Models.Chat;

/// <summary>
/// The exact token ids of a conversation so far and the chat text they stand for, carried from one turn to the next.
/// A chat turn re-renders the whole history; when the new text extends <see cref="Text"/>, <see cref="Prompt"/> keeps
/// <see cref="Ids"/> (the ones the KV cache holds, sampled ones included) and tokenizes only the rest. Re-tokenizing a
/// generated reply often splits it differently from how it was sampled and would throw the cache away from there.
/// </summary>
/// <remarks>
/// <para>Invariant: <see cref="Ids"/> are <c>EncodeChat(Text)</c> except inside
/// generated replies, whose sampled ids are kept as long as they decode to exactly the reply's text. An extension keeps
/// it when the rest starts at a special token, as it does for every supported template (the end of the reply): the
/// tokenizer splits text at special tokens before anything else, so <c>Encode(Text + rest)</c> is
/// <c>EncodeChat(Text) ++ EncodeChat(rest, addSpecial: false)</c> there.</para>
/// <para>A rest that starts in plain text is tokenized on its own all the same, as if a special token preceded it
/// (a SentencePiece vocabulary gives it a space prefix): the ids may then differ from a fresh tokenization.</para>
/// <para>An empty <see cref="Text"/> (no history, or a conversation of raw prompts) is never extended.</para>
/// </remarks>
public sealed record TurnTokens(string Text, IReadOnlyList<int> Ids)
{
    public static TurnTokens Empty { get; } = new("", []);

    /// <summary>The prompt ids of a turn whose whole conversation renders to <paramref name="rendered"/>.</summary>
    public int[] Prompt(Tokenizer tokenizer, string rendered)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(rendered);
        return Text.Length > 0 && rendered.StartsWith(Text, StringComparison.Ordinal)
            ? [.. Ids, .. tokenizer.EncodeChat(rendered[Text.Length..], addSpecial: false)]
            : tokenizer.EncodeChat(rendered);
    }

    /// <summary>
    /// What the next turn can extend once this turn's reply is complete: the prompt and the reply's sampled ids
    /// (without a final end-of-generation token, which the next rendering writes as template text) standing for the
    /// rendered prompt and the reply's text. When a stop string cut <paramref name="replyText"/> short of the sampled
    /// ids, only the prompt is kept. <paramref name="rendered"/> is null for a raw prompt: the ids are kept, no
    /// text is.
    /// </summary>
    public static TurnTokens AfterReply(
        Tokenizer tokenizer, IReadOnlyList<int> prompt, string? rendered, IReadOnlyList<int> reply, string replyText)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int count = reply.Count > 0 && tokenizer.EndOfGenerationIds.Contains(reply[^1]) ? reply.Count - 1 : reply.Count;
        var decoder = tokenizer.CreateStreamingDecoder();
        var decoded = new StringBuilder();
        for (int i = 0; i < count; i++) decoded.Append(decoder.Push(reply[i]));
        decoded.Append(decoder.Flush());
        bool exact = decoded.ToString() == replyText;
        int[] ids = exact ? [.. prompt, .. reply.Take(count)] : [.. prompt];
        return new(rendered is null ? "" : exact ? rendered + replyText : rendered, ids);
    }
}
