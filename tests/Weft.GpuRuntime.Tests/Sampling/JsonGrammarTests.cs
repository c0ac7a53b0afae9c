using System.Text;
using System.Text.Json;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Models.Tokenization;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>JSON schemas compiled to grammars: the texts they accept, and replies sampled from random logits through
/// the token mask, which must parse and validate whatever the logits.</summary>
public sealed class JsonGrammarTests
{
    static Tokenizer Spm => GrammarVocabularies.Spm;
    static Tokenizer Bpe => GrammarVocabularies.Bpe;

    public static readonly TheoryData<string> Schemas =
    [
        """
        {"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"},
        "ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{"color":{"enum":["red","green","blue"]},"note":{"type":["string",
        "null"],"maxLength":8}},"required":["color"]}
        """,
        """{"type":"array","items":{"type":"number"},"minItems":1,"maxItems":4}""",
        """
        {"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","minLength":1,
        "maxLength":5},"maxItems":3},"nested":{"$ref":"#/$defs/point"}},"required":["tags","nested"],
        "$defs":{"point":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},
        "required":["x","y"]}}}
        """,
        """
        {"anyOf":[{"type":"object","properties":{"name":{"const":"get_weather"},
        "arguments":{"type":"object","properties":{"city":{"type":"string","maxLength":10}},
        "required":["city"]}},"required":["name","arguments"]},{"type":"object",
        "properties":{"name":{"const":"get_time"},"arguments":{"type":"object","properties":{},
        "additionalProperties":false}},"required":["name","arguments"]}]}
        """,
    ];


    static JsonGrammar Grammar(string schema)
    {
        using var doc = JsonDocument.Parse(schema);
        return JsonGrammar.FromSchema(doc.RootElement);
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""",
        """{"a":-12}""", true)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""",
        """{"a":1,"b":"x\"y\u00e9é"}""", true)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""",
        """{"b":"x"}""", false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}""", """{"a":1.5}""",
        false)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}""", """{"a": 1}""",
        false)]
    [InlineData("""{"type":"array","items":{"enum":["x",2,null]},"maxItems":2}""", """["x",null]""", true)]
    [InlineData("""{"type":"array","items":{"enum":["x",2,null]},"maxItems":2}""", """["x",2,2]""", false)]
    [InlineData("""{"type":"number"}""", "-0.5e+10", true)]
    [InlineData("""{"type":"number"}""", "01", false)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"ab\"", true)]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", "\"abcd\"", false)]
    [InlineData("""{"type":"string"}""", "\"\\ud800\"", false)]
    [InlineData("""{"type":["integer","null"]}""", "null", true)]
    public void A_schema_accepts_exactly_the_compact_json_it_describes(string schema, string text, bool matches) =>
        Assert.Equal(matches, Grammar(schema).Matches(Encoding.UTF8.GetBytes(text)));

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "pattern")]
    [InlineData("""{"type":"integer","minimum":3}""", "minimum")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "allOf")]
    [InlineData("""{"anyOf":[{"type":"string"},{"type":"string","maxLength":2}]}""", "anyOf")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","format":"date"}}}""", "format")]
    public void A_schema_keyword_the_grammar_cannot_guarantee_is_refused_by_name(string schema, string keyword) =>
        Assert.Equal(keyword, Assert.Throws<SchemaException>(() => Grammar(schema)).Keyword);

    [Theory]
    [MemberData(nameof(Schemas))]
    public void Replies_sampled_from_random_logits_through_the_mask_parse_and_match_the_schema(string schema)
    {
        var grammar = Grammar(schema);
        foreach (var tokenizer in new[] { Spm, Bpe })
        {
            var trie = TokenTrie.Build(tokenizer);
            for (ulong seed = 1; seed <= 12; seed++)
            {
                var reply = Sample(grammar, trie, tokenizer, seed, out _, forwardMs: (int)(seed % 2));
                using var doc = JsonDocument.Parse(reply);
                Assert.True(grammar.Matches(reply), Encoding.UTF8.GetString(reply));
            }
        }
    }

    [Fact]
    public void A_banned_token_is_never_sampled_and_the_mask_outranks_a_bias()
    {
        var tokenizer = Spm;
        var grammar = Grammar("""{"type":"boolean"}""");
        int t = tokenizer.FindToken("t") ?? tokenizer.FindToken("<0x74>")!.Value;
        var sampler = new Sampler(tokenizer.VocabSize);
        var logits = new float[tokenizer.VocabSize];
        for (ulong seed = 0; seed < 50; seed++)
        {
            var p = new SamplingParams
            {
                Seed = seed,
                LogitBias = new Dictionary<int, float> { [t] = -100, [5] = 100 },
                Constraint = grammar.Start(TokenTrie.Build(tokenizer), []),
            };
            int token = sampler.Sample(logits, p, seed, [1], 1);
            Assert.NotEqual(t, token);
            string piece = Encoding.UTF8.GetString(tokenizer.DecodeToken(token));
            Assert.True(piece.Length > 0 && ("true".StartsWith(piece, StringComparison.Ordinal)
                || "false".StartsWith(piece, StringComparison.Ordinal)), piece);
        }
    }

    /// <summary>Prints the median and p99 time of a mask, and of what the sampler waits for it when the mask is
    /// computed during a forward pass of 2 ms (run with --logger "console;verbosity=detailed" to see them).</summary>
    [Fact]
    public void Mask_time_per_token_is_measured()
    {
        foreach (var (name, tokenizer) in new[] { ("spm-1024", Spm), ("bpe-2048", Bpe) })
        {
            var trie = TokenTrie.Build(tokenizer);
            var masks = new List<double>();
            var waits = new List<double>();
            foreach (var schema in Schemas)
                for (ulong seed = 1; seed <= 4; seed++)
                {
                    var tokens = new List<int>();
                    Sample(Grammar(schema.Data), trie, tokenizer, seed, out var m, forwardMs: 0, tokens);
                    // one mask per constrained token, the end token included
                    Assert.Equal(tokens.Count, m.Count);
                    masks.AddRange(m);
                    tokens.Clear();
                    Sample(Grammar(schema.Data), trie, tokenizer, seed, out var w, forwardMs: 2, tokens);
                    Assert.Equal(tokens.Count, w.Count);
                    waits.AddRange(w);
                }
            // a mask takes far less than a forward pass on the slowest runner (one copied from the last walk may take
            // less than the clock shows, a walk always shows); a wait is never negative
            Assert.All(masks, t => Assert.InRange(t, 0, MaskBoundMicros));
            Assert.Contains(masks, t => t > 0);
            Assert.All(waits, t => Assert.InRange(t, 0, MaskBoundMicros));
            TestContext.Current.TestOutputHelper?.WriteLine($"{name}: mask {Percentiles(masks)}; " +
                $"wait after a 2 ms forward pass {Percentiles(waits)}");
        }
    }

    /// <summary>50 ms: the masks here take tens of microseconds; only a broken measurement reaches this.</summary>
    const double MaskBoundMicros = 50_000;

    static string Percentiles(List<double> micros)
    {
        micros.Sort();
        return $"median {micros[micros.Count / 2]:F1} µs, p99 {micros[(int)(micros.Count * 0.99)]:F1} µs " +
            $"({micros.Count} tokens)";
    }

    /// <summary>A reply sampled through the grammar's masks (see <see cref="ConstrainedSampling.Sample"/>). With
    /// <paramref name="forwardMs"/> 0, <paramref name="micros"/> are the masks' times (computed in Apply); otherwise
    /// the waits in Apply for masks computed during the simulated forward passes.</summary>
    static byte[] Sample(JsonGrammar grammar, TokenTrie trie, Tokenizer tokenizer, ulong seed, out List<double> micros,
        int forwardMs = 0, List<int>? sampled = null)
    {
        var constraint = grammar.Start(trie, []);
        var times = new List<double>();
        micros = times;
        return ConstrainedSampling.Sample(constraint, tokenizer, seed, forwardMs, applied: t =>
            times.Add(forwardMs == 0 ? ((MaskConstraint<Matcher>)constraint).LastMaskMicros : t), sampled: sampled);
    }
}
