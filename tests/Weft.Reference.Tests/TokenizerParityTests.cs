using System.Text;
using LLama.Native;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Reference.Tests;

/// <summary>
/// Small models, one per vocabulary variant, written once into a temporary folder for the test class: each is
/// loaded both by llama.cpp (vocabulary only) and by <see cref="Tokenizer.FromGguf"/>.
/// </summary>
public sealed class TokenizerParityModels : IDisposable
{
    readonly string _folder = Directory.CreateTempSubdirectory("weft-tokenizer-parity-").FullName;
    readonly Dictionary<string, string> _paths = [];
    readonly Lock _lock = new();

    public static readonly VocabularySpec Spm = DemoVocabulary.SentencePiece(4000);
    public static readonly VocabularySpec Bpe = DemoVocabulary.ByteLevelBpe(4000);

    /// <summary>Vocabulary variants by name; together they reach every rule of llama.cpp's tokenizer that Weft
    /// reproduces.</summary>
    public static readonly Dictionary<string, VocabularySpec> Vocabularies = new()
    {
        ["spm"] = Spm,
        // User-defined tokens are matched even without parse_special; tokens named like end-of-turn, fill-in-the-middle
        // and gpt-oss markers get llama.cpp's type promotions.
        ["spm-special"] = ReplaceLast(Spm, ("<tool_call>", TokenType.UserDefined), ("[INST]", TokenType.UserDefined),
            ("qz", TokenType.UserDefined), ("▁zqx", TokenType.UserDefined), ("<|im_end|>", TokenType.Normal),
            ("<|fim_prefix|>", TokenType.Normal), ("<|fim_pad|>", TokenType.Normal), ("<|channel|>", TokenType.Control),
            ("<|endoftext|>", TokenType.UserDefined)),
        // Pieces with "▁" inside let merges cross word starts (the general, slower path).
        ["spm-inner-space"] = ReplaceLast(Spm, ("e▁t", TokenType.Normal), ("s▁", TokenType.Normal),
            ("o▁w", TokenType.Normal), ("▁▁", TokenType.Normal)),
        ["spm-no-prefix"] = Spm with { AddSpacePrefix = false, AddBos = false },
        ["bpe-llama-bpe"] = Bpe,
        ["bpe-qwen2"] = DemoVocabulary.ByteLevelBpe(4000, "qwen2") with { AddBos = false },
        ["bpe-missing-pre"] = Bpe with { Pre = null },
        // o200k_harmony's <|end|> rule, named tokens promoted to control, user-defined tokens.
        ["bpe-special"] = ReplaceLast(Bpe, ("<tool_call>", TokenType.UserDefined), ("Ġzqx", TokenType.UserDefined),
            ("<|endoftext|>", TokenType.Normal), ("<|file_sep|>", TokenType.Normal), ("<|end|>", TokenType.Normal),
            ("<|return|>", TokenType.Normal), ("<|call|>", TokenType.Control)),
    };

    /// <summary>Replaces the last learned pieces (before any special tokens) with the given tokens.</summary>
    internal static VocabularySpec ReplaceLast(VocabularySpec v, params (string Text, TokenType Type)[] replacements)
    {
        var tokens = (string[])v.Tokens.Clone();
        var types = (int[])v.TokenTypes.Clone();
        int at = (v.Model == "gpt2" ? tokens.Length - DemoVocabulary.ByteLevelSpecialTokens.Count : tokens.Length)
            - replacements.Length;
        foreach (var (text, type) in replacements)
        {
            if (tokens.Contains(text)) throw new ArgumentException($"'{text}' is already in the vocabulary");
            (tokens[at], types[at]) = (text, (int)type);
            at++;
        }
        return v with { Tokens = tokens, TokenTypes = types };
    }

    public string PathOf(string name, VocabularySpec vocab)
    {
        lock (_lock)
        {
            if (!_paths.TryGetValue(name, out var path))
            {
                path = Path.Combine(_folder, name + ".gguf");
                DemoModel.Write(path,
                    new DemoModelShape(name, 64, 1, 4, 4, 128, vocab.Tokens.Length, 256, GgmlType.F32), vocab);
                _paths[name] = path;
            }
            return path;
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}

public sealed class TokenizerParityTests(TokenizerParityModels models) : IClassFixture<TokenizerParityModels>
{
    public static TheoryData<string> Variants => [.. TokenizerParityModels.Vocabularies.Keys];

    /// <summary>Every supported pre-tokenizer name, over the Llama 3 style vocabulary.</summary>
    public static TheoryData<string> PreTokenizers => [.. Tokenizer.SupportedPreTokenizers];

    (LlamaVocab Llama, Tokenizer Ours) Load(string name, VocabularySpec vocab)
    {
        string path = models.PathOf(name, vocab);
        using var file = GgufFile.Open(path);
        return (LlamaVocab.Load(path), Tokenizer.FromGguf(file));
    }

    (LlamaVocab Llama, Tokenizer Ours) Load(string variant) =>
        Load(variant, TokenizerParityModels.Vocabularies[variant]);

    [Theory]
    [MemberData(nameof(Variants))]
    public void Encode_matches_llama_tokenize(string variant)
    {
        var (llama, ours) = Load(variant);
        using (llama) AssertEncodeParity(llama, ours, Corpus.Concat(Fuzz));
    }

    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void Encode_matches_llama_tokenize_for_every_supported_pre_tokenizer(string pre)
    {
        var (llama, ours) = Load("pre-" + pre, TokenizerParityModels.Bpe with { Pre = pre });
        using (llama) AssertEncodeParity(llama, ours, Corpus);
    }

    static void AssertEncodeParity(LlamaVocab llama, Tokenizer ours, IEnumerable<string> texts)
    {
        var failures = new List<string>();
        foreach (string text in texts)
            foreach (bool addSpecial in (bool[])[true, false])
                foreach (bool parseSpecial in (bool[])[true, false])
                {
                    int[] expected = llama.Tokenize(text, addSpecial, parseSpecial);
                    int[] actual = ours.Encode(text, addSpecial, parseSpecial);
                    if (!expected.SequenceEqual(actual))
                        failures.Add($"{Show(text)} (addSpecial {addSpecial}, parseSpecial {parseSpecial}): " +
                            $"llama.cpp [{string.Join(' ', expected)}], ours [{string.Join(' ', actual)}]");
                }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n{string.Join('\n', failures.Take(20))}");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Decode_matches_llama_detokenize(string variant)
    {
        var (llama, ours) = Load(variant);
        using var _ = llama;
        var failures = new List<string>();
        foreach (string text in Corpus.Concat(Fuzz))
            foreach (bool withBos in (bool[])[true, false]) // the leading-space rule depends on what comes first
                foreach (bool renderSpecial in (bool[])[true, false])
                {
                    int[] ids = llama.Tokenize(text, withBos, parseSpecial: true);
                    string expected = Encoding.UTF8.GetString(llama.Detokenize(ids, renderSpecial));
                    string actual = ours.Decode(ids, renderSpecial);
                    if (expected != actual)
                        failures.Add($"{Show(text)} (BOS {withBos}, renderSpecial {renderSpecial}): " +
                            $"llama.cpp {Show(expected)}, ours {Show(actual)}");
                }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n{string.Join('\n', failures.Take(20))}");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Every_token_has_llama_cpp_piece_type_and_end_of_generation_flag(string variant)
    {
        var (llama, ours) = Load(variant);
        using var _ = llama;
        Assert.Equal(llama.Count, ours.VocabSize);
        Assert.Equal(llama.Bos, ours.BosId);
        Assert.Equal(llama.Eos, ours.EosId);
        Assert.Equal(llama.AddBos, ours.AddBos);
        var failures = new List<string>();
        for (int id = 0; id < ours.VocabSize; id++)
        {
            foreach (bool special in (bool[])[true, false])
                if (!llama.TokenToPiece(id, special).AsSpan().SequenceEqual(ours.DecodeToken(id, special)))
                    failures.Add($"piece of {id} '{ours.TokenText(id)}' (special {special})");
            if (llama.IsEndOfGeneration(id) != ours.EndOfGenerationIds.Contains(id))
                failures.Add($"end of generation {id} '{ours.TokenText(id)}'");
            if (ExpectedType(llama.Attributes(id)) != ours.GetTokenType(id))
                failures.Add($"type of {id} '{ours.TokenText(id)}': {llama.Attributes(id)} vs {ours.GetTokenType(id)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n{string.Join('\n', failures.Take(20))}");
    }

    /// <summary>llama.cpp keeps attribute bits (a promoted token is Normal|Control); the tokenizer reports the dominant
    /// type.</summary>
    static TokenType ExpectedType(LLamaTokenAttr a) =>
        a.HasFlag(LLamaTokenAttr.Control) ? TokenType.Control
        : a.HasFlag(LLamaTokenAttr.UserDefined) ? TokenType.UserDefined
        : a.HasFlag(LLamaTokenAttr.Unknown) ? TokenType.Unknown
        : a.HasFlag(LLamaTokenAttr.Byte) ? TokenType.Byte
        : a.HasFlag(LLamaTokenAttr.Unused) ? TokenType.Unused
        : TokenType.Normal;

    /// <summary>
    /// Mistral 7B Instruct v0.1's own template over a two-turn chat, tokenized as the silo tokenizes a prompt (the
    /// leading BOS text dropped because the tokenizer adds BOS, special tokens parsed), with "▁▁" and "▁[" in the
    /// vocabulary as in Mistral's and Llama 2's. Transformers, with the Metaspace pre-tokenizer ("prepend_scheme":
    /// "first") of Mistral's tokenizer.json, gives "&lt;s&gt; [INST]" and "&lt;/s&gt; [INST]" as "▁[INST]", the
    /// template's own space and no prefix; llama.cpp adds its prefix after every special token ("▁▁[INST]"). So the
    /// expected ids are llama.cpp's for the same text without the space after each special token, where its
    /// prefix stands for the template's space.
    /// </summary>
    [Fact]
    public void A_mistral_v1_chat_prompt_tokenizes_as_transformers_does_not_with_llama_cpp_s_doubled_space()
    {
        var vocab = ReplaceLastMissing(TokenizerParityModels.Spm, "▁▁", "▁[", "[", "]");
        var (llama, ours) = Load("spm-mistral", vocab);
        using var _ = llama;
        var template = ChatTemplate.Resolve(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Templates",
            "mistral-v1.jinja")), null, ours.TokenText(ours.BosId), ours.TokenText(ours.EosId), ours.AddBos);
        string text = template.Render([("system", "Be brief."), ("user", "Hello"), ("assistant", "Hi there."),
            ("user", " How are you? ")], addGenerationPrompt: true);
        Assert.StartsWith(" [INST] Be brief.", text, StringComparison.Ordinal);
        string eos = ours.TokenText(ours.EosId);
        Assert.Contains(eos + " [INST]", text, StringComparison.Ordinal);

        int[] expected = llama.Tokenize(text[1..].Replace(eos + " ", eos, StringComparison.Ordinal),
            addSpecial: true, parseSpecial: true);
        int[] actual = ours.EncodeChat(text);
        Assert.True(expected.SequenceEqual(actual),
            $"llama.cpp without the spaces [{Pieces(ours, expected)}]\nours [{Pieces(ours, actual)}]");
        Assert.Equal(ours.BosId, actual[0]);
        Assert.StartsWith("▁[INST]▁Be▁brief.", string.Concat(actual[1..].Select(ours.TokenText)),
            StringComparison.Ordinal);
        Assert.Single(actual, ours.EosId);
        // the plain tokenizer stays llama.cpp's, doubled space and all
        Assert.Equal(llama.Tokenize(text, addSpecial: true, parseSpecial: true),
            ours.Encode(text, addSpecial: true, parseSpecial: true));
    }

    static VocabularySpec ReplaceLastMissing(VocabularySpec v, params string[] pieces) =>
        TokenizerParityModels.ReplaceLast(v, [.. pieces.Where(p => !v.Tokens.Contains(p))
            .Select(p => (p, TokenType.Normal))]);

    static string Pieces(Tokenizer t, int[] ids) => string.Join(' ', ids.Select(t.TokenText));

    [Fact]
    public void An_unknown_pre_tokenizer_is_refused_by_both()
    {
        string path = models.PathOf("pre-unknown", TokenizerParityModels.Bpe with { Pre = "no-such-pre" });
        Assert.ThrowsAny<Exception>(() => LlamaVocab.Load(path).Dispose());
        using var file = GgufFile.Open(path);
        var e = Assert.Throws<GgufFormatException>(() => Tokenizer.FromGguf(file));
        Assert.Contains("no-such-pre", e.Message);
    }

    static string Show(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    /// <summary>Edge cases, code, numbers, contractions, mixed scripts and a long text.</summary>
    static readonly string[] Corpus =
    [
        "", " ", "  ", "   ", "\n", "\n\n\n", "\t", " \t \n ", "Hello world", " Hello world", "Hello  world",
        "Hello world ", "  leading and trailing  ", "hello\nworld\n\n", "\t\ttabs\tand  spaces \n",
        "line one\r\nline two\r\n", "x  \n  y", "don't I'll we're they've she's it'd I'm", "DON'T I'LL WE'RE THEY'VE",
        "O'Reilly's 'quoted' ''", "café naïve résumé déjà vu", "Ærøskøbing Straße",
        "日本語のテキストです。", "中文，标点。", "한국어 텍스트", "Привет, мир!",
        "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
        "ภาษาไทย", "Ελληνικά γράμματα",
        "emoji 🎉🚀 and 👩‍💻 family 👨‍👩‍👧",
        "math 𝐀𝐁𝐂 𝑥𝑦𝑧 and 𐐀𐐁 deseret", "3.14159 2024 1000000 -42 +7 0x1F 1e-9",
        "12345678901234567890", "٣٤٥ ½ ① Ⅻ", "a\u00A0b\u2003c\u3000d\u0085e", "zero\u200Bwidth\uFEFFbom",
        "control\u0001\u001Fchars", "replacement \uFFFD char", "lone \uD800 surrogate",
        "def add(a, b):\n    return a + b\n", "for (int i = 0; i < n; i++) { sum += x[i]; }",
        "if x == 1 && y != 2 || z >= 3: print(\"ok\")", "<html><body class=\"x\">Hi</body></html>",
        "{\"key\": [1, 2, {\"nested\": null}]}", "https://example.com/path?query=1&b=2#frag", "user@example.com",
        "!!!???...,,,;;;", "a , b . c ! d ? e ' f 's g 're h 've i 'm j 't k 'd l 'll m ' n", "<s>hello</s>", "</s><s>",
        "<unk> <0x41> ▁ ▁▁x", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello<|im_end|>",
        "<tool_call>{\"name\": \"f\"}</tool_call> [INST] qz zqx",
        "<|endoftext|><|fim_prefix|>a<|fim_pad|>b<|channel|>c<|end|>d<|return|>",
        "The quick brown fox jumps over the lazy dog.",
        string.Join(' ', Enumerable.Repeat("The model reads the tokens of your question one after another, " +
            "and then it writes its answer one token at a time.", 40)),
    ];

    /// <summary>Random strings over pieces chosen to hit every branch of the pre-tokenizers and the special-token
    /// matching.</summary>
    static readonly string[] Fuzz = MakeFuzz();

    static string[] MakeFuzz()
    {
        string[] alphabet =
        [
            "a", "b", "e", "th", "the", "qz", "zqx", " zqx", " ", " ", "  ", "\n", "\r", "\t", "'", "'s", "'T", "'ll",
            "\"", ".", ",", "!", "?", "0", "1", "7", "42", "2024", "é", "ü", "ß", "日", "本", "한", "ก", "्",
            "ि", "क", "🎉", "👩‍💻", "𝐀", "𝑥", "𐐀", "\u00A0", "\u2003", "\u3000", "\u0085",
            "\u200B", "\uFEFF", "\u0001", "\u001F", "\uFFFD", "\uD800", "▁", "<s>", "</s>", "<unk>", "<0x41>",
            "<|eot_id|>", "<|begin_of_text|>", "<|im_start|>", "<tool_call>", "(", ")", "{", "}", "$", "+", "<", "=",
            "|", "^", "`", "~", "_", "-", "/", "\\", "٣", "½", "①", "Ⅻ", "...", "…", "。", "，",
        ];
        var random = new Random(20240611);
        return Enumerable.Range(0, 250)
            .Select(_ => string.Concat(Enumerable.Range(0, random.Next(1, 14))
                .Select(_ => alphabet[random.Next(alphabet.Length)])))
            .ToArray();
    }
}
