using System.Text.Json;
using Weft.GpuRuntime.Sampling.Grammar;

namespace Weft.Silo;

/// <summary>
/// llama.cpp's <c>grammar</c> field: GBNF text the reply must follow, on chat and text completions. It is parsed here
/// so that a malformed grammar is a 400 saying where, before any work; it cannot be combined with a JSON schema
/// (response_format, or a forced tool call), since a reply follows one grammar.
/// </summary>
static class GrammarField
{
    /// <summary>The grammar's text, null when absent or empty.</summary>
    public static string? Read(RequestBody b)
    {
        if (b.String("grammar") is not { Length: > 0 } grammar) return null;
        try
        {
            GbnfGrammar.Parse(grammar);
        }
        catch (GrammarException e)
        {
            throw ApiException.BadRequest($"'grammar' does not parse: {e.Message}", "grammar");
        }
        return grammar;
    }

    /// <summary>Refuses a grammar beside the JSON schema a chat request asks for.</summary>
    public static void RefuseWithSchema(RequestBody b, string? grammar, string? schema)
    {
        if (grammar is null || schema is null) return;
        bool format = b.Field("response_format") is { ValueKind: JsonValueKind.Object } f
            && f.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() != "text";
        throw ApiException.BadRequest(format
            ? "'grammar' and 'response_format' cannot be used together: a reply follows one grammar"
            : "'grammar' cannot be used with a forced tool call (tool_choice required or a named function)",
            "grammar");
    }
}
