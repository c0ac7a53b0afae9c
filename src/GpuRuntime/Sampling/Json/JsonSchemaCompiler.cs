using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>
/// Compiles a JSON schema into grammar nodes that produce compact JSON (no whitespace between tokens): objects write
/// their properties in the schema's order, optional ones may be left out; arrays, strings (minLength/maxLength),
/// numbers, integers, booleans, null, enum, const, local $ref, and anyOf/oneOf/type lists whose alternatives start
/// with different bytes. Any other keyword that constrains values is a <see cref="SchemaException"/> naming it: a
/// schema is either guaranteed or refused, never half-followed.
/// </summary>
sealed class JsonSchemaCompiler
{
    /// <summary>Keywords that describe and do not constrain.</summary>
    static readonly HashSet<string> Annotations =
    [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "readOnly", "writeOnly",
        "deprecated", "$defs", "definitions",
    ];

    static readonly JsonWriterOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    readonly JsonElement _root;
    int _refDepth;

    JsonSchemaCompiler(JsonElement root) => _root = root;

    public static Node Compile(JsonElement schema) => new JsonSchemaCompiler(schema).Schema(schema);

    Node Schema(JsonElement s)
    {
        if (s.ValueKind == JsonValueKind.True) return new JsonAny();
        if (s.ValueKind != JsonValueKind.Object)
            throw new SchemaException("schema", "a schema must be an object (or true)");
        var keys = s.EnumerateObject().Select(p => p.Name).Where(k => !Annotations.Contains(k)).ToHashSet();
        if (s.TryGetProperty("$ref", out var reference)) return Ref(reference, keys);
        // the values of an enum or a const are stricter than any type beside them
        if (s.TryGetProperty("enum", out _) || s.TryGetProperty("const", out _)) keys.Remove("type");
        if (s.TryGetProperty("const", out var constant))
            return Only(keys, "const", new Choice([Json(constant)], [null]));
        if (s.TryGetProperty("enum", out var values))
        {
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
                throw new SchemaException("enum", "enum must be a non-empty array");
            var texts = values.EnumerateArray().Select(Json).ToArray();
            return Only(keys, "enum", new Choice(texts, new Node?[texts.Length]));
        }
        foreach (var any in (string[])["anyOf", "oneOf"])
            if (s.TryGetProperty(any, out var alternatives))
            {
                if (alternatives.ValueKind != JsonValueKind.Array || alternatives.GetArrayLength() == 0)
                    throw new SchemaException(any, $"{any} must be a non-empty array");
                var list = alternatives.EnumerateArray().ToList();
                return Only(keys, any, Tagged(list) ?? Distinct(any, list.Select(Schema).ToArray()));
            }
        if (!s.TryGetProperty("type", out var type))
        {
            if (s.TryGetProperty("properties", out _)) return Typed(s, "object", keys);
            if (s.TryGetProperty("items", out _)) return Typed(s, "array", keys);
            Only(keys, null, null);
            return new JsonAny();
        }
        keys.Remove("type");
        if (type.ValueKind == JsonValueKind.String) return Typed(s, type.GetString()!, keys);
        if (type.ValueKind != JsonValueKind.Array || type.GetArrayLength() == 0)
            throw new SchemaException("type", "type must be a string or a non-empty array of strings");
        // every keyword must be used by one of the types; each type takes its own and ignores the others'
        var used = new HashSet<string>();
        var nodes = type.EnumerateArray().Select(t => Typed(s, t.GetString() ?? "", [.. keys], used)).ToArray();
        keys.ExceptWith(used);
        Only(keys, null, null);
        return Distinct("type", nodes);
    }

    /// <summary>A node for one JSON type; <paramref name="keys"/> are the keywords left to account for, and any not
    /// used by the type is refused (or, with <paramref name="used"/>, recorded for the caller to check).</summary>
    Node Typed(JsonElement s, string type, HashSet<string> keys, HashSet<string>? used = null)
    {
        string[] own = type switch
        {
            "object" => ["properties", "required", "additionalProperties"],
            "array" => ["items", "minItems", "maxItems"],
            "string" => ["minLength", "maxLength"],
            "integer" or "number" or "boolean" or "null" => [],
            _ => throw new SchemaException("type", $"type '{type}' is not a JSON schema type"),
        };
        foreach (var k in own)
            if (keys.Remove(k)) used?.Add(k);
        if (used is null) Only(keys, null, null);
        return type switch
        {
            "object" => Object(s),
            "array" => new JsonArray(s.TryGetProperty("items", out var items) ? Schema(items) : new JsonAny(),
                Count(s, "minItems", 0), Count(s, "maxItems", int.MaxValue)),
            "string" => new JsonString(Count(s, "minLength", 0), Count(s, "maxLength", int.MaxValue)),
            "integer" => new JsonNumber(integer: true),
            "number" => new JsonNumber(integer: false),
            "boolean" => new Choice([Utf8("true"), Utf8("false")], [null, null]),
            _ => Lit("null"),
        };
    }

    /// <summary>
    /// Objects told apart by their first property, a required const (a tool call's "name"): one choice of the texts
    /// up to that value, each followed by the rest of its own object. Null when the alternatives are not all
    /// such objects.
    /// </summary>
    Node? Tagged(List<JsonElement> alternatives)
    {
        var texts = new byte[alternatives.Count][];
        var then = new Node?[alternatives.Count];
        for (int i = 0; i < alternatives.Count; i++)
        {
            var a = alternatives[i];
            if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("properties", out var properties)
                || properties.ValueKind != JsonValueKind.Object
                || properties.EnumerateObject().FirstOrDefault() is not { Value.ValueKind: JsonValueKind.Object } first
                || !first.Value.TryGetProperty("const", out var tag)
                || !a.TryGetProperty("required", out var required) || required.ValueKind != JsonValueKind.Array
                || !required.EnumerateArray().Any(r => r.ValueKind == JsonValueKind.String
                    && r.GetString() == first.Name))
                return null;
            Schema(a);
            texts[i] = [.. "{"u8, .. Utf8(Text(first.Name)), .. ":"u8, .. Json(tag)];
            then[i] = _afterFirst;
        }
        return new Choice(texts, then);
    }

    // what follows the first property of the object compiled last (for Tagged)
    Node? _afterFirst;

    Node Object(JsonElement s)
    {
        bool closed = s.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind == JsonValueKind.False;
        if (!closed && extra.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.True))
            throw new SchemaException("additionalProperties", "additionalProperties may only be true or false");
        if (!s.TryGetProperty("properties", out var properties) || !properties.EnumerateObject().Any())
            return closed ? Lit("{}") : new JsonAnyObject(new JsonAny());
        if (properties.ValueKind != JsonValueKind.Object)
            throw new SchemaException("properties", "properties must be an object");
        var required = s.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array
            ? r.EnumerateArray().Select(e => e.GetString()).ToHashSet() : [];
        var props = properties.EnumerateObject().ToList();
        foreach (var name in required)
            if (!props.Any(p => p.Name == name))
                throw new SchemaException("required", $"required property '{name}' is not among the properties");
        var values = props.Select(p => Schema(p.Value)).ToArray();
        // after[i + 1]: what may follow property i (after[0]: the opening brace). Later properties may be reached by
        // skipping optional ones, never a required one; the brace closes once no required property is left.
        var after = new Node[props.Count + 1];
        for (int i = props.Count - 1; i >= -1; i--)
        {
            var texts = new List<byte[]>();
            var then = new List<Node?>();
            bool requiredLeft = false;
            for (int j = i + 1; j < props.Count && !requiredLeft; j++)
            {
                texts.Add(Encoding.UTF8.GetBytes((i >= 0 ? "," : "") + Text(props[j].Name) + ":"));
                then.Add(new Sequence([values[j], after[j + 1]]));
                requiredLeft = required.Contains(props[j].Name);
            }
            if (!requiredLeft)
            {
                texts.Add(Utf8("}"));
                then.Add(null);
            }
            after[i + 1] = new Choice([.. texts], [.. then]);
        }
        _afterFirst = after[1];
        return new Sequence([Lit("{"), after[0]]);
    }

    Node Ref(JsonElement reference, HashSet<string> keys)
    {
        Only(keys, "$ref", null);
        string? path = reference.ValueKind == JsonValueKind.String ? reference.GetString() : null;
        if (path is null || !path.StartsWith('#'))
            throw new SchemaException("$ref", "only local references (#/$defs/...) are supported");
        // a recursive schema would unfold forever: references nest at most this deep
        if (++_refDepth > 16) throw new SchemaException("$ref", "recursive references are not supported");
        var target = _root;
        foreach (var part in path[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
            if (!target.TryGetProperty(part.Replace("~1", "/").Replace("~0", "~"), out target))
                throw new SchemaException("$ref", $"reference '{path}' does not resolve");
        var node = Schema(target);
        _refDepth--;
        return node;
    }

    /// <summary>Refuses the keywords left over: they would constrain values in ways the grammar does not
    /// follow.</summary>
    static Node Only(HashSet<string> keys, string? own, Node? node)
    {
        if (own is not null) keys.Remove(own);
        if (keys.Count > 0)
        {
            string k = keys.Order(StringComparer.Ordinal).First();
            throw new SchemaException(k, $"the JSON schema keyword '{k}' is not supported");
        }
        return node!;
    }

    /// <summary>Alternatives told apart by their first byte.</summary>
    static Node Distinct(string keyword, Node[] alternatives)
    {
        if (alternatives.Length == 1) return alternatives[0];
        for (int b = 0; b < 256; b++)
            if (alternatives.Count(a => a.CanStart((byte)b)) > 1)
                throw new SchemaException(keyword,
                    $"{keyword} alternatives must be of different JSON types (two of them can start with " +
                    $"'{(char)b}')");
        return new Switch(alternatives);
    }

    static int Count(JsonElement s, string name, int fallback) =>
        !s.TryGetProperty(name, out var v) ? fallback
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n >= 0 ? n
        : throw new SchemaException(name, $"{name} must be a non-negative integer");

    static byte[] Json(JsonElement value)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, Compact)) value.WriteTo(writer);
        return buffer.WrittenSpan.ToArray();
    }

    static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static string Text(string s) => JsonSerializer.Serialize(s, Relaxed);

    static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    static Literal Lit(string s) => new(Utf8(s));
}
