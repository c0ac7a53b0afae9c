using System.Globalization;
using System.Text;

namespace Weft.Models.Tokenization;

/// <summary>The general category of a codepoint as llama.cpp's unicode tables group them, plus its whitespace
/// bit.</summary>
[Flags]
enum CodepointFlags : byte
{
    /// <summary>Only positions outside the text have no flags: every codepoint has exactly one category.</summary>
    None = 0,
    Number = 1 << 0,
    Letter = 1 << 1,
    Separator = 1 << 2,
    Mark = 1 << 3,
    Punctuation = 1 << 4,
    Symbol = 1 << 5,
    /// <summary>\p{C}: control, format, surrogate, private use and unassigned codepoints.</summary>
    Other = 1 << 6,
    Whitespace = 1 << 7,
}

/// <summary>
/// Codepoint helpers shared by the tokenizers. Categories come from .NET's Unicode data, which works on whole
/// codepoints (unlike Regex's \p{L}, which sees UTF-16 code units), so letters outside the BMP are letters here too.
/// </summary>
static class Unicode
{
    public const char SpaceEscape = '\u2581'; // ▁, SentencePiece's visible space

    static readonly CodepointFlags[] Ascii = BuildAscii();

    static CodepointFlags[] BuildAscii()
    {
        var t = new CodepointFlags[128];
        for (int c = 0; c < 128; c++) t[c] = Classify(c);
        return t;
    }

    public static CodepointFlags Flags(int cp) => cp < 128 ? Ascii[cp] : Classify(cp);

    static CodepointFlags Classify(int cp)
    {
        var flags = CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CodepointFlags.Letter,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                => CodepointFlags.Mark,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber
                => CodepointFlags.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                => CodepointFlags.Separator,
            UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
                or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
                or UnicodeCategory.FinalQuotePunctuation
                or UnicodeCategory.OtherPunctuation => CodepointFlags.Punctuation,
            UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
                or UnicodeCategory.OtherSymbol => CodepointFlags.Symbol,
            _ => CodepointFlags.Other,
        };
        return IsWhitespace(cp) ? flags | CodepointFlags.Whitespace : flags;
    }

    /// <summary>The White_Space set llama.cpp uses for \s (note: not U+001C..U+001F, which .NET's char.IsWhiteSpace
    /// includes).</summary>
    static bool IsWhitespace(int cp) => cp is (>= 0x09 and <= 0x0D) or 0x20 or 0x85 or 0xA0 or 0x1680
        or (>= 0x2000 and <= 0x200A) or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    /// <summary>
    /// The text as Encoding.UTF8 would see it: lone surrogates become U+FFFD, exactly what reaches llama.cpp when a
    /// .NET string is passed to it, so token boundaries computed on the UTF-16 string line up with its UTF-8 bytes.
    /// </summary>
    public static string WellFormed(string text)
    {
        int bad = IndexOfLoneSurrogate(text);
        if (bad < 0) return text;
        var sb = new StringBuilder(text.Length);
        // EnumerateRunes yields U+FFFD for lone surrogates
        foreach (var rune in text.EnumerateRunes()) sb.Append(rune.ToString());
        return sb.ToString();
    }

    static int IndexOfLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            return i;
        }
        return -1;
    }

    /// <summary>Codepoints of a well-formed string, and the UTF-16 offset where each begins (plus the end
    /// offset).</summary>
    public static (int[] Codepoints, int[] Offsets) Codepoints(ReadOnlySpan<char> text)
    {
        var cps = new int[text.Length];
        var offs = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length; n++)
        {
            offs[n] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cps[n] = char.ConvertToUtf32(text[i], text[i + 1]);
                i += 2;
            }
            else cps[n] = text[i++];
        }
        offs[n] = text.Length;
        return (cps[..n], offs[..(n + 1)]);
    }

    // GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted
    // to U+0100.. in byte order, so every byte has a visible, non-space character.
    public static readonly char[] ByteToChar = BuildByteToChar();
    static readonly short[] CharToByteTable = BuildCharToByte();

    static char[] BuildByteToChar()
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
            map[b] = IsPrintableByte(b) ? (char)b : (char)(256 + shifted++);
        return map;
    }

    static bool IsPrintableByte(int b) => b is (>= 0x21 and <= 0x7E) or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);

    static short[] BuildCharToByte()
    {
        var t = new short[324];
        Array.Fill(t, (short)-1);
        for (int b = 0; b < 256; b++) t[ByteToChar[b]] = (short)b;
        return t;
    }

    /// <summary>The byte a GPT-2 alphabet character stands for, or -1.</summary>
    public static int CharToByte(int cp) => cp < CharToByteTable.Length ? CharToByteTable[cp] : -1;

    /// <summary>The 256 alphabet characters in GPT-2's vocabulary order: printable bytes first, then the shifted
    /// ones.</summary>
    public static IEnumerable<char> ByteAlphabet() =>
        Enumerable.Range(0, 256).Where(IsPrintableByte)
            .Concat(Enumerable.Range(0, 256).Where(b => !IsPrintableByte(b))).Select(b => ByteToChar[b]);
}
