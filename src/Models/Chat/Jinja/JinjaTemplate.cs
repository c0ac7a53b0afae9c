using System.Text.Json;

namespace Weft.Models.Chat.Jinja;

/// <summary>Bounds on one rendering.</summary>
/// <param name="MaxSteps">Nodes evaluated and loop iterations, together.</param>
/// <param name="MaxOutputChars">The longest output, and the longest string made on the way.</param>
/// <param name="MaxCallDepth">Macro calls nested in one another.</param>
public sealed record JinjaLimits(long MaxSteps = 5_000_000, int MaxOutputChars = 16 << 20, int MaxCallDepth = 64);

/// <summary>
/// A Jinja2 template, parsed once and rendered as Hugging Face transformers renders chat templates: an
/// ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, transformers' tojson (ensure_ascii off, keys
/// unsorted, optional indent), and the globals raise_exception and strftime_now. Written for this project because no
/// maintained .NET Jinja2 implementation is available (Fluid and DotLiquid implement Liquid, Scriban its own
/// language).
/// </summary>
public sealed class JinjaTemplate
{
    readonly string source;
    readonly List<Node> nodes;

    JinjaTemplate(string source, List<Node> nodes)
    {
        this.source = source;
        this.nodes = nodes;
    }

    /// <summary>The template's text (line endings normalised).</summary>
    public string Source => source;

    /// <exception cref="JinjaException">The text does not parse; the message says where.</exception>
    public static JinjaTemplate Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string source = Lexer.Normalize(text);
        return new(source, new Parser(source, Lexer.Tokenize(source)).ParseTemplate());
    }

    /// <summary>Renders with <paramref name="variables"/> (values as <see cref="FromJson"/> makes them, or strings,
    /// booleans, longs, doubles, nulls, lists and string-keyed dictionaries of them).</summary>
    /// <param name="now">What strftime_now formats (transformers uses the local time).</param>
    /// <exception cref="JinjaRaisedException">The template called raise_exception.</exception>
    /// <exception cref="JinjaException">The template failed; the message says where.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, DateTime now, JinjaLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        return new Interpreter(source, limits ?? new JinjaLimits(), now).Render(nodes, variables);
    }

    /// <summary>A JSON value as a template value: objects as dictionaries, arrays as lists, integers as longs, other
    /// numbers as doubles.</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out long l) && !e.GetRawText().Contains('.')
            && !e.GetRawText().Contains('e', StringComparison.OrdinalIgnoreCase) ? l : (object)e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };
}
