using System.Text;
using System.Text.Json;

namespace Weft.Models.Chat.ToolCalls;

/// <summary>A piece of a streamed tool call, as OpenAI streams one: a call's first piece carries its id and name
/// and the start of its arguments' text, the next ones only more of that text. Index: the call's place among the
/// reply's calls.</summary>
public sealed record ToolCallTextDelta(int Index, string? Id, string? Name, string Arguments);

/// <summary>
/// Reads a reply's held text as it grows, finds its tool calls where <see cref="ToolCallParser.Parse"/> finds them
/// and streams each call's arguments as the model writes them: once a call's name is known and its arguments object
/// has begun, every character up to the object's end goes out as it arrives. That text is the model's own, which is
/// what the parser returns for an arguments object, so the pieces add up to the parsed call's arguments.
/// A call whose arguments come before its name, or as a JSON string (which the parser decodes, and keeps only when it
/// holds an object), cannot be streamed without guessing: it goes out whole when its object ends.
/// A lenient scanner: it only has to find the structure of well-formed replies; whether the reply holds calls at all
/// is the parser's word once it ends.
/// </summary>
sealed class ToolCallScanner(ToolCallFormat format, Func<string> newId)
{
    enum Mode { Json, One, Marker, MistralStart, MistralName, MistralArgs, Done }

    enum Role { Call, Function, CallList, Args, Other }

    enum Expect { Key, Colon, Value, Comma }

    enum StringRole { Key, Name, Arguments, Other }

    sealed class Call
    {
        public string? Name;
        public int ArgsStart = -1;
        public int ArgsEnd = -1;
        public bool ArgsIsString;
        public bool Streams;
        // Mistral v11's name[ARGS]{...}: no object around the arguments, the call ends with them
        public bool Bare;
        public int Index = -1;
        // where in the text the arguments that went out end
        public int SentTo;
    }

    sealed class Frame(bool isObject, Role role, Call? call)
    {
        public readonly bool IsObject = isObject;
        public readonly Role Role = role;
        public readonly Call? Call = call;
        public Expect Expect = isObject ? Expect.Key : Expect.Value;
        public string? Key;
    }

    /// <summary>What went out of each call, by index: its id, name and arguments text so far.</summary>
    public readonly List<(string Id, string Name, StringBuilder Arguments)> Sent = [];

    readonly Stack<Frame> _stack = new();
    Mode _mode = Mode.Done;
    // the mode a marker leads to, while one is awaited
    Mode _afterMarker;
    int _pos;
    int _nameStart;
    bool _inString, _escape, _inScalar;
    int _stringStart;
    StringRole _stringRole;
    Call? _streaming;
    // Mistral v11's call whose name was read, until its arguments object opens
    Call? _bare;

    /// <summary>Calls start at <paramref name="at"/>: as JSON values there (the reply opened with one), or after the
    /// format's marker.</summary>
    public void Start(int at, bool json)
    {
        _pos = at;
        if (json) _mode = Mode.Json;
        else
        {
            _mode = Mode.Marker;
            _afterMarker = format switch
            {
                ToolCallFormat.Hermes => Mode.One,
                ToolCallFormat.Mistral => Mode.MistralStart,
                _ => Mode.Json,
            };
        }
    }

    /// <summary>The pieces of calls that <paramref name="text"/> (the held text so far, grown from the last call's)
    /// adds.</summary>
    public List<ToolCallTextDelta> Scan(string text)
    {
        var output = new List<ToolCallTextDelta>();
        while (_pos < text.Length && _mode != Mode.Done)
            if (_stack.Count > 0) Step(text, output);
            else if (!Top(text)) break;
        if (_streaming is { } call) Flush(call, text, call.ArgsEnd >= 0 ? call.ArgsEnd : _pos, output);
        return output;
    }

    /// <summary>Between JSON values: separators, markers and Mistral v11's names. False when what comes next
    /// needs more text.</summary>
    bool Top(string s)
    {
        char c = s[_pos];
        switch (_mode)
        {
            case Mode.Marker:
                string marker = Marker();
                int at = s.IndexOf(marker, _pos, StringComparison.Ordinal);
                if (at < 0)
                {
                    // what may be the start of the marker is looked at again when more text comes
                    _pos = Math.Max(_pos, s.Length - marker.Length + 1);
                    return false;
                }
                _pos = at + marker.Length;
                _mode = _afterMarker;
                if (_mode == Mode.MistralName) _nameStart = _pos;
                return true;
            case Mode.MistralStart when char.IsWhiteSpace(c):
                _pos++;
                return true;
            case Mode.MistralStart:
                // an array of call objects, or v11's name[ARGS]{...}
                if (c == '[') _mode = Mode.Json;
                else (_mode, _nameStart) = (Mode.MistralName, _pos);
                return true;
            case Mode.MistralName:
                int args = s.IndexOf("[ARGS]", _nameStart, StringComparison.Ordinal);
                if (args < 0) return false;
                _pos = args + "[ARGS]".Length;
                _mode = Mode.MistralArgs;
                _bare = new Call { Name = s[_nameStart..args].Trim(), Bare = true };
                return true;
            case Mode.MistralArgs:
                if (char.IsWhiteSpace(c)) _pos++;
                else if (c == '{')
                {
                    OpenArguments(_bare!);
                    Push(new Frame(true, Role.Args, _bare));
                }
                else _mode = Mode.Done;
                return true;
        }
        // a JSON value, or what separates two (Llama 3 writes ";" between calls)
        if (char.IsWhiteSpace(c) || (c == ';' && _mode == Mode.Json)) _pos++;
        else if (c == '{') Push(new Frame(true, Role.Call, new Call()));
        else if (c == '[' && _mode == Mode.Json) Push(new Frame(false, Role.CallList, null));
        else _mode = Mode.Done;
        return true;
    }

    string Marker() => format switch
    {
        ToolCallFormat.Hermes => "<tool_call>",
        ToolCallFormat.Llama3 => "<|python_tag|>",
        _ => "[TOOL_CALLS]",
    };

    void Push(Frame frame)
    {
        _stack.Push(frame);
        _pos++;
    }

    /// <summary>One character inside a JSON value.</summary>
    void Step(string s, List<ToolCallTextDelta> output)
    {
        char c = s[_pos];
        if (_inString)
        {
            if (_escape) _escape = false;
            else if (c == '\\') _escape = true;
            else if (c == '"')
            {
                _inString = false;
                EndString(s);
            }
            _pos++;
            return;
        }
        if (_inScalar)
        {
            if (c is not (',' or '}' or ']') && !char.IsWhiteSpace(c))
            {
                _pos++;
                return;
            }
            _inScalar = false;
        }
        var top = _stack.Peek();
        switch (c)
        {
            case '"':
                _inString = true;
                _stringStart = _pos;
                if (top.IsObject && top.Expect == Expect.Key) _stringRole = StringRole.Key;
                else
                {
                    _stringRole = StringRole.Other;
                    if (top is { Role: Role.Call or Role.Function, Call: { } call })
                        _stringRole = top.Key switch
                        {
                            "name" when call.Name is null => StringRole.Name,
                            "arguments" or "parameters" when call.ArgsStart < 0 => StringRole.Arguments,
                            _ => StringRole.Other,
                        };
                    if (_stringRole == StringRole.Arguments) top.Call!.ArgsStart = _pos;
                    top.Expect = Expect.Comma;
                }
                break;
            case '{' or '[':
                _stack.Push(Open(top, c == '{'));
                top.Expect = Expect.Comma;
                break;
            case '}' or ']':
                Close(s, output);
                break;
            case ':':
                top.Expect = Expect.Value;
                break;
            case ',':
                top.Expect = top.IsObject ? Expect.Key : Expect.Value;
                break;
            default:
                if (!char.IsWhiteSpace(c))
                {
                    _inScalar = true;
                    top.Expect = Expect.Comma;
                }
                break;
        }
        _pos++;
    }

    /// <summary>The frame of an object or array that opens at the current character inside
    /// <paramref name="parent"/>.</summary>
    Frame Open(Frame parent, bool isObject)
    {
        if (parent.Role == Role.CallList)
            return new Frame(isObject, isObject ? Role.Call : Role.Other, isObject ? new Call() : null);
        if (parent is not { Role: Role.Call or Role.Function, Call: { } call })
            return new Frame(isObject, Role.Other, null);
        switch (parent.Key)
        {
            case "tool_calls" when !isObject && parent.Role == Role.Call:
                return new Frame(false, Role.CallList, null);
            case "tool_call" when isObject && parent.Role == Role.Call:
                return new Frame(true, Role.Call, new Call());
            case "function" when isObject && parent.Role == Role.Call:
                return new Frame(true, Role.Function, call);
            case "arguments" or "parameters" when isObject && call.ArgsStart < 0:
                OpenArguments(call);
                return new Frame(true, Role.Args, call);
            default:
                return new Frame(isObject, Role.Other, null);
        }
    }

    /// <summary>An arguments object opens at the current character: it streams when the call's name is
    /// known.</summary>
    void OpenArguments(Call call)
    {
        call.ArgsStart = _pos;
        if (call.Name is null) return;
        call.Streams = true;
        _streaming = call;
    }

    void Close(string s, List<ToolCallTextDelta> output)
    {
        var frame = _stack.Pop();
        if (frame.Role == Role.Args) frame.Call!.ArgsEnd = _pos + 1;
        if (frame.Role == Role.Call || frame is { Role: Role.Args, Call.Bare: true }) End(frame.Call!, s, output);
        if (_stack.Count > 0) return;
        // the next call: after the format's next marker, or the next value
        if (_mode == Mode.One) (_mode, _afterMarker) = (Mode.Marker, Mode.One);
        else if (_mode == Mode.MistralArgs) (_mode, _afterMarker) = (Mode.Marker, Mode.MistralName);
    }

    void EndString(string s)
    {
        var top = _stack.Peek();
        switch (_stringRole)
        {
            case StringRole.Key:
                top.Key = Decode(s[_stringStart..(_pos + 1)]);
                top.Expect = Expect.Colon;
                break;
            case StringRole.Name:
                top.Call!.Name = Decode(s[_stringStart..(_pos + 1)]);
                break;
            case StringRole.Arguments:
                top.Call!.ArgsEnd = _pos + 1;
                top.Call.ArgsIsString = true;
                break;
        }
    }

    /// <summary>A call's object ended: the rest of its streamed arguments, or the whole call when it did not
    /// stream.</summary>
    void End(Call call, string s, List<ToolCallTextDelta> output)
    {
        if (call.Streams)
        {
            Flush(call, s, call.ArgsEnd, output);
            _streaming = null;
            return;
        }
        if (call.Name is null || call.ArgsEnd < 0) return;
        string arguments = s[call.ArgsStart..call.ArgsEnd];
        if (call.ArgsIsString)
        {
            arguments = Decode(arguments) ?? "";
            if (!ToolCallParser.IsObject(arguments)) return;
        }
        Emit(call.Name, arguments, output);
    }

    /// <summary>A streaming call's arguments up to <paramref name="end"/> (its first piece opens it).</summary>
    void Flush(Call call, string s, int end, List<ToolCallTextDelta> output)
    {
        if (call.Index < 0)
        {
            call.Index = Emit(call.Name!, s[call.ArgsStart..end], output);
            call.SentTo = end;
            return;
        }
        if (end <= call.SentTo) return;
        string piece = s[call.SentTo..end];
        call.SentTo = end;
        Sent[call.Index].Arguments.Append(piece);
        output.Add(new ToolCallTextDelta(call.Index, null, null, piece));
    }

    /// <summary>A call's first piece: its index, a new id, its name and <paramref name="arguments"/>.</summary>
    public int Emit(string name, string arguments, List<ToolCallTextDelta> output)
    {
        string id = newId();
        Sent.Add((id, name, new StringBuilder(arguments)));
        output.Add(new ToolCallTextDelta(Sent.Count - 1, id, name, arguments));
        return Sent.Count - 1;
    }

    /// <summary>A JSON string literal's value (null when it is not one).</summary>
    static string? Decode(string literal)
    {
        try
        {
            var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(literal));
            return reader.Read() && reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
