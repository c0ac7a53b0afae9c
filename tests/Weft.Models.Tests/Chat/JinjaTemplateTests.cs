using System.Text.Json;
using Weft.Models.Chat.Jinja;

namespace Weft.Models.Tests.Chat;

// Expected texts are what Python's jinja2 3.1.6 renders with transformers' settings (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols, its tojson).
public class JinjaTemplateTests
{
    static readonly DateTime Now = new(2025, 3, 9, 14, 5, 7);

    static string Render(string template, string variablesJson = "{}") =>
        JinjaTemplate.Parse(template).Render(
            (Dictionary<string, object?>)JinjaTemplate.FromJson(JsonDocument.Parse(variablesJson).RootElement)!, Now);

    public static TheoryData<string, string, string> Constructs => new()
    {
        // trim_blocks removes the newline after a block tag and lstrip_blocks the indentation before it
        { "{% if true %}\n  yes\n{% endif %}\nafter",
            "{}",
            "  yes\nafter" },
        // lstrip_blocks leaves text before a tag on the same line, and {%+ opts out
        { "  {% if true %}x{% endif %}  \n  {%+ if true %}y{% endif %}",
            "{}",
            "x  \n  y" },
        // minus signs strip all white space on their side
        { "a  {%- if true -%}  b  {%- endif -%}  c",
            "{}",
            "abc" },
        // output tags keep their newline unless -}} strips it
        { "{{ 'x' }}\n{{ 'y' -}}\n  z",
            "{}",
            "x\nyz" },
        // comments vanish with the same whitespace rules
        { "{# note #}\nA{#- gone -#}  B",
            "{}",
            "AB" },
        // loop variables count the iterations
        { "{% for x in items %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% else %}none{% endfor %}",
            "{\"items\": [1, 2, 3]}",
            "1/3,2/3,3/3" },
        // an inline if filters the loop and else runs for an empty one
        { "{% for x in items if x is odd %}{{ x }}{{ loop.revindex0 }}"
          + "{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}",
            "{\"items\": [1, 2, 3, 4, 5]}",
            "123150|empty" },
        // break and continue
        { "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
          + "{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
            "{}",
            "0134" },
        // namespace outlives the loop, a plain set does not
        { "{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
          + "{% set local = i %}{% endfor %}{{ ns.n }}{{ local is defined }}",
            "{}",
            "3False" },
        // macros take defaults and keyword arguments
        { "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
          + "{{ greet('A') }} {{ greet('B', punct='?') }}",
            "{}",
            "Hi A! Hi B?" },
        // call blocks pass their body as caller
        { "{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside{% endcall %}",
            "{}",
            "[inside]" },
        // filter blocks filter their body
        { "{% filter upper %}shout {{ 'this' }}{% endfilter %}",
            "{}",
            "SHOUT THIS" },
        // slices, negative indices and missing items
        { "{{ 'hello'[1:3] }}{{ [1,2,3,4][::-1] }}{{ 'abc'[-1] }}{{ [1,2,3][5] is defined }}",
            "{}",
            "el[4, 3, 2, 1]cFalse" },
        // in and not in on strings, lists and dicts
        { "{{ 'b' in 'abc' }}{{ 2 in [1,2] }}{{ 'k' in {'k': 1} }}{{ 'z' not in 'abc' }}",
            "{}",
            "TrueTrueTrueTrue" },
        // is tests
        { "{{ x is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}"
          + "{{ u is defined }}{{ 3 is divisibleby 3 }}",
            "{\"x\": null, \"s\": \"s\", \"d\": {}, \"l\": []}",
            "TrueTrueTrueTrueFalseTrue" },
        // string methods
        { "{{ ' a b '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}"
          + "|{{ ' a  b '.split() }}|{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x','b')) }}"
          + "|{{ 'hello world'.title() }}|{{ 'aXa'.replace('a', 'b') }}",
            "{}",
            "a b|axx|['a', 'b', '', 'c']|['a', 'b']|TrueTrue|Hello World|bXb" },
        // dict methods
        { "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('a') }}"
          + "{{ d.get('z', 'dflt') }}{{ d.z is defined }}",
            "{\"d\": {\"a\": 1, \"b\": [2]}}",
            "a=1;b=[2];1dfltFalse" },
        // arithmetic follows Python
        { "{{ 1 ~ 'x' ~ none ~ true }}|{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }}"
          + " {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 10 / 5 }}",
            "{}",
            "1xNoneTrue|3 -4 1 2 3.5 1024 2.5 2.0" },
        // tojson is transformers' json.dumps
        { "{{ {'b': 1, 'a': [1, 'x', none, true, 1.5]} | tojson }}|{{ {'b': 1, 'a': {'c': 'é\"\\n'}}"
          + " | tojson(indent=2) }}",
            "{}",
            "{\"b\": 1, \"a\": [1, \"x\", null, true, 1.5]}|{\n  \"b\": 1,\n  \"a\": {\n    \"c\": \"é\\\"\\"
            + "n\"\n  }\n}" },
        // common filters
        { "{{ '  pad  ' | trim }}|{{ [1,2,3] | length }}|{{ ['a','b'] |"
          + " join(', ') }}|{{ 'aB' | upper }}{{ 'aB' | lower }}|{{ u | default('d') }}"
          + "|{{ '' | default('e', true) }}|{{ [1,2] | first }}{{ [1,2] |"
          + " last }}",
            "{}",
            "pad|3|a, b|ABab|d|e|12" },
        // selectattr, rejectattr and map
        { "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') |"
          + " join(',') }}|{{ ms | rejectattr('role', 'eq', 'user') | list |"
          + " length }}|{{ ms | map(attribute='role') | list }}",
            "{\"ms\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\""
            + "}, {\"role\": \"user\", \"content\": \"c\"}]}",
            "a,c|1|['user', 'assistant', 'user']" },
        // conversion and formatting filters
        { "{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ 5 |"
          + " string ~ '!' }}|{{ 'hello WORLD' | capitalize }}|{{ '<b>' |"
          + " safe }}|{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}",
            "{}",
            "43|0|3|5!|Hello world|<b>|a\n  b\n\n  c|  a\n  b" },
        // items, sort, unique, reverse, sum
        { "{{ d | items | list }}|{{ [3,1,2] | sort }}|{{ [1,1,2] | unique |"
          + " list }}|{{ [1,2] | reverse | list }}|{{ [1,2,3] | sum }}",
            "{\"d\": {\"x\": 1}}",
            "[('x', 1)]|[1, 2, 3]|[1, 2]|[2, 1]|6" },
        // values print as Python's str
        { "{{ [1, 'a', none, true, 1.0, 1e20, 0.0001, 1e-5] }}|{{ {'a': 'it\\'s'} }}|{{ (1,) }}|{{ (1, 2) }}",
            "{}",
            "[1, 'a', None, True, 1.0, 1e+20, 0.0001, 1e-05]|{'a': \"it's\"}|(1,)|(1, 2)" },
        // tuple assignment and set blocks
        { "{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set t %}block {{ a }}{% endset %}[{{ t }}]",
            "{}",
            "21[block 1]" },
        // inline if, none, and/or values and chained comparisons
        { "{{ 'x' if false }}|{{ 'y' if false else 'z' }}|{{ none }}|{{ true and 'T' }}"
          + "|{{ false or 'F' }}|{{ not 0 }}|{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}",
            "{}",
            "|z|None|T|F|True|TrueFalse" },
    };

    [Theory]
    [MemberData(nameof(Constructs))]
    public void Each_construct_renders_what_python_jinja2_renders(string template, string variables, string expected)
    {
        Assert.Equal(expected, Render(template, variables));
    }

    [Theory]
    [InlineData("{% if x %}\n  {{ x.y( }}\n{% endif %}", "unexpected '}'", 2, 12)]
    [InlineData("{% for x in y %}\n{{ x }}", "the for is not closed with endfor", 1, 4)]
    [InlineData("text {{ 'open", "the string is not closed", 1, 9)]
    [InlineData("{% include 'other.jinja' %}", "unknown tag 'include'", 1, 4)]
    public void A_template_that_does_not_parse_says_where(string template, string reason, int line, int column)
    {
        var e = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template));
        Assert.Equal((reason, line, column), (e.Reason, e.Line, e.Column));
    }

    [Fact]
    public void A_template_nested_deeper_than_the_stack_allows_is_an_error_not_a_crash()
    {
        string deep = "{{ " + new string('(', 200_000) + "1" + new string(')', 200_000) + " }}";
        Assert.Equal("the template nests too deeply", Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(deep))
            .Reason);
    }

    [Fact]
    public void A_failure_while_rendering_says_where()
    {
        var e = Assert.Throws<JinjaException>(() => Render("line one\n{{ 'a' + 1 }}"));
        Assert.Equal((2, 8), (e.Line, e.Column));
        Assert.Contains("unsupported operand types for +: str and int", e.Message);
        e = Assert.Throws<JinjaException>(() => Render("{{ missing.field }}"));
        Assert.Equal("'missing' is undefined", e.Reason);
    }

    [Fact]
    public void Raise_exception_stops_the_template_with_its_message()
    {
        var e = Assert.Throws<JinjaRaisedException>(() =>
            Render("ok\n{% if n > 1 %}{{ raise_exception('Only ' ~ 1 ~ ' message') }}{% endif %}", "{\"n\": 2}"));
        Assert.Equal(("Only 1 message", 2, 18), (e.Reason, e.Line, e.Column));
    }

    [Fact]
    public void Strftime_now_formats_the_given_time_as_python_does()
    {
        Assert.Equal("09 Mar 2025|9 March 2025, 14:05:07 PM|Sunday 068",
            Render("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%-d %B %Y, %H:%M:%S %p') }}|" +
                "{{ strftime_now('%A %j') }}"));
    }

    // What Python's json.dumps of transformers' tojson(x, ensure_ascii=False, indent=None, separators=None,
    // sort_keys=False) rendered, written as json.dumps writes the text: a first positional argument is ensure_ascii,
    // not Jinja's indent.
    public static TheoryData<string, string> ToJsonCalls => new()
    {
        { "{{ v | tojson(true) }}",
            """
            "{\"b\": \"\\u00e9 \\u65e5 \\ud83d\\ude00 \\u2028\", \"a\": [1, \"\\u0001\", null]}"
            """ },
        { "{{ v | tojson(false, 2) }}",
            """
            "{\n  \"b\": \"\u00e9 \u65e5 \ud83d\ude00 \u2028\",\n  \"a\": [\n    1,\n    \"\\u0001\",\n    null\n  ]\n}"
            """ },
        { "{{ v | tojson(true, none, (',', ':'), true) }}",
            """
            "{\"a\":[1,\"\\u0001\",null],\"b\":\"\\u00e9 \\u65e5 \\ud83d\\ude00 \\u2028\"}"
            """ },
        { "{{ v | tojson(ensure_ascii=true) }}",
            """
            "{\"b\": \"\\u00e9 \\u65e5 \\ud83d\\ude00 \\u2028\", \"a\": [1, \"\\u0001\", null]}"
            """ },
        { "{{ v | tojson(ensure_ascii=true, indent=1, sort_keys=true) }}",
            """
            "{\n \"a\": [\n  1,\n  \"\\u0001\",\n  null\n ],\n \"b\": \"\\u00e9 \\u65e5 \\ud83d\\ude00 \\u2028\"\n}"
            """ },
        { "{{ v | tojson(false, 0) }}",
            """
            "{\n\"b\": \"\u00e9 \u65e5 \ud83d\ude00 \u2028\",\n\"a\": [\n1,\n\"\\u0001\",\nnull\n]\n}"
            """ },
        { "{{ v | tojson(indent=-3) }}",
            """
            "{\n\"b\": \"\u00e9 \u65e5 \ud83d\ude00 \u2028\",\n\"a\": [\n1,\n\"\\u0001\",\nnull\n]\n}"
            """ },
        { "{{ v | tojson(indent='\\t') }}",
            """
            "{\n\t\"b\": \"\u00e9 \u65e5 \ud83d\ude00 \u2028\",\n\t\"a\": [\n\t\t1,\n\t\t\"\\u0001\",\n\t\tnull\n\t]\n}"
            """ },
    };

    [Theory]
    [MemberData(nameof(ToJsonCalls))]
    public void Tojson_takes_transformers_arguments_by_position_and_name_as_python_does(string template, string python)
    {
        const string Variables = """{"v": {"b": "\u00e9 \u65e5 \ud83d\ude00 \u2028", "a": [1, "\u0001", null]}}""";
        Assert.Equal(JsonSerializer.Deserialize<string>(python), Render(template, Variables));
    }

    [Theory]
    [InlineData("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps")]
    [InlineData("{{ 'x' * 100000000 }}", "characters")]
    [InlineData("{% for i in range(3000) %}{{ 'y' * 10000 }}{% endfor %}", "characters")]
    [InlineData("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested deeper")]
    [InlineData("{{ [1] | tojson(indent=100000000) }}", "characters")]
    [InlineData("{{ ([[[[[[[[1]]]]]]]] * 3000) | tojson(indent='y' * 100) }}", "characters")]
    public void Runaway_templates_stop_at_the_limits(string template, string reason)
    {
        var limits = new JinjaLimits(MaxSteps: 1_000_000, MaxOutputChars: 1 << 20, MaxCallDepth: 32);
        var e = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template).Render(
            new Dictionary<string, object?>(), Now, limits));
        Assert.Contains(reason, e.Reason);
    }

    [Theory]
    [InlineData("{{ messages.append(1) }}", "access to attribute 'append' of 'list' object is unsafe")]
    [InlineData("{{ d.update({'a': 2}) }}", "access to attribute 'update' of 'dict' object is unsafe")]
    [InlineData("{{ ''.__class__.__mro__ }}", "is undefined")]
    public void The_sandbox_allows_no_mutation_and_no_reach_outside_the_values(string template, string reason)
    {
        var e = Assert.Throws<JinjaException>(() => Render(template, "{\"messages\": [], \"d\": {}}"));
        Assert.Contains(reason, e.Reason);
    }
}
