using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Weft.Silo.Tests;

/// <summary>
/// llama.cpp's grammar field on chat and text completions. The model's weights are random: what makes its replies
/// texts of the grammar is the mask, checked here by regular expressions and a recursive recognizer written apart
/// from the grammar engine.
/// </summary>
public sealed class GrammarTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    const string Arithmetic = """
        root   ::= expr
        expr   ::= term (("+" | "-") term){0,3}
        term   ::= factor ([*/] factor)?
        factor ::= number | "(" inner ")"
        inner  ::= number ([-+*/] number){0,3}
        number ::= [0-9]{1,3}
        """;

    // the arithmetic grammar as a regular expression: its parentheses nest one level only
    const string Number = @"\d{1,3}";
    static readonly string Factor = $@"(?:{Number}|\({Number}(?:[-+*/]{Number}){{0,3}}\))";
    static readonly string Term = $"{Factor}(?:[*/]{Factor})?";
    static readonly string Expression = $"^{Term}(?:[-+]{Term}){{0,3}}$";

    public static readonly TheoryData<string, string> Grammars = new()
    {
        { "root ::= (\"yes\" | \"no\") \".\"?", @"^(yes|no)\.?$" },
        {
            "root ::= \"[\" item (\", \" item){0,3} \"]\"\nitem ::= [a-z]{1,6} | [0-9]{1,4}",
            @"^\[(?:[a-z]{1,6}|[0-9]{1,4})(?:, (?:[a-z]{1,6}|[0-9]{1,4})){0,3}\]$"
        },
        { Arithmetic, Expression },
    };

    [Theory]
    [MemberData(nameof(Grammars))]
    public async Task Chat_replies_of_the_random_model_are_texts_of_the_grammar(string grammar, string regex)
    {
        for (int seed = 1; seed <= 5; seed++)
        {
            var (status, body) = await silo.Http.PostAsync("/v1/chat/completions", JsonSerializer.Serialize(new
            {
                messages = new[] { new { role = "user", content = "Answer." } },
                grammar,
                temperature = 1,
                seed,
                max_tokens = 400,
            }), Ct);
            Assert.Equal(HttpStatusCode.OK, status);
            string text = (string)body["choices"]![0]!["message"]!["content"]!;
            Assert.Equal("stop", (string?)body["choices"]![0]!["finish_reason"]);
            Assert.Matches(regex, text);
        }
    }

    [Fact]
    public async Task Text_completions_follow_the_grammar_for_many_seeds()
    {
        for (int seed = 1; seed <= 6; seed++)
        {
            var (status, body) = await silo.Http.PostAsync("/v1/completions", JsonSerializer.Serialize(new
            {
                prompt = "Compute:",
                grammar = Arithmetic,
                temperature = 1.5,
                seed,
                max_tokens = 400,
            }), Ct);
            Assert.Equal(HttpStatusCode.OK, status);
            string text = (string)body["choices"]![0]!["text"]!;
            Assert.True(Regex.IsMatch(text, Expression), text);
        }
    }

    [Fact]
    public async Task A_malformed_grammar_is_a_400_saying_where()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/completions", JsonSerializer.Serialize(new
        {
            prompt = "hi",
            grammar = "root ::= item\nitem ::= [a-z\n",
        }), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("grammar", (string?)body["error"]!["param"]);
        Assert.Contains("line 2, column 10: unterminated character class", (string?)body["error"]!["message"]);
    }

    [Fact]
    public async Task A_grammar_with_response_format_is_a_400()
    {
        var (status, body) = await silo.Http.PostAsync("/v1/chat/completions", """
            {"messages":[{"role":"user","content":"hi"}],"grammar":"root ::= \"a\"",
             "response_format":{"type":"json_object"}}
            """, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("grammar", (string?)body["error"]!["param"]);
        Assert.Contains("'response_format'", (string?)body["error"]!["message"]);
    }
}
