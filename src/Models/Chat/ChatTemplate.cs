using System.Text;
using System.Text.RegularExpressions;
using Weft.Models.Chat.Jinja;

namespace Weft.Models.Chat;

/// <summary>
/// Renders a conversation into prompt text with the model's own tokenizer.chat_template, executed by the project's
/// Jinja2 engine as Hugging Face transformers executes it (<see cref="JinjaTemplate"/>). Files without a template, and
/// operators who name a format instead of giving a template, get one of the common formats built in here (detected
/// by a template's distinctive markers, as llama.cpp's llm_chat_detect_template does), each reproducing what the
/// published template renders for the conversations it accepts.
/// </summary>
/// <remarks>
/// <para>Missing templates fall back to ChatML with <see cref="IsFallback"/> set, as llama.cpp's server does (vLLM
/// refuses to serve chat without a template instead; a plain "role: content" transcript is what neither does). A
/// file's template that this engine cannot parse falls back the same way, to the format it resembles, with
/// <see cref="TemplateProblem"/> saying why.</para>
/// <para>BOS: templates that write bos_token into the text are rendered with it, and the text is tokenized with special
/// tokens parsed. When the tokenizer also adds BOS itself (tokenizer.ggml.add_bos_token) and the rendered text starts
/// with the BOS text, that one leading BOS text is removed, as llama.cpp's server does, so the prompt starts with
/// exactly one BOS; BOS texts inside the history (Llama 2 writes one per turn) stay.</para>
/// <para>The built-in formats without a system role (Llama 2, Mistral, Gemma) merge the system message into a user
/// turn as their templates do, and reject conversations that do not alternate user/assistant where their templates
/// raise_exception. Errors, a template's raise_exception included, are <see cref="ArgumentException"/>s that name
/// the reason.</para>
/// </remarks>
public sealed partial class ChatTemplate
{
    enum Family
    {
        ChatML, Llama2, Llama3, Zephyr, MistralV1, MistralV3, MistralV3Tekken, MistralV7, MistralV7Tekken, Gemma, Phi3
    }

    static readonly Dictionary<string, Family> Names = new(StringComparer.OrdinalIgnoreCase)
    {
        ["chatml"] = Family.ChatML,
        ["llama2"] = Family.Llama2,
        ["llama3"] = Family.Llama3,
        ["zephyr"] = Family.Zephyr,
        ["mistral"] = Family.MistralV1,
        ["mistral-v1"] = Family.MistralV1,
        ["mistral-v3"] = Family.MistralV3,
        ["mistral-v3-tekken"] = Family.MistralV3Tekken,
        ["mistral-v7"] = Family.MistralV7,
        ["mistral-v7-tekken"] = Family.MistralV7Tekken,
        ["gemma"] = Family.Gemma,
        ["phi3"] = Family.Phi3,
    };

    // null for a template of no recognised family
    readonly Family? family;
    // The template itself, rendered instead of the built-in format; family then only names the end of turn.
    readonly JinjaTemplate? jinja;
    readonly string bos;
    readonly string eos;
    readonly bool stripLeadingBos;
    void RenderBuiltIn(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages,
        bool addGenerationPrompt)
    {
        switch (family)
        {
            case Family.ChatML: RenderChatML(sb, messages, addGenerationPrompt); break;
            case Family.Llama2: RenderLlama2(sb, messages); break;
            case Family.Llama3: RenderLlama3(sb, messages, addGenerationPrompt); break;
            case Family.Zephyr: RenderZephyr(sb, messages, addGenerationPrompt); break;
            case Family.MistralV1: RenderMistralV1(sb, messages); break;
            case Family.MistralV3: RenderMistralV3(sb, messages, tekken: false); break;
            case Family.MistralV3Tekken: RenderMistralV3(sb, messages, tekken: true); break;
            case Family.MistralV7: RenderMistralV7(sb, messages, space: " "); break;
            case Family.MistralV7Tekken: RenderMistralV7(sb, messages, space: ""); break;
            case Family.Gemma: RenderGemma(sb, messages, addGenerationPrompt); break;
            case Family.Phi3: RenderPhi3(sb, messages, addGenerationPrompt); break;
        }
    }

    // The variables transformers' apply_chat_template passes: no tools or documents here, the special tokens' texts.
    string RenderTemplate(JinjaTemplate template, IReadOnlyList<(string Role, string Content)> messages,
        bool addGenerationPrompt)
    {
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => (object?)new Dictionary<string, object?>
            {
                ["role"] = m.Role,
                ["content"] = m.Content,
            }).ToList(),
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bos,
            ["eos_token"] = eos,
        };
        return Run(template, variables, DateTime.Now, nameof(messages));
    }

    /// <summary>A template's rendering, its raise_exception and its errors as an ArgumentException about
    /// <paramref name="messages"/> (the caller's parameter).</summary>
    static string Run(JinjaTemplate template, Dictionary<string, object?> variables, DateTime now, string messages)
    {
        try
        {
            return template.Render(variables, now);
        }
        catch (JinjaRaisedException e)
        {
            throw new ArgumentException($"The model's chat template rejects this conversation: {e.Reason}",
                messages, e);
        }
        catch (JinjaException e)
        {
            throw new ArgumentException($"The model's chat template failed on this conversation: {e.Message}",
                messages, e);
        }
    }

    // Qwen-style ChatML templates open with a built-in system turn when the conversation has none.
    readonly string? defaultSystemPrompt;

    ChatTemplate(Family? family, string bos, string eos, bool tokenizerAddsBos, string? defaultSystemPrompt,
        bool isFallback, JinjaTemplate? jinja = null, string? templateProblem = null)
    {
        this.family = family;
        this.jinja = jinja;
        TemplateProblem = templateProblem;
        this.bos = bos;
        this.eos = eos;
        stripLeadingBos = tokenizerAddsBos && bos.Length > 0;
        this.defaultSystemPrompt = defaultSystemPrompt;
        IsFallback = isFallback;
    }

    /// <summary>
    /// The format: chatml, llama2, llama3, zephyr, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7,
    /// mistral-v7-tekken, gemma or phi3; the names an override may give (plus "mistral", meaning mistral-v1). A
    /// rendered template is named by the format it resembles, or "template".
    /// </summary>
    public string Name => family switch
    {
        null => "template",
        Family.ChatML => "chatml",
        Family.Llama2 => "llama2",
        Family.Llama3 => "llama3",
        Family.Zephyr => "zephyr",
        Family.MistralV1 => "mistral-v1",
        Family.MistralV3 => "mistral-v3",
        Family.MistralV3Tekken => "mistral-v3-tekken",
        Family.MistralV7 => "mistral-v7",
        Family.MistralV7Tekken => "mistral-v7-tekken",
        Family.Gemma => "gemma",
        Family.Phi3 => "phi3",
        _ => throw new InvalidOperationException($"unhandled chat format {family}"),
    };

    /// <summary>True when the model had no template (or one this engine cannot parse, of no recognised family), so
    /// ChatML is used instead.</summary>
    public bool IsFallback { get; }

    /// <summary>True when the template text itself is rendered, false for a built-in format.</summary>
    public bool IsTemplate => jinja is not null;

    /// <summary>Why the file's template is not rendered (it does not parse; the message says where), or
    /// null.</summary>
    public string? TemplateProblem { get; }

    /// <summary>The text that closes an assistant reply in this format: where generation should stop (EOS for a
    /// template of no recognised family).</summary>
    public string EndOfTurn => family switch
    {
        Family.ChatML => "<|im_end|>",
        Family.Llama3 => "<|eot_id|>",
        Family.Gemma => "<end_of_turn>",
        Family.Phi3 => "<|end|>",
        _ => eos,
    };

    /// <summary>
    /// Picks the template: the operator's override when given (a format name as <see cref="Name"/> lists, the path
    /// of a template file, or a template's text), else the GGUF's tokenizer.chat_template, else ChatML as a fallback.
    /// </summary>
    /// <param name="ggufTemplate">tokenizer.chat_template, or null when the model has none.</param>
    /// <param name="overrideNameOrTemplate">Operator's choice; null or blank for none. A template that does not parse
    /// is an error that says where.</param>
    /// <param name="bosText">Text of the BOS token (what bos_token renders as), e.g. "&lt;s&gt;"; may be empty.</param>
    /// <param name="eosText">Text of the EOS token (eos_token), e.g. "&lt;/s&gt;".</param>
    /// <param name="tokenizerAddsBos">Whether tokenizing the prompt adds BOS by itself
    /// (tokenizer.ggml.add_bos_token).</param>
    public static ChatTemplate Resolve(string? ggufTemplate, string? overrideNameOrTemplate, string bosText,
        string eosText, bool tokenizerAddsBos)
    {
        ArgumentNullException.ThrowIfNull(bosText);
        ArgumentNullException.ThrowIfNull(eosText);
        if (!string.IsNullOrWhiteSpace(overrideNameOrTemplate))
        {
            if (Names.TryGetValue(overrideNameOrTemplate.Trim(), out var named))
                return new(named, bosText, eosText, tokenizerAddsBos, defaultSystemPrompt: null, isFallback: false);
            string text = File.Exists(overrideNameOrTemplate) ? File.ReadAllText(overrideNameOrTemplate)
                : overrideNameOrTemplate;
            // a mistyped format name would otherwise be a template that renders itself
            if (!text.Contains("{{", StringComparison.Ordinal) && !text.Contains("{%", StringComparison.Ordinal))
                throw new ArgumentException($"Chat template override \"{Abbreviate(overrideNameOrTemplate)}\" is " +
                    $"neither a format name ({string.Join(", ", Names.Keys)}) nor a template file or text.",
                    nameof(overrideNameOrTemplate));
            JinjaTemplate parsed;
            try
            {
                parsed = JinjaTemplate.Parse(text);
            }
            catch (JinjaException e)
            {
                throw new ArgumentException($"Chat template override \"{Abbreviate(overrideNameOrTemplate)}\" is " +
                    $"neither a format name ({string.Join(", ", Names.Keys)}) nor a template that parses: " +
                    e.Message, nameof(overrideNameOrTemplate), e);
            }
            return new(Detect(text), bosText, eosText, tokenizerAddsBos, null, isFallback: false, parsed);
        }
        if (string.IsNullOrWhiteSpace(ggufTemplate))
            return new(Family.ChatML, bosText, eosText, tokenizerAddsBos, defaultSystemPrompt: null, isFallback: true);
        try
        {
            return new(Detect(ggufTemplate), bosText, eosText, tokenizerAddsBos, null, isFallback: false,
                JinjaTemplate.Parse(ggufTemplate));
        }
        catch (JinjaException e)
        {
            var resembled = Detect(ggufTemplate);
            return new(resembled ?? Family.ChatML, bosText, eosText, tokenizerAddsBos,
                resembled is { } f ? DefaultSystemPrompt(f, ggufTemplate) : null, isFallback: resembled is null,
                templateProblem: "tokenizer.chat_template does not parse: " + e.Message);
        }
    }

    /// <summary>
    /// The prompt text for <paramref name="messages"/> (role "system", "user" or "assistant", and content), to be
    /// tokenized with special tokens parsed (and with the tokenizer's own BOS setting). With
    /// <paramref name="addGenerationPrompt"/> the text ends where the assistant's reply begins; Llama 2 and Mistral
    /// formats have no separate generation prompt, a user turn already ends there.
    /// </summary>
    /// <exception cref="ArgumentException">A role other than system/user/assistant, an order the format rejects,
    /// or the template's raise_exception (the message says why).</exception>
    public string Render(IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        ValidateMessages(messages);
        var sb = new StringBuilder();
        if (jinja is not null) sb.Append(RenderTemplate(jinja, messages, addGenerationPrompt));
        else RenderBuiltIn(sb, messages, addGenerationPrompt);
        if (stripLeadingBos && sb.Length >= bos.Length && sb.ToString(0, bos.Length) == bos)
            sb.Remove(0, bos.Length);
        return sb.ToString();
    }

    // Qwen2.5-Instruct, OpenHermes and the other ChatML templates; Qwen's write a default system turn.
    void RenderChatML(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        if (defaultSystemPrompt is not null && messages[0].Role != "system")
            sb.Append("<|im_start|>system\n").Append(defaultSystemPrompt).Append("<|im_end|>\n");
        foreach (var m in messages)
            sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
        if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
    }

    // Llama-2-chat: BOS opens every user turn; the system block joins the first user turn, and the template strips the
    // joined text as a whole, so the system text keeps its own edges and the user text only loses its trailing space.
    void RenderLlama2(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages)
    {
        int start = RequireAlternation(messages);
        for (int i = start; i < messages.Count; i++)
        {
            string content = messages[i].Content;
            if (i == start && start == 1) content = $"<<SYS>>\n{messages[0].Content}\n<</SYS>>\n\n{content}";
            if (messages[i].Role == "user")
                sb.Append(bos).Append("[INST] ").Append(PyStrip(content)).Append(" [/INST]");
            else sb.Append(' ').Append(PyStrip(content)).Append(' ').Append(eos);
        }
    }

    // Meta-Llama-3-Instruct (also matches the 3.1+ templates, whose dated tool-calling system preamble is not written).
    void RenderLlama3(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        sb.Append(bos);
        foreach (var m in messages)
            sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(PyStrip(m.Content))
                .Append("<|eot_id|>");
        if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    // Zephyr / TinyLlama: the template's newline after each {{ }} survives trim_blocks, so every turn ends "eos\n".
    void RenderZephyr(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        foreach (var m in messages)
            sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append(eos).Append('\n');
        if (addGenerationPrompt) sb.Append("<|assistant|>\n");
    }

    // Mistral v1 (SentencePiece [INST] text): system text opens the first user turn; contents are not trimmed.
    void RenderMistralV1(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages)
    {
        int start = RequireAlternation(messages);
        sb.Append(bos);
        for (int i = start; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role == "assistant") { sb.Append(' ').Append(m.Content).Append(eos); continue; }
            sb.Append(" [INST] ");
            if (i == start && start == 1) sb.Append(messages[0].Content).Append("\n\n");
            sb.Append(m.Content).Append(" [/INST]");
        }
    }

    // Mistral v3 and v3-tekken: the system text goes into the user turn only when that turn is the conversation's
    // last message (so it is dropped when the history ends with an assistant reply), exactly as the template does.
    void RenderMistralV3(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool tekken)
    {
        int start = RequireAlternation(messages);
        string space = tekken ? "" : " ";
        sb.Append(bos);
        for (int i = start; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role == "assistant")
            {
                sb.Append(space).Append(tekken ? m.Content : PyStrip(m.Content)).Append(eos);
                continue;
            }
            sb.Append("[INST]").Append(space);
            if (i == messages.Count - 1 && start == 1) sb.Append(messages[0].Content).Append("\n\n");
            sb.Append(m.Content).Append("[/INST]");
        }
    }

    // Mistral v7: a real system role, in place, as llama.cpp's built-in renders it.
    void RenderMistralV7(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, string space)
    {
        sb.Append(bos);
        foreach (var m in messages)
        {
            switch (m.Role)
            {
                case "system":
                    sb.Append("[SYSTEM_PROMPT]").Append(space).Append(m.Content).Append("[/SYSTEM_PROMPT]");
                    break;
                case "user": sb.Append("[INST]").Append(space).Append(m.Content).Append("[/INST]"); break;
                default: sb.Append(space).Append(m.Content).Append(eos); break;
            }
        }
    }

    // Gemma: gemma-2's template refuses a system message; like Gemma 3's template (and llama.cpp) the system text
    // opens the first user turn, followed by a blank line. Turn contents are trimmed, the system text is not.
    void RenderGemma(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        int start = RequireAlternation(messages);
        sb.Append(bos);
        for (int i = start; i < messages.Count; i++)
        {
            var m = messages[i];
            sb.Append("<start_of_turn>").Append(m.Role == "assistant" ? "model" : m.Role).Append('\n');
            if (i == start && start == 1) sb.Append(messages[0].Content).Append("\n\n");
            sb.Append(PyStrip(m.Content)).Append("<end_of_turn>\n");
        }
        if (addGenerationPrompt) sb.Append("<start_of_turn>model\n");
    }

    // Phi-3: without a generation prompt the template closes the text with EOS.
    void RenderPhi3(StringBuilder sb, IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        foreach (var m in messages)
            sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|end|>\n");
        sb.Append(addGenerationPrompt ? "<|assistant|>\n" : eos);
    }

    static void ValidateMessages(IReadOnlyList<(string Role, string Content)> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0) throw new ArgumentException("The conversation has no messages.", nameof(messages));
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ArgumentException(
                    $"Message {i} has role \"{m.Role}\"; only \"system\", \"user\" and \"assistant\" are supported.",
                    nameof(messages));
            if (m.Content is null)
                throw new ArgumentException($"Message {i} ({m.Role}) has no content.", nameof(messages));
        }
    }

    /// <summary>
    /// Enforces what these templates raise_exception on: one optional leading system message, then turns alternating
    /// user/assistant from a user turn. Returns the index of the first non-system message.
    /// </summary>
    int RequireAlternation(IReadOnlyList<(string Role, string Content)> messages)
    {
        int start = messages[0].Role == "system" ? 1 : 0;
        if (start == messages.Count)
            throw new ArgumentException($"The {Name} chat format needs a user message; " +
                "the conversation has only a system message.", nameof(messages));
        for (int i = start; i < messages.Count; i++)
        {
            string expected = (i - start) % 2 == 0 ? "user" : "assistant";
            if (messages[i].Role != expected)
                throw new ArgumentException(
                    $"The {Name} chat format needs an optional system message first, then turns alternating " +
                    $"user/assistant starting with user; message {i} is \"{messages[i].Role}\" where \"{expected}\" " +
                    "was expected.", nameof(messages));
        }
        return start;
    }

    static Family? Detect(string text)
    {
        if (Names.TryGetValue(text.Trim(), out var named)) return named;
        bool Has(string s) => text.Contains(s, StringComparison.Ordinal);
        if (Has("<|im_start|>"))
            // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) reuse ChatML's markers in formats of their own.
            return Has("<|im_sep|>") || Has("<end_of_utterance>") ? null : Family.ChatML;
        if (Has("[INST]"))
        {
            if (Has("[SYSTEM_PROMPT]"))
                return Has("[SYSTEM_PROMPT] ") || Has("[INST] ") ? Family.MistralV7 : Family.MistralV7Tekken;
            if (Has("<<SYS>>")) return Family.Llama2;
            // v1 spaces around [INST]/[/INST] (older v0.1 templates did too, and Mistral names v1 the right
            // format for them).
            if (Has(" [INST]") || Has(" [/INST]")) return Family.MistralV1;
            return Has("\"[INST]\"") || Has("'[INST]'") ? Family.MistralV3Tekken : Family.MistralV3;
        }
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>")) return Family.Llama3;
        if (Has("<start_of_turn>")) return Family.Gemma;
        if (Has("<|assistant|>") && Has("<|end|>")) return Family.Phi3;
        if (Has("<|user|>") && Has("<|assistant|>") && (Has("eos_token") || Has("</s>"))) return Family.Zephyr;
        return null;
    }

    static string? DefaultSystemPrompt(Family family, string templateText) =>
        family == Family.ChatML && ChatMLDefaultSystemTurn().Match(templateText) is { Success: true } m
            ? m.Groups[1].Value : null;

    // A literal system turn in the template ('<|im_start|>system\nYou are ...<|im_end|>'), as Qwen's write when the
    // conversation has no system message. The \n may be a Jinja escape or a newline; the text may not hold quotes,
    // braces or escapes, so a turn built from messages[0]['content'] does not match.
    [GeneratedRegex("""<\|im_start\|>system(?:\\n|\n)([^'"{}<>\\]+)<\|im_end\|>""")]
    private static partial Regex ChatMLDefaultSystemTurn();

    // Python's str.strip(), which Jinja's trim and the templates' .strip() call: .NET's white space plus \x1c-\x1f.
    static string PyStrip(string s)
    {
        static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';
        int a = 0, b = s.Length;
        while (a < b && IsSpace(s[a])) a++;
        while (b > a && IsSpace(s[b - 1])) b--;
        return s[a..b];
    }

    static string Abbreviate(string s) => s.Length <= 60 ? s : s[..60] + "…";
}
