using System.Text;
using System.Text.RegularExpressions;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Models.Tokenization;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>GBNF grammars: the texts they accept, where a malformed one fails, and replies sampled from random logits
/// through the token mask, checked by matchers written here independently of the grammar engine.</summary>
public sealed class GbnfGrammarTests
{
    static Tokenizer Spm => GrammarVocabularies.Spm;
    static Tokenizer Bpe => GrammarVocabularies.Bpe;

    const string YesNo = """
        # a one-word answer
        root ::= ("yes" | "no") "."?
        """;

    const string Arithmetic = """
        root   ::= expr
        expr   ::= term (("+" | "-") term){0,3}
        term   ::= factor ([*/] factor)?
        factor ::= number | "(" expr ")"
        number ::= [1-9] [0-9]{0,2} | "0"
        """;

    const string Items = """
        root ::= item ("," " "? item){0,4}
        item ::= [a-z]+ | "\"" [^"\\\n\U00010000-\U0010FFFF]{0,6} "\""
        """;

    const string Bullets = """
        root ::= ("- " [A-Za-z] [A-Za-z ]{0,9} "\n"){1,3}
        """;

    public static readonly TheoryData<string, string> Grammars = new()
    {
        { YesNo, @"^(yes|no)\.?$" },
        { Items, "^(?:[a-z]+|\"[^\"\\\\\\n]{0,6}\")(?:, ?(?:[a-z]+|\"[^\"\\\\\\n]{0,6}\")){0,4}$" },
        { Bullets, @"^(?:- [A-Za-z][A-Za-z ]{0,9}\n){1,3}$" },
        { Arithmetic, "" },
    };


    static bool Accepts(string grammar, string text) =>
        GbnfGrammar.Parse(grammar).Matches(Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData(YesNo, "yes", true)]
    [InlineData(YesNo, "no.", true)]
    [InlineData(YesNo, "yes..", false)]
    [InlineData(YesNo, "nope", false)]
    [InlineData(Arithmetic, "(12+3)*40-7", true)]
    [InlineData(Arithmetic, "((1))", true)]
    [InlineData(Arithmetic, "01", false)]
    [InlineData(Arithmetic, "1+", false)]
    [InlineData(Items, "ab, \"x y\",c", true)]
    [InlineData(Items, "a,b,c,d,e,f", false)]
    [InlineData(Bullets, "- Hi there\n- B\n", true)]
    [InlineData(Bullets, "- \n", false)]
    [InlineData("root ::= \"\\x41\\u00e9\\U0001F600\\t\\\"\"", "Aé😀\t\"", true)]
    [InlineData("root ::= [^a-z]", "é", true)]
    [InlineData("root ::= [^a-z]", "q", false)]
    [InlineData("root ::= . .", "a😀", true)]
    [InlineData("root ::= \"ab\"{2,3}", "ababab", true)]
    [InlineData("root ::= \"ab\"{2,3}", "ab", false)]
    [InlineData("root ::= \"ab\"{2,}", "abababababab", true)]
    [InlineData("root ::= \"a\"+ \"a\" \"b\"", "aaab", true)]
    [InlineData("root ::= x? y*\nx ::= \"x\"\ny ::=\n  \"y\"\n  | \"z\"", "xyzzy", true)]
    [InlineData("root ::= (\"a\" | \"\") \"b\"", "b", true)]
    [InlineData("root ::= (\"\" | \"\"){40} \"x\"", "x", true)]
    public void A_grammar_accepts_exactly_its_texts(string grammar, string text, bool accepted) =>
        Assert.Equal(accepted, Accepts(grammar, text));

    /// <summary>Classes with non-ASCII ranges become UTF-8 byte ranges: every code point decides as .NET's regex
    /// class does.</summary>
    [Theory]
    [InlineData("[a-zà-ÿ]", "[a-zà-ÿ]")]
    [InlineData("[^a-z\\u00e9]", "[^a-z\\u00e9]")]
    [InlineData("[\\u07f0-\\u0810\\uffee-\\U00010010]", "")]
    public void A_character_class_takes_the_utf8_of_exactly_its_code_points(string gbnfClass, string regexClass)
    {
        var grammar = GbnfGrammar.Parse($"root ::= {gbnfClass}");
        var regex = regexClass.Length > 0 ? new Regex($"^{regexClass}$") : null;
        int[] probes = [.. Enumerable.Range(0, 0x900), .. Enumerable.Range(0xFF00, 0x1100), 0x10FFFF, 0x1F600];
        foreach (int cp in probes)
        {
            // .NET's regex classes match UTF-16 units, not code points above the BMP
            if (cp is >= 0xD800 and <= 0xDFFF || regex is not null && cp > 0xFFFF) continue;
            string text = char.ConvertFromUtf32(cp);
            bool expected = regex?.IsMatch(text) ?? cp is >= 0x7F0 and <= 0x810 or >= 0xFFEE and <= 0x10010;
            Assert.True(expected == grammar.Matches(Encoding.UTF8.GetBytes(text)), $"U+{cp:X4}");
        }
    }

    [Theory]
    [InlineData("root ::= \"a\" |\n  \"b\" )", 2, 7, "unmatched ')'")]
    [InlineData("root ::= item\n", 1, 10, "rule 'item' is not defined")]
    [InlineData("start ::= \"a\"", 1, 1, "no 'root' rule")]
    [InlineData("root ::= \"abc", 1, 10, "unterminated string literal")]
    [InlineData("root ::= [a-", 1, 10, "unterminated character class")]
    [InlineData("root ::= [z-a]", 1, 10, "reversed")]
    [InlineData("root ::= \"a\"{3,1}", 1, 13, "maximum below its minimum")]
    [InlineData("root ::= \"\\q\"", 1, 11, "unknown escape")]
    [InlineData("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"", 2, 1, "rule 'expr' is left-recursive")]
    [InlineData("root ::= (\"a\"?)*", 1, 10, "left-recursive")]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", 2, 1, "defined twice")]
    [InlineData("root ::= @", 1, 10, "unexpected '@'")]
    [InlineData("root = \"a\"", 1, 6, "expected '::='")]
    public void A_malformed_grammar_fails_saying_where(string grammar, int line, int column, string message)
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse(grammar));
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [MemberData(nameof(Grammars))]
    public void Replies_sampled_from_random_logits_through_the_mask_are_texts_of_the_grammar(string grammar,
        string regex)
    {
        var g = GbnfGrammar.Parse(grammar);
        foreach (var tokenizer in new[] { Spm, Bpe })
        {
            var trie = TokenTrie.Build(tokenizer);
            for (ulong seed = 1; seed <= 10; seed++)
            {
                string reply = new UTF8Encoding(false, throwOnInvalidBytes: true)
                    .GetString(Sample(g, trie, tokenizer, seed, forwardMs: (int)(seed % 2)));
                Assert.True(regex.Length > 0 ? Regex.IsMatch(reply, regex) : IsExpression(reply), reply);
            }
        }
    }

    /// <summary>The arithmetic grammar, recognized by recursive descent.</summary>
    static bool IsExpression(string s)
    {
        int i = 0;
        return Expr(0) && i == s.Length;

        bool Expr(int depth)
        {
            if (!Term(depth)) return false;
            for (int n = 0; n < 3 && i < s.Length && s[i] is '+' or '-'; n++)
            {
                i++;
                if (!Term(depth)) return false;
            }
            return true;
        }

        bool Term(int depth)
        {
            if (!Factor(depth)) return false;
            if (i < s.Length && s[i] is '*' or '/')
            {
                i++;
                return Factor(depth);
            }
            return true;
        }

        bool Factor(int depth)
        {
            if (i < s.Length && s[i] == '(')
            {
                i++;
                if (!Expr(depth + 1) || i == s.Length || s[i] != ')') return false;
                i++;
                return true;
            }
            int start = i;
            while (i < s.Length && char.IsAsciiDigit(s[i]) && i - start < 3) i++;
            return i > start && (s[start] != '0' || i == start + 1);
        }
    }

    /// <summary>Prints the median and p99 time of a mask for each grammar (run with --logger
    /// "console;verbosity=detailed" to see them).</summary>
    [Fact]
    public void Mask_time_per_token_is_measured()
    {
        var tokenizer = Bpe;
        var trie = TokenTrie.Build(tokenizer);
        foreach (var row in Grammars)
        {
            var micros = new List<double>();
            var tokens = new List<int>();
            for (ulong seed = 1; seed <= 4; seed++)
                Sample(GbnfGrammar.Parse(row.Data.Item1), trie, tokenizer, seed, forwardMs: 0, micros, tokens);
            // one mask per constrained token (the end token included), each far less than 50 ms; a mask copied from
            // the last walk may take less than the clock shows, but walking the trie always takes time
            Assert.Equal(tokens.Count, micros.Count);
            Assert.All(micros, t => Assert.InRange(t, 0, 50_000));
            Assert.Contains(micros, t => t > 0);
            micros.Sort();
            TestContext.Current.TestOutputHelper?.WriteLine($"bpe-2048 {(row.Data.Item1).Trim()[..12]}: median " +
                $"{micros[micros.Count / 2]:F1} µs, p99 {micros[(int)(micros.Count * 0.99)]:F1} µs");
        }
    }

    /// <summary>A reply sampled through the grammar's masks, end tokens raised by 6 (see
    /// <see cref="ConstrainedSampling.Sample"/>); with <paramref name="forwardMs"/> 0 each mask's time is added to
    /// <paramref name="micros"/>.</summary>
    static byte[] Sample(GbnfGrammar grammar, TokenTrie trie, Tokenizer tokenizer, ulong seed, int forwardMs,
        List<double>? micros = null, List<int>? sampled = null)
    {
        var constraint = grammar.Start(trie, []);
        return ConstrainedSampling.Sample(constraint, tokenizer, seed, forwardMs, endBoost: 6,
            _ => micros?.Add(((MaskConstraint<GbnfMatcher>)constraint).LastMaskMicros), sampled);
    }
}
