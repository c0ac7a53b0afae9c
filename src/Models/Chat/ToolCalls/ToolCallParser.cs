using System.Text.Json;
using System.Text.RegularExpressions;

namespace Weft.Models.Chat.ToolCalls;

/// <summary>How a model family writes its tool calls (detected from its chat template).</summary>
public enum ToolCallFormat
{
    /// <summary>Templates without tool support: the tools are described in a system message and the model answers
    /// {"tool_calls":[{"name":...,"arguments":{...}}]}.</summary>
    Generic,
    /// <summary>Llama 3.x: {"name": ..., "parameters": {...}} (calls separated by ";"), after an optional
    /// &lt;|python_tag|&gt;.</summary>
    Llama3,
    /// <summary>Hermes, Qwen 2.5/3: &lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt; per
    /// call.</summary>
    Hermes,
    /// <summary>Mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}], or [TOOL_CALLS]name[ARGS]{...} (v11
    /// templates).</summary>
    Mistral,
}

/// <summary>A tool call as text: the function's name and its arguments as a JSON object's text.</summary>
public sealed record ToolCallText(string Name, string Arguments, string Id = "");

/// <summary>
/// Finds the tool calls in a reply. Every format also accepts the generic JSON forms (the reply is only a call
/// object, an array of them or {"tool_calls": [...]}), which is what constrained tool calls produce and what the
/// Llama 3 and Mistral formats leave once their control-token markers, which the reply text does not show, are gone.
/// </summary>
public static partial class ToolCallParser
{
    /// <summary>The family a template writes tool calls in; <see cref="ToolCallFormat.Generic"/> for a template that
    /// does not use the tools variable (or none).</summary>
    public static ToolCallFormat Detect(string? template)
    {
        if (template is null || !template.Contains("tools", StringComparison.Ordinal)) return ToolCallFormat.Generic;
        if (template.Contains("<tool_call>", StringComparison.Ordinal)) return ToolCallFormat.Hermes;
        if (template.Contains("[TOOL_CALLS]", StringComparison.Ordinal)) return ToolCallFormat.Mistral;
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal)) return ToolCallFormat.Llama3;
        return ToolCallFormat.Generic;
    }

    /// <summary>Texts that open a call in a format's reply: text from one on is held back while streaming.</summary>
    public static IReadOnlyList<string> Markers(ToolCallFormat format) => format switch
    {
        ToolCallFormat.Hermes => ["<tool_call>"],
        ToolCallFormat.Mistral => ["[TOOL_CALLS]"],
        ToolCallFormat.Llama3 => ["<|python_tag|>"],
        _ => [],
    };

    /// <summary>
    /// The format's markers that are control tokens of <paramref name="tokenizer"/>, by token id. The reply's text
    /// does not show control tokens (Mistral's [TOOL_CALLS] and [ARGS], Llama 3's &lt;|python_tag|&gt; in the
    /// vocabularies those models ship), so a <see cref="ToolCallSplitter"/> is handed them apart to see the calls.
    /// </summary>
    public static IReadOnlyDictionary<int, string> HiddenMarkers(ToolCallFormat format,
        Tokenization.Tokenizer tokenizer)
    {
        string[] markers = format switch
        {
            ToolCallFormat.Mistral => ["[TOOL_CALLS]", "[ARGS]"],
            ToolCallFormat.Hermes => ["<tool_call>", "</tool_call>"],
            ToolCallFormat.Llama3 => ["<|python_tag|>"],
            _ => [],
        };
        var hidden = new Dictionary<int, string>();
        foreach (var m in markers)
            if (tokenizer.FindToken(m) is { } id && tokenizer.GetTokenType(id) == Tokenization.TokenType.Control)
                hidden[id] = m;
        return hidden;
    }

    /// <summary>The reply's text without its calls, and the calls (none when the reply holds no well-formed
    /// call: then the text is returned whole).</summary>
    public static (string Content, IReadOnlyList<ToolCallText> Calls) Parse(ToolCallFormat format, string text)
    {
        var calls = new List<ToolCallText>();
        string content = text;
        switch (format)
        {
            case ToolCallFormat.Hermes:
                int open = text.IndexOf("<tool_call>", StringComparison.Ordinal);
                if (open < 0) break;
                foreach (Match m in HermesCall().Matches(text))
                    if (!Call(m.Groups[1].Value, calls)) return (text, []);
                if (calls.Count > 0) content = text[..open];
                break;
            case ToolCallFormat.Mistral:
                int at = text.IndexOf("[TOOL_CALLS]", StringComparison.Ordinal);
                if (at < 0) break;
                string rest = text[(at + "[TOOL_CALLS]".Length)..].Trim();
                if (!(rest.StartsWith('[') ? Json(rest, calls) : MistralNamed(rest, calls))) return (text, []);
                content = text[..at];
                break;
            case ToolCallFormat.Llama3:
                int tag = text.IndexOf("<|python_tag|>", StringComparison.Ordinal);
                if (tag < 0) break;
                foreach (var part in text[(tag + "<|python_tag|>".Length)..].Split(';',
                    StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    if (!Call(part, calls)) return (text, []);
                content = text[..tag];
                break;
        }
        if (calls.Count > 0) return (content, calls);
        // the generic forms: the whole reply is calls (Llama 3 may separate several by ";")
        string trimmed = text.Trim();
        if (trimmed.Length == 0 || trimmed[0] is not ('{' or '[')) return (text, []);
        if (Json(trimmed, calls)) return ("", calls);
        calls.Clear();
        foreach (var part in trimmed.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (!Call(part, calls)) return (text, []);
        return ("", calls);
    }

    /// <summary>A call object, an array of them, or an object holding them under "tool_calls" (or one under
    /// "tool_call").</summary>
    static bool Json(string text, List<ToolCallText> calls)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(text);
            root = doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return false;
        }
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("tool_calls", out var list)) root = list;
        else if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("tool_call", out var one)) root = one;
        if (root.ValueKind == JsonValueKind.Array)
        {
            foreach (var e in root.EnumerateArray())
                if (!Call(e, calls)) return false;
            return calls.Count > 0;
        }
        return Call(root, calls);
    }

    static bool Call(string json, List<ToolCallText> calls)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return Call(doc.RootElement, calls);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>{"name": ..., "arguments" or "parameters": {...} or a JSON text}; an OpenAI-shaped
    /// {"function": {...}} too.</summary>
    static bool Call(JsonElement e, List<ToolCallText> calls)
    {
        if (e.ValueKind != JsonValueKind.Object) return false;
        if (e.TryGetProperty("function", out var function) && function.ValueKind == JsonValueKind.Object) e = function;
        if (!e.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String) return false;
        if (!e.TryGetProperty("arguments", out var args) && !e.TryGetProperty("parameters", out args))
            return false;
        string arguments = args.ValueKind switch
        {
            JsonValueKind.Object => args.GetRawText(),
            JsonValueKind.String when IsObject(args.GetString()!) => args.GetString()!,
            _ => "",
        };
        if (arguments.Length == 0) return false;
        calls.Add(new ToolCallText(name.GetString()!, arguments));
        return true;
    }

    internal static bool IsObject(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>OpenAI's shape of a call id.</summary>
    public static string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    /// <summary>Mistral v11: name[ARGS]{...}, repeated with [TOOL_CALLS] between calls.</summary>
    static bool MistralNamed(string text, List<ToolCallText> calls)
    {
        foreach (var part in text.Split("[TOOL_CALLS]", StringSplitOptions.RemoveEmptyEntries))
        {
            int args = part.IndexOf("[ARGS]", StringComparison.Ordinal);
            if (args <= 0) return false;
            string arguments = part[(args + "[ARGS]".Length)..].Trim();
            if (!IsObject(arguments)) return false;
            calls.Add(new ToolCallText(part[..args].Trim(), arguments));
        }
        return calls.Count > 0;
    }

    [GeneratedRegex(@"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", RegexOptions.Singleline)]
    private static partial Regex HermesCall();
}

/// <summary>
/// Splits a streamed reply into text that can be shown now and text held back because it may be a tool call: from a
/// format's marker on, or the whole reply when it opens with "{" or "[" (the JSON forms). The calls in the held text
/// stream as OpenAI streams them (see <see cref="ToolCallScanner"/>). At the end the held text is parsed; if it holds
/// no call, it is released as text after all.
/// </summary>
/// <param name="hiddenMarkers">Markers that are control tokens, which the reply's text leaves out (see
/// <see cref="ToolCallParser.HiddenMarkers"/>): they are put back where their tokens were.</param>
/// <param name="newId">The id of each call (OpenAI's "call_..." by default).</param>
public sealed class ToolCallSplitter(ToolCallFormat format, IReadOnlyDictionary<int, string>? hiddenMarkers = null,
    Func<string>? newId = null)
{
    readonly IReadOnlyList<string> _markers = ToolCallParser.Markers(format);
    readonly System.Text.StringBuilder _text = new();
    readonly ToolCallScanner _scanner = new(format, newId ?? ToolCallParser.NewCallId);
    int _shown;
    bool _holding;

    /// <summary>The text that can be shown now that <paramref name="delta"/> arrived, the text of
    /// <paramref name="tokenIds"/>, and the pieces of calls it completes. A control token adds no text of its own,
    /// so the text of a delta is what came before it and a hidden marker goes after that text.</summary>
    public (string Text, IReadOnlyList<ToolCallTextDelta> Calls) Push(string delta, IReadOnlyList<int>? tokenIds = null)
    {
        _text.Append(delta);
        if (hiddenMarkers is { Count: > 0 } && tokenIds is not null)
            foreach (int id in tokenIds)
                if (hiddenMarkers.TryGetValue(id, out string? marker)) _text.Append(marker);
        string s = _text.ToString();
        if (_holding) return ("", _scanner.Scan(s));
        if (_shown == 0)
        {
            var start = s.AsSpan().TrimStart();
            if (start.Length == 0) return ("", []);
            if (start[0] is '{' or '[')
            {
                _holding = true;
                _scanner.Start(s.Length - start.Length, json: true);
                return ("", _scanner.Scan(s));
            }
        }
        int cut = s.Length;
        foreach (var m in _markers)
        {
            int at = s.IndexOf(m, _shown, StringComparison.Ordinal);
            if (at >= 0 && at < cut)
            {
                cut = at;
                _holding = true;
            }
        }
        if (!_holding)
            foreach (var m in _markers)
                for (int n = Math.Min(m.Length - 1, s.Length - _shown); n > 0; n--)
                    if (s.AsSpan(s.Length - n).SequenceEqual(m.AsSpan(0, n)))
                    {
                        cut = Math.Min(cut, s.Length - n);
                        break;
                    }
        string shown = s[_shown..cut];
        _shown = cut;
        if (!_holding) return (shown, []);
        _scanner.Start(cut, json: false);
        return (shown, _scanner.Scan(s));
    }

    /// <summary>The rest of the text (what was held back and is not a call), the calls (with the ids their pieces
    /// carried), and the pieces that complete them in the stream: the calls that did not stream, whole.</summary>
    /// <remarks>What streamed cannot be taken back: a call the parser does not confirm (held text that turns out
    /// malformed, or cut short by the length limit) has streamed pieces, and its text is then released too.</remarks>
    public (string Text, IReadOnlyList<ToolCallText> Calls, IReadOnlyList<ToolCallTextDelta> CallDeltas) Finish()
    {
        string s = _text.ToString();
        var (content, parsed) = ToolCallParser.Parse(format, s);
        if (parsed.Count == 0) return (s[_shown..], [], []);
        var calls = new List<ToolCallText>(parsed.Count);
        var deltas = new List<ToolCallTextDelta>();
        for (int i = 0; i < parsed.Count; i++)
        {
            var call = parsed[i];
            if (i >= _scanner.Sent.Count) _scanner.Emit(call.Name, call.Arguments, deltas);
            else
            {
                // the scanner and the parser read the same text: what streamed is the call's arguments so far
                string sent = _scanner.Sent[i].Arguments.ToString();
                if (_scanner.Sent[i].Name == call.Name && call.Arguments.Length > sent.Length
                    && call.Arguments.StartsWith(sent, StringComparison.Ordinal))
                    deltas.Add(new ToolCallTextDelta(i, null, null, call.Arguments[sent.Length..]));
            }
            calls.Add(call with { Id = _scanner.Sent[i].Id });
        }
        return (content.Length > _shown ? content[_shown..] : "", calls, deltas);
    }
}
