using System.Text.Json;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Tests.Sampling;

/// <summary>A constraint reuses the last walk's mask while its state stays alike (inside a long string, around a
/// repetition): every mask it applies must equal the one a fresh constraint walks for the same tokens.</summary>
public sealed class MaskReuseTests
{

    public static readonly TheoryData<string> Constraints =
    [
        """json {"type":"object","properties":{"text":{"type":"string"},"n":{"type":"integer"}},"required":["text"]}""",
        """json {"type":"array","items":{"type":"string","minLength":3,"maxLength":400}}""",
        """gbnf root ::= "\"" [^"\\]* "\"" ("," [a-z]{0,80})*""",
    ];

    static Func<ITokenConstraint> Starter(string spec, TokenTrie trie)
    {
        if (spec.StartsWith("gbnf ", StringComparison.Ordinal))
        {
            var gbnf = GbnfGrammar.Parse(spec[5..]);
            return () => gbnf.Start(trie, []);
        }
        using var doc = JsonDocument.Parse(spec[5..]);
        var json = JsonGrammar.FromSchema(doc.RootElement);
        return () => json.Start(trie, []);
    }

    [Theory]
    [MemberData(nameof(Constraints))]
    public void Every_mask_equals_a_fresh_walk_for_the_same_tokens(string spec)
    {
        var tokenizer = GrammarVocabularies.Bpe;
        var start = Starter(spec, TokenTrie.Build(tokenizer));
        for (ulong seed = 1; seed <= 3; seed++)
        {
            var sampler = new Sampler(tokenizer.VocabSize);
            var p = new SamplingParams { Seed = seed };
            var constraint = start();
            var rng = new Random((int)seed);
            var tokens = new List<int> { tokenizer.BosId };
            var logits = new float[tokenizer.VocabSize];
            var fresh = new float[tokenizer.VocabSize];
            for (int step = 0; step < 120; step++)
            {
                for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 8);
                Array.Clear(fresh);
                constraint.Apply(logits, tokens, 1);
                start().Apply(fresh, tokens, 1);
                for (int t = 0; t < logits.Length; t++)
                    Assert.True(float.IsNegativeInfinity(logits[t]) == float.IsNegativeInfinity(fresh[t]),
                        $"token {t} at step {step}");
                int token = sampler.Sample(logits, p, seed, tokens, 1);
                if (tokenizer.EndOfGenerationIds.Contains(token)) break;
                constraint.Accepted(token);
                tokens.Add(token);
            }
        }
    }
}
