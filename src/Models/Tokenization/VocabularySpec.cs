using Weft.Models.Gguf;

namespace Weft.Models.Tokenization;

/// <summary>Token types as GGUF's tokenizer.ggml.token_type numbers them.</summary>
public enum TokenType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

/// <summary>
/// A tokenizer's vocabulary as GGUF stores it under tokenizer.ggml.*: what a model file is written with and what
/// <c>Tokenizer.FromGguf</c> reads back. Model is "llama" (SentencePiece-style, with scores) or "gpt2" (byte-level BPE,
/// with merges and a pre-tokenizer name).
/// </summary>
public sealed record VocabularySpec(
    string Model,
    string[] Tokens,
    int[] TokenTypes,
    float[]? Scores,
    string[]? Merges,
    string? Pre,
    int BosId,
    int EosId,
    int? UnkId,
    int? PadId,
    bool AddBos,
    bool? AddSpacePrefix,
    string? ChatTemplate)
{
    public void WriteTo(GgufWriter w)
    {
        w.Add("tokenizer.ggml.model", Model);
        if (Pre is not null) w.Add("tokenizer.ggml.pre", Pre);
        w.Add("tokenizer.ggml.tokens", GgufValue.Of(Tokens));
        if (Scores is not null) w.Add("tokenizer.ggml.scores", GgufValue.Of(Scores));
        w.Add("tokenizer.ggml.token_type", GgufValue.Of(TokenTypes));
        if (Merges is not null) w.Add("tokenizer.ggml.merges", GgufValue.Of(Merges));
        w.Add("tokenizer.ggml.bos_token_id", (uint)BosId);
        w.Add("tokenizer.ggml.eos_token_id", (uint)EosId);
        if (UnkId is { } unk) w.Add("tokenizer.ggml.unknown_token_id", (uint)unk);
        if (PadId is { } pad) w.Add("tokenizer.ggml.padding_token_id", (uint)pad);
        w.Add("tokenizer.ggml.add_bos_token", AddBos);
        w.Add("tokenizer.ggml.add_eos_token", false);
        if (AddSpacePrefix is { } asp) w.Add("tokenizer.ggml.add_space_prefix", asp);
        if (ChatTemplate is not null) w.Add("tokenizer.chat_template", ChatTemplate);
    }
}
