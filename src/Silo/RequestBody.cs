using System.Text.Json;

namespace Weft.Silo;

/// <summary>
/// A JSON request body read field by field, so that a wrong type or value is refused with a message naming the field.
/// A field that is absent or null takes its default. Fields a generation endpoint does not know are refused there
/// (<see cref="OpenAiApi"/>), so no request is answered as if a feature it asked for had been applied.
/// </summary>
sealed class RequestBody
{
    readonly JsonElement _root;

    RequestBody(JsonElement root) => _root = root;

    public static async Task<RequestBody> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        JsonElement root;
        try
        {
            using var document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken);
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("the request body must be a JSON object", code: "invalid_json");
        return new RequestBody(root);
    }

    /// <summary>The names of the fields that are present and not null.</summary>
    public IEnumerable<string> Names =>
        _root.EnumerateObject().Where(p => p.Value.ValueKind != JsonValueKind.Null).Select(p => p.Name);

    public JsonElement? Field(string name) =>
        _root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public JsonElement Required(string name) =>
        Field(name) ?? throw ApiException.BadRequest($"'{name}' is required", name, "missing_required_parameter");

    public string? String(string name) => Field(name) is { } v ? AsString(v, name) : null;

    public bool Bool(string name, bool fallback = false) => Field(name) is { } v ? AsBool(v, name) : fallback;

    public int? Int(string name) => Field(name) is { } v ? AsInt(v, name) : null;

    public long? Long(string name) =>
        Field(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) ? n
        : throw ApiException.WrongType(name, "an integer");

    public float? Float(string name) =>
        Field(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble()
        : throw ApiException.WrongType(name, "a number");

    /// <summary>A string or an array of strings (as OpenAI's "stop").</summary>
    public IReadOnlyList<string> Strings(string name) => Field(name) switch
    {
        null => [],
        { ValueKind: JsonValueKind.String } v => [AsString(v, name)],
        { ValueKind: JsonValueKind.Array } v => v.EnumerateArray().Select((e, i) => AsString(e, $"{name}[{i}]"))
            .ToList(),
        _ => throw ApiException.WrongType(name, "a string or an array of strings"),
    };

    public IReadOnlyList<int>? Ints(string name) => Field(name) is { } v ? AsInts(v, name) : null;

    /// <summary>A JSON string as text. JSON may carry what no string can hold (bytes that are not UTF-8, an escaped
    /// lone surrogate); System.Text.Json finds out only when asked for the string, with an InvalidOperationException
    /// that would otherwise be a 500.</summary>
    public static string AsString(JsonElement v, string name)
    {
        if (v.ValueKind != JsonValueKind.String) throw ApiException.WrongType(name, "a string");
        try
        {
            return v.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw ApiException.BadRequest($"'{name}' is not valid text: invalid UTF-8 or a lone UTF-16 surrogate", name,
                "invalid_text");
        }
    }

    public static bool AsBool(JsonElement v, string name) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw ApiException.WrongType(name, "true or false"),
    };

    public static int AsInt(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) ? n
            : throw ApiException.WrongType(name, "an integer");

    public static IReadOnlyList<int> AsInts(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray().Select((e, i) => AsInt(e, $"{name}[{i}]")).ToList()
            : throw ApiException.WrongType(name, "an array of integers");
}
