using System.Diagnostics;
using System.Text.Json;
using Weft.Abstractions;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.GpuRuntime.Sampling.Json;
using Weft.Models.Chat.ToolCalls;
using Weft.Scheduling;

namespace Weft.Grains;

/// <summary>Turns a request's sampling options into engine parameters, refusing out-of-range values with a 400-class
/// error.</summary>
static class SamplingMapper
{
    /// <param name="tags">The request's metric labels, which a constraint records its mask times with.</param>
    public static SamplingParams ToParams(SamplingOptions o, int promptTokens, ModelHost host, in TagList tags)
    {
        if (promptTokens < 1) throw new WeftException(WeftErrorCode.InvalidRequest, "the prompt is empty", "prompt");
        int room = host.MaxModelLen - promptTokens;
        if (room < 1)
            throw new WeftException(WeftErrorCode.ContextLengthExceeded,
                $"the prompt has {promptTokens} tokens; this model's context is {host.MaxModelLen} tokens");
        if (o.MaxTokens > room)
            throw new WeftException(WeftErrorCode.ContextLengthExceeded,
                $"the prompt ({promptTokens} tokens) plus max_tokens ({o.MaxTokens}) exceeds this model's context of " +
                $"{host.MaxModelLen} tokens", "max_tokens");
        var p = new SamplingParams
        {
            Temperature = o.Temperature ?? 1f,
            TopP = o.TopP ?? 1f,
            TopK = o.TopK is null or -1 ? 0 : o.TopK.Value,
            MinP = o.MinP ?? 0f,
            Seed = o.Seed,
            MaxTokens = o.MaxTokens ?? room,
            PresencePenalty = o.PresencePenalty ?? 0f,
            FrequencyPenalty = o.FrequencyPenalty ?? 0f,
            RepetitionPenalty = o.RepetitionPenalty ?? 1f,
            IgnoreEos = o.IgnoreEos,
            StopTokenIds = o.StopTokenIds,
            LogitBias = o.LogitBias,
            Logprobs = o.Logprobs,
            LogprobsMode = host.LogprobsMode,
            Constraint = o.JsonSchema is { } schema ? Grammar(schema).Start(host.Trie, o.StopTokenIds, tags)
                : o.Grammar is { } gbnf ? Gbnf(gbnf).Start(host.Trie, o.StopTokenIds, tags)
                : o.LazyToolCalls is { } lazy ? LazyCalls(lazy, host, o.StopTokenIds, tags) : null,
        };
        if (p.Validate(host.Config.VocabSize) is { } problem)
            throw new WeftException(WeftErrorCode.InvalidRequest, problem.Message, problem.Param);
        if (o.Stop.Count > 16 || o.Stop.Any(s => string.IsNullOrEmpty(s) || s.Length > 512))
            throw new WeftException(WeftErrorCode.InvalidRequest,
                "stop takes at most 16 non-empty strings of up to 512 characters", "stop");
        return p;
    }

    /// <summary>
    /// A call in the model family's own format, held from its marker on to the forced-call schema's parts: Hermes
    /// one call object after &lt;tool_call&gt; (the parser takes an unclosed one), Mistral a list after [TOOL_CALLS],
    /// Llama 3 one call with "parameters" after &lt;|python_tag|&gt; or as the reply's opening {"name", and the
    /// generic format the whole {"tool_calls": [...]} object when the reply opens with "{" (a reply the parser
    /// would read as calls).
    /// </summary>
    static ITokenConstraint LazyCalls(LazyToolCalls lazy, ModelHost host, IReadOnlyList<int> stopTokenIds,
        in TagList tags)
    {
        var format = host.Template.ToolFormat;
        var markers = ToolCallParser.Markers(format);
        (string[] Openings, string Schema) shape = format switch
        {
            ToolCallFormat.Hermes => ([], ToolCallSchema.Call(lazy.ToolsJson)),
            ToolCallFormat.Mistral => ([], ToolCallSchema.CallList(lazy.ToolsJson, lazy.Parallel)),
            ToolCallFormat.Llama3 => (["{\"name\""], ToolCallSchema.Call(lazy.ToolsJson, "parameters")),
            _ => (["{"], ToolCallSchema.For(lazy.ToolsJson, null, lazy.Parallel)),
        };
        var markerTokens = host.HiddenToolMarkers
            .Where(m => markers.Contains(m.Value)).Select(m => m.Key).ToHashSet();
        return Grammar(shape.Schema).StartLazy(host.Trie, stopTokenIds,
            new LazyTriggers(markers, shape.Openings, markerTokens), tags);
    }

    static GbnfGrammar Gbnf(string text)
    {
        try
        {
            return GbnfGrammar.Parse(text);
        }
        catch (GrammarException e)
        {
            throw new WeftException(WeftErrorCode.InvalidRequest, $"'grammar' does not parse: {e.Message}", "grammar");
        }
    }

    /// <summary>"{}" is json_object's any object; anything else a JSON schema.</summary>
    static JsonGrammar Grammar(string schema)
    {
        try
        {
            using var doc = JsonDocument.Parse(schema);
            return doc.RootElement is { ValueKind: JsonValueKind.Object } root && !root.EnumerateObject().Any()
                ? JsonGrammar.AnyObject() : JsonGrammar.FromSchema(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new WeftException(WeftErrorCode.InvalidRequest, $"the JSON schema does not parse: {e.Message}",
                "response_format");
        }
        catch (SchemaException e)
        {
            throw new WeftException(WeftErrorCode.InvalidRequest, e.Message, "response_format");
        }
    }
}
