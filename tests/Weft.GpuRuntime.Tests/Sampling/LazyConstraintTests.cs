using System.Text;
using System.Text.Json;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>A lazy constraint (a tool call the model starts in auto mode) leaves the reply free until its trigger and
/// holds the rest to its grammar.</summary>
public sealed class LazyConstraintTests
{
    const string Schema = """
        {"type":"object","properties":{"n":{"enum":[1,2,3]}},"required":["n"],"additionalProperties":false}
        """;

    static JsonGrammar Grammar()
    {
        using var doc = JsonDocument.Parse(Schema);
        return JsonGrammar.FromSchema(doc.RootElement);
    }

    static int Masked(float[] logits) => logits.Count(float.IsNegativeInfinity);

    [Theory]
    [InlineData("Let me look <go>", "<go>", false)]
    [InlineData("  {", "{", true)]
    public void Tokens_are_free_before_the_trigger_and_masked_by_the_grammar_after_it(string prompt, string trigger,
        bool opening)
    {
        var tokenizer = GrammarVocabularies.Bpe;
        var grammar = Grammar();
        var triggers = new LazyTriggers(opening ? [] : [trigger], opening ? [trigger] : [], new HashSet<int>());
        var constraint = grammar.StartLazy(TokenTrie.Build(tokenizer), [], triggers);
        var tokens = new List<int> { tokenizer.BosId };
        var logits = new float[tokenizer.VocabSize];
        foreach (int token in tokenizer.Encode(prompt, addSpecial: false))
        {
            Array.Clear(logits);
            constraint.Apply(logits, tokens, 1);
            Assert.Equal(0, Masked(logits));
            constraint.Accepted(token);
            tokens.Add(token);
        }
        // from the trigger on, the grammar: random logits sampled to the end give a text it accepts
        var sampler = new Sampler(tokenizer.VocabSize);
        var p = new SamplingParams { Seed = 5 };
        var rng = new Random(5);
        int triggered = tokens.Count;
        for (int step = 0; step < 40; step++)
        {
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 8);
            constraint.Apply(logits, tokens, 1);
            Assert.True(Masked(logits) > logits.Length / 2, $"step {step} is not masked");
            int token = sampler.Sample(logits, p, 5, tokens, 1);
            if (tokenizer.EndOfGenerationIds.Contains(token)) break;
            constraint.Accepted(token);
            tokens.Add(token);
        }
        string call = (opening ? trigger : "") + tokenizer.Decode(tokens.Skip(triggered));
        Assert.True(grammar.MatchesSpaced(Encoding.UTF8.GetBytes(call)), call);
    }

    [Theory]
    [InlineData("{\"n\":12}", true)]
    [InlineData("\n{ \"n\" : 12 }", true)]
    [InlineData("{\n\n\t\"n\": 12\n}", true)]
    [InlineData("{\n                    \"n\": 12}", true)]
    // whitespace never splits a value, never follows the complete text, and each run is bounded
    [InlineData("{\"n\": 1 2}", false)]
    [InlineData("{\"n\": 12} ", false)]
    [InlineData("{\"n\":  12}", false)]
    [InlineData("{\n\n\n\"n\": 12}", false)]
    [InlineData("{\n                     \"n\": 12}", false)]
    public void A_lazily_held_call_may_space_its_json_as_models_write_it_within_a_bound(string text, bool accepted)
    {
        using var doc = JsonDocument.Parse("""
            {"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}
            """);
        var grammar = JsonGrammar.FromSchema(doc.RootElement);
        Assert.Equal(accepted, grammar.MatchesSpaced(Encoding.UTF8.GetBytes(text)));
        // the eager grammar's compact text is one of them
        Assert.Equal(text == "{\"n\":12}", grammar.Matches(Encoding.UTF8.GetBytes(text)));
    }

    [Fact]
    public void A_call_spaced_as_qwen_writes_it_is_not_masked_after_its_marker()
    {
        var tokenizer = GrammarVocabularies.Bpe;
        var constraint = Grammar().StartLazy(TokenTrie.Build(tokenizer), [.. tokenizer.EndOfGenerationIds],
            new LazyTriggers(["<tool_call>"], [], new HashSet<int>()));
        var tokens = new List<int> { tokenizer.BosId };
        var logits = new float[tokenizer.VocabSize];
        var reply = tokenizer.Encode("<tool_call>\n{\"n\": 2}", addSpecial: false);
        var masked = new List<string>();
        foreach (int token in reply)
        {
            Array.Clear(logits);
            constraint.Apply(logits, tokens, 1);
            if (float.IsNegativeInfinity(logits[token])) masked.Add(tokenizer.Decode([token]));
            constraint.Accepted(token);
            tokens.Add(token);
        }
        Assert.Empty(masked);
        // and then only the end
        Array.Clear(logits);
        constraint.Apply(logits, tokens, 1);
        Assert.Equal(logits.Length, Masked(logits) + tokenizer.EndOfGenerationIds.Count);
    }

    [Fact]
    public void An_opening_after_other_text_leaves_the_reply_free()
    {
        var tokenizer = GrammarVocabularies.Bpe;
        var constraint = Grammar().StartLazy(TokenTrie.Build(tokenizer), [],
            new LazyTriggers([], ["{"], new HashSet<int>()));
        var tokens = new List<int> { tokenizer.BosId };
        var logits = new float[tokenizer.VocabSize];
        foreach (int token in tokenizer.Encode("Sure: {\"n\": {", addSpecial: false))
        {
            constraint.Accepted(token);
            tokens.Add(token);
        }
        constraint.Apply(logits, tokens, 1);
        Assert.Equal(0, Masked(logits));
    }
}
