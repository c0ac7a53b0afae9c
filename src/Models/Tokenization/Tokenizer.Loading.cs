using Weft.Models.Gguf;

namespace Weft.Models.Tokenization;

/// <summary>Token attributes as llama.cpp keeps them: bits, because it promotes some tokens (e.g. Normal to
/// Normal|Control).</summary>
[Flags]
enum TokenAttr : ushort
{
    Undefined = 0,
    Unknown = 1 << 0,
    Unused = 1 << 1,
    Normal = 1 << 2,
    Control = 1 << 3,
    UserDefined = 1 << 4,
    Byte = 1 << 5,
}

/// <summary>Everything a tokenizer is built from, after validation and llama.cpp's defaults and fix-ups.</summary>
sealed record VocabularyData(
    string[] Tokens,
    TokenAttr[] Attrs,
    float[] Scores,
    Dictionary<string, int> Ids,
    int BosId,
    int EosId,
    int? UnkId,
    int? PadId,
    bool AddBos,
    bool AddEos,
    bool AddSpacePrefix,
    bool CleanSpaces,
    HashSet<int> EndOfGeneration);

public abstract partial class Tokenizer
{
    // Texts llama.cpp treats as end of generation whatever their type (llama_vocab::impl::load, "special_eog_ids").
    static readonly string[] EndOfGenerationTexts =
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
    ];

    // Fill-in-the-middle tokens llama.cpp recognises by text when the metadata names none; each is forced to be a
    // control token, and the pad/repo/separator ones end generation.
    static readonly (string Key, string[] Texts, bool EndsGeneration)[] FimTokens =
    [
        ("fim_pre", ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
            "<|code_prefix|>", "<|prefix|>"], false),
        ("fim_suf", ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
            "<|code_suffix|>", "<|suffix|>"], false),
        ("fim_mid", ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
            "<|code_middle|>", "<|middle|>"], false),
        ("fim_pad", ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"], true),
        ("fim_rep", ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"], true),
        ("fim_sep", ["<|file_sep|>"], true),
    ];

    /// <summary>The tokenizer.ggml.pre names of byte-level BPE vocabularies this tokenizer reproduces.</summary>
    public static IReadOnlyCollection<string> SupportedPreTokenizers { get; } =
        BpeDialect.Names.Order(StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Reads the tokenizer from tokenizer.ggml.* metadata. Every problem (a missing or mistyped key, arrays of
    /// different lengths, a special token id outside the vocabulary, an unsupported tokenizer or pre-tokenizer)
    /// is a <see cref="GgufFormatException"/> naming the file.
    /// </summary>
    public static Tokenizer FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string model = file.GetString("tokenizer.ggml.model");
        bool spm = model switch
        {
            "llama" => true,
            "gpt2" => false,
            _ => throw file.Fail($"tokenizer model '{model}' is not supported (supported: llama, gpt2)"),
        };

        string[] tokens = (string[])file.GetArray<string>("tokenizer.ggml.tokens").Clone();
        int n = tokens.Length;
        if (n == 0) throw file.Fail("tokenizer.ggml.tokens is empty");

        var scores = new float[n];
        if (file.Metadata.TryGetValue("tokenizer.ggml.scores", out var sv))
        {
            scores = sv.Value switch
            {
                float[] f => f,
                int[] i => i.Select(x => (float)x).ToArray(),
                _ => throw file.Fail(
                    $"tokenizer.ggml.scores should be an array of float32, got {sv.Type} of {sv.ElementType}"),
            };
            if (scores.Length != n)
                throw file.Fail($"tokenizer.ggml.scores has {scores.Length} entries for {n} tokens");
        }

        var attrs = new TokenAttr[n];
        if (file.Has("tokenizer.ggml.token_type"))
        {
            int[] types = file.GetIntArray("tokenizer.ggml.token_type");
            if (types.Length != n)
                throw file.Fail($"tokenizer.ggml.token_type has {types.Length} entries for {n} tokens");
            for (int i = 0; i < n; i++)
            {
                attrs[i] = types[i] switch
                {
                    (int)TokenType.Normal => TokenAttr.Normal,
                    (int)TokenType.Unknown => TokenAttr.Unknown,
                    (int)TokenType.Control => TokenAttr.Control,
                    (int)TokenType.UserDefined => TokenAttr.UserDefined,
                    (int)TokenType.Unused => TokenAttr.Unused,
                    (int)TokenType.Byte => TokenAttr.Byte,
                    _ => TokenAttr.Undefined, // type 0 and values it does not know, as llama.cpp reads them
                };
            }
        }
        else Array.Fill(attrs, TokenAttr.Normal);

        var ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            if (tokens[i].Length == 0) tokens[i] = $"[EMPTY_{i}]"; // llama.cpp's name for empty pieces
            if (!ids.TryAdd(tokens[i], i))
                throw file.Fail($"duplicate token '{tokens[i]}' has ids {ids[tokens[i]]} and {i}");
            if ((attrs[i] & TokenAttr.Byte) != 0 && !IsByteToken(tokens[i]))
                throw file.Fail($"byte token {i} is '{tokens[i]}', expected the form <0xXX>");
        }

        BpeDialect? dialect = null;
        if (!spm)
        {
            string pre = file.GetStringOrNull("tokenizer.ggml.pre") ?? "default";
            dialect = BpeDialect.Find(pre) ?? throw file.Fail(
                $"pre-tokenizer '{pre}' is not supported (supported: {string.Join(", ", SupportedPreTokenizers)})");
        }

        int? SpecialId(string name, int? fallback)
        {
            string key = $"tokenizer.ggml.{name}_token_id";
            long? v = file.GetIntegerOrNull(key);
            if (v is null) return fallback < n ? fallback : null;
            return v >= 0 && v < n ? (int)v : throw file.Fail($"{key} = {v} is outside the vocabulary of {n} tokens");
        }

        // llama.cpp's defaults when the metadata names no id (its gpt2 default of 11 is odd but real).
        int bos = SpecialId("bos", spm ? 1 : 11)
            ?? throw file.Fail("no BOS token: tokenizer.ggml.bos_token_id is missing");
        int eos = SpecialId("eos", spm ? 2 : 11)
            ?? throw file.Fail("no EOS token: tokenizer.ggml.eos_token_id is missing");
        int? unk = SpecialId("unknown", spm ? 0 : null);
        int? pad = SpecialId("padding", null);
        int? eot = SpecialId("eot", null);
        int? eom = SpecialId("eom", null);

        bool addBos = file.GetBoolOrNull("tokenizer.ggml.add_bos_token") ?? (spm || dialect!.AddBos);
        bool addEos = file.GetBoolOrNull("tokenizer.ggml.add_eos_token") ?? false;
        bool addSpacePrefix = file.GetBoolOrNull("tokenizer.ggml.add_space_prefix") ?? spm;

        var eog = new HashSet<int>();
        foreach (var (key, texts, endsGeneration) in FimTokens)
        {
            int? id = SpecialId(key, null);
            if (id is null)
            {
                id = texts.Select(t => ids.TryGetValue(t, out int i) ? i : (int?)null).Where(i => i is not null).Min();
                if (id is { } found) attrs[found] |= TokenAttr.Control;
            }
            if (endsGeneration && id is { } e) eog.Add(e);
        }
        foreach (string text in EndOfGenerationTexts)
        {
            if (!ids.TryGetValue(text, out int id)) continue;
            eog.Add(id);
            attrs[id] |= TokenAttr.Control;
        }
        // gpt-oss: always rendered
        foreach (string text in (string[])["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"])
            if (ids.TryGetValue(text, out int id)) attrs[id] = TokenAttr.UserDefined;

        eog.Add(eos);
        if (eot is { } eotId) eog.Add(eotId);
        if (eom is { } eomId) eog.Add(eomId);

        bool InEog(string text, out int id) => ids.TryGetValue(text, out id) && eog.Contains(id);
        // o200k_harmony and solar-open: <|end|> only ends a message there, not generation.
        if (InEog("<|end|>", out int end)
            && ((InEog("<|return|>", out _) && (InEog("<|call|>", out _) || InEog("<|calls|>", out _)))
                || ((InEog("<|call|>", out _) || InEog("<|calls|>", out _)) && InEog("<|flush|>", out _))))
        {
            eog.Remove(end);
            attrs[end] = TokenAttr.UserDefined;
        }
        // gemma4 and paddleocr: </s> is not an end of generation when <|tool_response> is.
        if (InEog("<|tool_response>", out _) && InEog("</s>", out int s))
        {
            eog.Remove(s);
            attrs[s] = TokenAttr.Normal;
        }

        var data = new VocabularyData(tokens, attrs, scores, ids, bos, eos, unk, pad, addBos, addEos, addSpacePrefix,
            CleanSpaces: dialect?.CleanSpaces ?? false, eog);
        if (spm) return new SentencePieceTokenizer(data);

        string[] merges = file.GetArray<string>("tokenizer.ggml.merges");
        return new BytePairTokenizer(data, merges, dialect!);
    }

    static bool IsByteToken(string t) => t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
        && char.IsAsciiHexDigit(t[3]) && char.IsAsciiHexDigit(t[4]);
}
