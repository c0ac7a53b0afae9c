using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>
/// Turns generated tokens into text one token at a time. Each token contributes exactly its llama_token_to_piece
/// bytes (no leading-space removal or space clean-up, which only make sense for a whole text); a UTF-8 character
/// split over several tokens (byte-fallback tokens, or byte-level BPE pieces) is held back until it is complete.
/// Not thread-safe: one decoder per stream.
/// </summary>
public sealed class StreamingDecoder
{
    readonly Tokenizer _tokenizer;
    readonly bool _renderSpecial;
    readonly Decoder _utf8 =
        new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    char[] _chars = new char[64];

    internal StreamingDecoder(Tokenizer tokenizer, bool renderSpecial)
    {
        _tokenizer = tokenizer;
        _renderSpecial = renderSpecial;
    }

    /// <summary>The text completed by this token: possibly empty, possibly including characters begun by earlier
    /// tokens.</summary>
    public string Push(int id) => Convert(_tokenizer.PieceForStreaming(id, _renderSpecial), flush: false);

    /// <summary>Whatever is still held back, with an incomplete character as U+FFFD; the decoder can then be
    /// reused.</summary>
    public string Flush() => Convert([], flush: true);

    string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        int needed = _utf8.GetCharCount(bytes, flush);
        if (needed > _chars.Length) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int count = _utf8.GetChars(bytes, _chars, flush);
        return new string(_chars, 0, count);
    }
}
