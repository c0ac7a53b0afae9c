using Weft.Models.Chat;

namespace Weft.Models.Tests.Chat;

// Expected strings are what HF transformers' Jinja rendering (trim_blocks, lstrip_blocks) of the published templates
// produces for llama.cpp's test-chat-template conversation, which also checks whitespace trimming.
public class ChatTemplateTests
{
    static readonly (string Role, string Content)[] WithSystem =
    [
        ("system", "You are a helpful assistant"),
        ("user", "Hello"),
        ("assistant", "Hi there"),
        ("user", "Who are you"),
        ("assistant", "   I am an assistant   "),
        ("user", "Another question"),
    ];

    static readonly (string Role, string Content)[] WithoutSystem = WithSystem[1..];

    static ChatTemplate FromGguf(string? template, string bos = "<s>", string eos = "</s>",
        bool tokenizerAddsBos = false) => ChatTemplate.Resolve(template, null, bos, eos, tokenizerAddsBos);

    // Mistral-Nemo-Instruct-2407's template ("v3-tekken") without its tool-calling branches.
    const string MistralNemo = """
        {%- if messages[0]["role"] == "system" %}
            {%- set system_message = messages[0]["content"] %}
            {%- set loop_messages = messages[1:] %}
        {%- else %}
            {%- set loop_messages = messages %}
        {%- endif %}
        {{- bos_token }}
        {%- for message in loop_messages %}
            {%- if message["role"] == "user" %}
                {%- if loop.last and system_message is defined %}
                    {{- "[INST]" + system_message + "\n\n" + message["content"] + "[/INST]" }}
                {%- else %}
                    {{- "[INST]" + message["content"] + "[/INST]" }}
                {%- endif %}
            {%- elif message["role"] == "assistant" %}
                {{- message["content"] + eos_token}}
            {%- endif %}
        {%- endfor %}
        """;

    // Mistral-Large-Instruct-2411 ("v7"), as llama.cpp's tests quote it.
    const string MistralLarge2411 =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}" +
        "{{ '[INST] ' + message['content'] + '[/INST]' }}" +
        "{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}" +
        "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}" +
        "{% else %}{{ raise_exception('Only user, system and assistant roles are supported!') }}" +
        "{% endif %}{% endfor %}";

    // mistralai/Mistral-7B-Instruct-v0.1's template before Mistral's 2024 update (no system role).
    const string MistralV01Original =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}" +
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    // teknium/OpenHermes-2.5-Mistral-7B: plain ChatML, no default system turn.
    const string OpenHermes =
        "{% for message in messages %}" +
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    // microsoft/phi-4: ChatML markers in a format of its own, which no family here renders.
    const string Phi4 =
        "{% for message in messages %}{% if (message['role'] == 'system') %}" +
        "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}" +
        "{% elif (message['role'] == 'user') %}" +
        "{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|><|im_start|>assistant<|im_sep|>'}}" +
        "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}";

    public static TheoryData<string, string> RealTemplates => new()
    {
        { ChatTemplates.TinyLlama, "zephyr" },
        { ChatTemplates.Llama2Chat, "llama2" },
        { ChatTemplates.Llama3Instruct, "llama3" },
        { ChatTemplates.Qwen25Instruct, "chatml" },
        { OpenHermes, "chatml" },
        { ChatTemplates.MistralV1, "mistral-v1" },
        { MistralV01Original, "mistral-v1" },
        { ChatTemplates.MistralV3, "mistral-v3" },
        { MistralNemo, "mistral-v3-tekken" },
        { MistralLarge2411, "mistral-v7" },
        { ChatTemplates.Gemma2It, "gemma" },
        { ChatTemplates.Phi3Mini, "phi3" },
    };

    [Theory]
    [MemberData(nameof(RealTemplates))]
    public void Detects_the_family_of_a_real_template(string template, string expected)
    {
        var t = FromGguf(template);
        Assert.Equal(expected, t.Name);
        Assert.False(t.IsFallback);
    }

    [Fact]
    public void TinyLlama_renders_zephyr_turns_each_ending_in_eos_and_newline()
    {
        var t = FromGguf(ChatTemplates.TinyLlama);
        Assert.Equal(
            "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n" +
            "<|assistant|>\nHi there</s>\n<|user|>\nWho are you</s>\n" +
            "<|assistant|>\n   I am an assistant   </s>\n<|user|>\nAnother question</s>\n<|assistant|>\n",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nWho are you</s>\n" +
            "<|assistant|>\n   I am an assistant   </s>\n<|user|>\nAnother question</s>\n<|assistant|>\n",
            t.Render(WithoutSystem, addGenerationPrompt: true));
        Assert.Equal("<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n",
            t.Render(WithSystem[..3], addGenerationPrompt: false));
    }

    [Fact]
    public void Llama2_puts_the_system_block_in_the_first_turn_and_bos_before_every_user_turn()
    {
        var t = FromGguf(ChatTemplates.Llama2Chat);
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>" +
            "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<s>[INST] Hello [/INST] Hi there </s>" +
            "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]",
            t.Render(WithoutSystem, addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2_strips_the_joined_system_and_user_text_as_one()
    {
        var t = FromGguf(ChatTemplates.Llama2Chat);
        Assert.Equal("<s>[INST] <<SYS>>\n  terse  \n<</SYS>>\n\n  hi [/INST]",
            t.Render([("system", "  terse  "), ("user", "  hi  ")], addGenerationPrompt: true));
    }

    [Fact]
    public void Llama3_trims_contents_and_opens_with_bos()
    {
        var t = FromGguf(ChatTemplates.Llama3Instruct, "<|begin_of_text|>", "<|eot_id|>");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            t.Render(WithoutSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
            t.Render(WithoutSystem[..1], addGenerationPrompt: false));
    }

    [Fact]
    public void Qwen25_keeps_contents_verbatim_and_writes_its_default_system_turn_when_none_is_given()
    {
        var t = FromGguf(ChatTemplates.Qwen25Instruct, "", "<|im_end|>");
        const string Turns =
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n" +
            "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n" +
            "<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n" + Turns,
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. " +
            "You are a helpful assistant.<|im_end|>\n" + Turns, t.Render(WithoutSystem, addGenerationPrompt: true));
    }

    [Fact]
    public void Plain_chatml_has_no_default_system_turn_and_renders_later_system_messages_in_place()
    {
        var t = FromGguf(OpenHermes);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nBe brief.<|im_end|>\n",
            t.Render([("user", "Hi"), ("system", "Be brief.")], addGenerationPrompt: false));
    }

    [Fact]
    public void MistralV1_spaces_inst_markers_and_merges_the_system_text_into_the_first_turn()
    {
        var t = FromGguf(ChatTemplates.MistralV1);
        Assert.Equal(
            "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s>" +
            " [INST] Who are you [/INST]    I am an assistant   </s>" +
            " [INST] Another question [/INST]",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<s> [INST] Hello [/INST] Hi there</s>" +
            " [INST] Who are you [/INST]    I am an assistant   </s> [INST] Another question [/INST]",
            t.Render(WithoutSystem, addGenerationPrompt: true));
    }

    [Fact]
    public void MistralV3_puts_the_system_text_in_the_last_user_turn_and_trims_replies()
    {
        var t = FromGguf(ChatTemplates.MistralV3);
        Assert.Equal(
            "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>" +
            "[INST] You are a helpful assistant\n\nAnother question[/INST]",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>" +
            "[INST] Another question[/INST]",
            t.Render(WithoutSystem, addGenerationPrompt: true));
        // The template drops the system text when the history ends with a reply.
        Assert.Equal("<s>[INST] Hello[/INST] Hi there</s>", t.Render(WithSystem[..3], addGenerationPrompt: false));
    }

    [Fact]
    public void MistralV3Tekken_has_no_spaces_around_markers_and_keeps_replies_verbatim()
    {
        var t = FromGguf(MistralNemo);
        Assert.Equal(
            "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>" +
            "[INST]You are a helpful assistant\n\nAnother question[/INST]",
            t.Render(WithSystem, addGenerationPrompt: true));
    }

    [Fact]
    public void MistralV7_has_a_system_role_in_place()
    {
        var t = FromGguf(MistralLarge2411);
        Assert.Equal(
            "<s>[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>" +
            "[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]",
            t.Render(WithSystem, addGenerationPrompt: true));
    }

    [Fact]
    public void Gemma_names_the_assistant_model_trims_turns_and_merges_the_system_text_into_the_first_user_turn()
    {
        var t = ChatTemplate.Resolve(null, "gemma", "<bos>", "<eos>", tokenizerAddsBos: false);
        const string Later =
            "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n" +
            "<start_of_turn>model\nI am an assistant<end_of_turn>\n" +
            "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n";
        Assert.Equal("<bos><start_of_turn>user\nHello<end_of_turn>\n" + Later,
            t.Render(WithoutSystem, addGenerationPrompt: true));
        // Gemma 3's template and llama.cpp merge a system message like this; gemma-2-it's own template refuses it.
        Assert.Equal("<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n" + Later,
            t.Render(WithSystem, addGenerationPrompt: true));
        var gemma2 = FromGguf(ChatTemplates.Gemma2It, "<bos>", "<eos>");
        Assert.Equal(t.Render(WithoutSystem, addGenerationPrompt: true),
            gemma2.Render(WithoutSystem, addGenerationPrompt: true));
        Assert.Contains("System role not supported",
            Assert.Throws<ArgumentException>(() => gemma2.Render(WithSystem, addGenerationPrompt: true)).Message);
    }

    [Fact]
    public void Phi3_renders_end_markers_and_closes_a_history_without_generation_prompt_with_eos()
    {
        var t = FromGguf(ChatTemplates.Phi3Mini, "<s>", "<|endoftext|>");
        Assert.Equal(
            "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n" +
            "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n" +
            "<|user|>\nAnother question<|end|>\n<|assistant|>\n",
            t.Render(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n" +
            "<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n",
            t.Render(WithoutSystem, addGenerationPrompt: true));
        Assert.Equal("<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n" +
            "<|assistant|>\nHi there<|end|>\n<|endoftext|>",
            t.Render(WithSystem[..3], addGenerationPrompt: false));
    }

    [Fact]
    public void A_leading_bos_is_left_to_the_tokenizer_when_it_adds_one()
    {
        var llama3 = FromGguf(ChatTemplates.Llama3Instruct, "<|begin_of_text|>", "<|eot_id|>", tokenizerAddsBos: true);
        Assert.Equal("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            llama3.Render([("user", "Hi")], addGenerationPrompt: true));

        // Only the leading one: Llama 2's BOS inside the history stays.
        var llama2 = FromGguf(ChatTemplates.Llama2Chat, tokenizerAddsBos: true);
        Assert.Equal("[INST] Hi [/INST] Hello </s><s>[INST] Bye [/INST]",
            llama2.Render([("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")], addGenerationPrompt: true));

        // A template that writes no BOS loses nothing.
        var qwen = FromGguf(ChatTemplates.Qwen25Instruct, "<|endoftext|>", "<|im_end|>", tokenizerAddsBos: true);
        Assert.StartsWith("<|im_start|>system\n", qwen.Render([("user", "Hi")], addGenerationPrompt: true));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("{% for m in messages %}{{ m['role'] }: {{ m['content'] }}\n{% endfor %}")]
    public void Missing_or_unparseable_templates_fall_back_to_chatml(string? template)
    {
        var t = FromGguf(template);
        Assert.True(t.IsFallback);
        Assert.False(t.IsTemplate);
        string? problem = template?.Contains('{') == true
            ? "tokenizer.chat_template does not parse: unexpected '}' (template line 1, column 37)" : null;
        Assert.Equal(problem, t.TemplateProblem);
        Assert.Equal("chatml", t.Name);
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
            t.Render([("system", "S"), ("user", "U")], addGenerationPrompt: true));
    }

    [Theory]
    [InlineData("llama3", "llama3")]
    [InlineData("Gemma", "gemma")]
    [InlineData(" phi3 ", "phi3")]
    [InlineData("mistral", "mistral-v1")]
    [InlineData("mistral-v7-tekken", "mistral-v7-tekken")]
    [InlineData("chatml", "chatml")]
    public void An_override_name_wins_over_the_gguf_template(string name, string expected)
    {
        var t = ChatTemplate.Resolve(ChatTemplates.TinyLlama, name, "<s>", "</s>", tokenizerAddsBos: false);
        Assert.Equal(expected, t.Name);
        Assert.False(t.IsFallback);
    }

    [Fact]
    public void An_override_template_is_detected_like_a_gguf_one()
    {
        var t = ChatTemplate.Resolve(null, ChatTemplates.Qwen25Instruct, "", "<|im_end|>", tokenizerAddsBos: false);
        Assert.Equal("chatml", t.Name);
        Assert.False(t.IsFallback);
        Assert.StartsWith("<|im_start|>system\nYou are Qwen", t.Render([("user", "Hi")], addGenerationPrompt: true));
    }

    [Fact]
    public void A_template_of_no_known_family_is_rendered_as_it_is_and_stops_at_eos()
    {
        var t = FromGguf("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", "<s>", "</s>");
        Assert.False(t.IsFallback);
        Assert.True(t.IsTemplate);
        Assert.Equal("template", t.Name);
        Assert.Equal("</s>", t.EndOfTurn);
        Assert.Equal("system: S\nuser: U\n", t.Render([("system", "S"), ("user", "U")], addGenerationPrompt: true));
        Assert.Equal("<|im_start|>system<|im_sep|>S<|im_end|><|im_start|>user<|im_sep|>U<|im_end|>" +
            "<|im_start|>assistant<|im_sep|>", FromGguf(Phi4).Render([("system", "S"), ("user", "U")], true));
    }

    [Fact]
    public void An_override_may_be_a_template_file()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}");
            var t = ChatTemplate.Resolve(ChatTemplates.TinyLlama, path, "<s>", "</s>", tokenizerAddsBos: false);
            Assert.True(t.IsTemplate);
            Assert.Equal("<s>[user] Hi", t.Render([("user", "Hi")], addGenerationPrompt: true));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void An_override_template_that_does_not_parse_is_an_error_saying_where()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            ChatTemplate.Resolve(null, "{% for m in messages %}\n{{ m.content }", "<s>", "</s>", false));
        Assert.Contains("line 2, column 14", e.Message);
    }

    [Fact]
    public void A_blank_override_is_no_override()
    {
        Assert.Equal("zephyr", ChatTemplate.Resolve(ChatTemplates.TinyLlama, " ", "<s>", "</s>", false).Name);
    }

    [Fact]
    public void An_unrecognised_override_is_an_error_naming_the_formats()
    {
        var e = Assert.Throws<ArgumentException>(() => ChatTemplate.Resolve(ChatTemplates.TinyLlama, "vicuna", "<s>",
            "</s>", false));
        Assert.Contains("vicuna", e.Message);
        Assert.Contains("llama3", e.Message);
        Assert.Equal("overrideNameOrTemplate", e.ParamName);
    }

    [Fact]
    public void Stop_text_is_the_format_end_of_turn_marker()
    {
        Assert.Equal("<|im_end|>", FromGguf(ChatTemplates.Qwen25Instruct).EndOfTurn);
        Assert.Equal("<|eot_id|>", FromGguf(ChatTemplates.Llama3Instruct).EndOfTurn);
        Assert.Equal("<end_of_turn>", FromGguf(ChatTemplates.Gemma2It).EndOfTurn);
        Assert.Equal("<|end|>", FromGguf(ChatTemplates.Phi3Mini).EndOfTurn);
        Assert.Equal("</s>", FromGguf(ChatTemplates.TinyLlama).EndOfTurn);
        Assert.Equal("</s>", FromGguf(ChatTemplates.MistralV3).EndOfTurn);
    }

    [Theory]
    [InlineData("tool")]
    [InlineData("User")]
    [InlineData("developer")]
    public void Roles_other_than_system_user_assistant_are_rejected(string role)
    {
        var e = Assert.Throws<ArgumentException>(() =>
            FromGguf(ChatTemplates.Llama3Instruct).Render([("user", "Hi"), (role, "x")], addGenerationPrompt: true));
        Assert.Contains($"Message 1 has role \"{role}\"", e.Message);
    }

    [Fact]
    public void Empty_conversations_and_missing_content_are_rejected()
    {
        var t = FromGguf(ChatTemplates.TinyLlama);
        Assert.Throws<ArgumentNullException>(() => t.Render(null!, addGenerationPrompt: true));
        Assert.Contains("no messages",
            Assert.Throws<ArgumentException>(() => t.Render([], addGenerationPrompt: true)).Message);
        Assert.Contains("no content",
            Assert.Throws<ArgumentException>(() => t.Render([("user", null!)], true)).Message);
    }

    public static TheoryData<string, (string Role, string Content)[], string> BrokenAlternation => new()
    {
        { "mistral-v3", [("user", "a"), ("user", "b")], "message 1 is \"user\" where \"assistant\" was expected" },
        { "mistral-v1", [("user", "a"), ("assistant", "b"), ("system", "c"), ("user", "d")],
            "message 2 is \"system\"" },
        { "llama2", [("system", "s"), ("assistant", "a")],
            "message 1 is \"assistant\" where \"user\" was expected" },
        { "gemma", [("user", "a"), ("assistant", "b"), ("system", "c")], "message 2 is \"system\"" },
        { "llama2", [("system", "s")], "only a system message" },
    };

    [Theory]
    [MemberData(nameof(BrokenAlternation))]
    public void Built_in_formats_that_require_alternation_reject_other_orders(
        string format, (string Role, string Content)[] messages, string expected)
    {
        var t = ChatTemplate.Resolve(null, format, "<s>", "</s>", tokenizerAddsBos: false);
        var e = Assert.Throws<ArgumentException>(() => t.Render(messages, addGenerationPrompt: true));
        Assert.Contains(expected, e.Message);
        Assert.Contains(t.Name, e.Message);
    }

    public static TheoryData<string, (string Role, string Content)[], string> RaisingTemplates => new()
    {
        { ChatTemplates.MistralV3, [("user", "a"), ("user", "b")],
            "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..." },
        { ChatTemplates.MistralV1, [("user", "a"), ("assistant", "b"), ("system", "c"), ("user", "d")],
            "After the optional system message, conversation roles must alternate user/assistant/user/assistant/..." },
        { ChatTemplates.Llama2Chat, [("system", "s"), ("assistant", "a")],
            "Conversation roles must alternate user/assistant/user/assistant/..." },
        { ChatTemplates.Gemma2It, [("user", "a"), ("assistant", "b"), ("system", "c")],
            "Conversation roles must alternate user/assistant/user/assistant/..." },
    };

    [Theory]
    [MemberData(nameof(RaisingTemplates))]
    public void A_template_that_raises_an_exception_is_an_argument_error_naming_its_reason(
        string template, (string Role, string Content)[] messages, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => FromGguf(template).Render(messages, addGenerationPrompt: true));
        Assert.Equal($"The model's chat template rejects this conversation: {reason} (Parameter 'messages')",
            e.Message);
    }

    [Fact]
    public void Formats_with_a_system_role_accept_any_order()
    {
        (string Role, string Content)[] odd = [("assistant", "a"), ("system", "s"), ("assistant", "b")];
        Assert.Equal("<|assistant|>\na<|end|>\n<|system|>\ns<|end|>\n<|assistant|>\nb<|end|>\n<|assistant|>\n",
            FromGguf(ChatTemplates.Phi3Mini).Render(odd, addGenerationPrompt: true));
    }
}
