using System.Globalization;
using System.Text;
using Weft.GpuRuntime.Engine;

namespace Weft.Silo;

/// <summary>A user's mistake in the options: the silo prints the message on one line and exits with code 2.</summary>
public sealed class SiloOptionsException(string message) : Exception(message);

/// <summary>
/// The silo's command line: each flag sets one configuration key, so the command line, the environment (WEFT_ prefix,
/// e.g. WEFT_Weft__Engine__MaxNumSeqs) and appsettings.json all say the same things. Unlike the default command-line
/// configuration provider, unknown flags and malformed values are errors rather than silently ignored keys.
/// </summary>
public static class CommandLine
{
    enum Kind { Text, Integer, Number, Engine, Switch }

    sealed record Flag(string Name, string Key, Kind Kind, string Help);

    static readonly Flag[] Flags =
    [
        new("--model", "Weft:Model", Kind.Text,
            "GGUF file to serve (default: the demo model, generated into the cache on first use)"),
        new("--served-model-name", "Weft:ServedModelName", Kind.Text,
            "the name clients send in \"model\" (default: the file name)"),
        new("--chat-template", "Weft:ChatTemplate", Kind.Text,
            "a Jinja chat template file or text, rendered instead of the model's own, or a built-in format " +
            "(chatml, llama2, llama3, zephyr, mistral-v1/v3/v7, gemma, phi3)"),
        new("--engine", "Weft:Engine:Engine", Kind.Engine, "auto, cpu, cuda or ilgpu-cpu (default: auto)"),
        new("--devices", "Weft:Devices", Kind.Integer,
            "devices to serve on, one engine each (default: every CUDA device, else 1)"),
        new("--max-num-seqs", "Weft:Engine:MaxNumSeqs", Kind.Integer, "most sequences in one step (default: 128)"),
        new("--max-num-batched-tokens", "Weft:Engine:MaxNumBatchedTokens", Kind.Integer,
            "most tokens in one step (default: 1024)"),
        new("--max-model-len", "Weft:Engine:MaxModelLen", Kind.Integer,
            "longest sequence, prompt and reply (default: the model's context)"),
        new("--kv-cache-memory", "Weft:Engine:KvCacheMemoryMiB", Kind.Integer,
            "KV cache budget in MiB (default: 1024)"),
        new("--kv-blocks", "Weft:Engine:KvBlocks", Kind.Integer,
            "KV cache size in blocks, overriding the memory budget"),
        new("--gpu-memory-fraction", "Weft:Engine:GpuMemoryFraction", Kind.Number,
            "CUDA: fraction of free GPU memory for the KV cache (default: 0.8)"),
        new("--max-waiting", "Weft:MaxWaiting", Kind.Integer,
            "requests waiting for a slot beyond which new ones get HTTP 429 (default: 1024)"),
        new("--mmap", "Weft:Mmap", Kind.Switch,
            "map the model file instead of reading it into memory (the file must then not be overwritten)"),
        new("--summary-interval", "Weft:SummaryIntervalSeconds", Kind.Integer,
            "seconds between the log's summary lines (throughput, running, waiting, KV cache), written while there " +
            "is work; 0: none (default: 10)"),
        new("--conversation-ttl", "Weft:ConversationTtlSeconds", Kind.Integer,
            "seconds without a turn after which a conversation is removed; 0: never (default: 3600)"),
        new("--truncation-reply-tokens", "Weft:TruncationReplyTokens", Kind.Integer,
            "tokens a conversation cut to fit the context keeps free for a reply without max_tokens, at most a " +
            "quarter of the context (default: 1024)"),
        new("--response-ttl", "Weft:ResponseTtlSeconds", Kind.Integer,
            "seconds after which a stored response (/v1/responses) is removed; 0: never (default: 2592000, 30 days)"),
        new("--logprobs-mode", "Weft:LogprobsMode", Kind.Text,
            "what logprobs report: raw_logprobs (the model's) or processed_logprobs (after logit_bias, penalties, " +
            "temperature, top-k/min-p/top-p, as the token is drawn) (default: raw_logprobs)"),
        new("--tenant-max-requests", "Weft:TenantMaxRequests", Kind.Integer,
            "requests one tenant may have in progress per silo; HTTP 429 beyond (default: no limit)"),
        new("--tenant-max-queued-tokens", "Weft:TenantMaxQueuedTokens", Kind.Integer,
            "prompt tokens of one tenant's requests in progress per silo; HTTP 429 beyond (default: no limit)"),
        new("--urls", "Silo:Urls", Kind.Text,
            "where the HTTP API listens, ';'-separated (default: http://127.0.0.1:8000)"),
        new("--api-key", "Silo:ApiKey", Kind.Text,
            "require \"Authorization: Bearer KEY\" on /v1, /tokenize and /detokenize (tenant \"default\")"),
        new("--api-keys", "Silo:ApiKeysFile", Kind.Text,
            "file of API keys, one \"TENANT KEY\" a line: each key's requests and conversations are its tenant's"),
        new("--max-request-bytes", "Silo:MaxRequestBytes", Kind.Integer,
            "largest request body, in bytes; HTTP 413 beyond (default: 8388608)"),
        new("--max-tokenize-bytes", "Silo:MaxTokenizeBytes", Kind.Integer,
            "largest /tokenize and /detokenize body, in bytes (default: 1048576)"),
        new("--max-tokenize-tokens", "Silo:MaxTokenizeTokens", Kind.Integer,
            "most tokens /tokenize returns (default: the context length)"),
        new("--redis", "Silo:Redis", Kind.Text,
            "HOST:PORT of Redis for clustering and conversation storage " +
            "(default: localhost clustering, memory storage)"),
        new("--silo-port", "Silo:SiloPort", Kind.Integer, "silo-to-silo port (default: 11111)"),
        new("--gateway-port", "Silo:GatewayPort", Kind.Integer, "port for Weft clients; 0 for none (default: 30000)"),
        new("--primary-silo-port", "Silo:PrimarySiloPort", Kind.Integer,
            "localhost clustering: silo port of the primary silo to join"),
        new("--postgres", "Silo:Postgres", Kind.Text,
            "Npgsql connection string of PostgreSQL for clustering and conversation storage (recommended; " +
            "the silo creates its tables)"),
        new("--cluster-id", "Silo:ClusterId", Kind.Text,
            "the cluster this silo joins in the store; silos of one service in different clusters share its " +
            "conversations (default: weft)"),
        new("--address", "Silo:Address", Kind.Text,
            "IP address the silo and gateway ports bind to and other silos reach this one at (default: 127.0.0.1)"),
        new("--tls-certificate", "Silo:TlsCertificate", Kind.Text,
            "PKCS#12 (.pfx) certificate with its key: mutual TLS on the silo and gateway ports"),
        new("--tls-password", "Silo:TlsPassword", Kind.Text, "password of the --tls-certificate file"),
        new("--tls-ca", "Silo:TlsCa", Kind.Text,
            "certificate of the CA whose certificates silos and clients accept (default: only the same certificate)"),
        new("--insecure", "Silo:Insecure", Kind.Switch,
            "allow a redis or postgres cluster on a non-loopback address without TLS"),
        new("--failure-detection", "Silo:FailureDetectionSeconds", Kind.Number,
            "seconds within which a silo that stopped answering is declared dead (default: 3)"),
        new("--kubernetes", "Silo:Kubernetes", Kind.Switch,
            "run as a Kubernetes pod: silo name and address from POD_NAME and POD_IP, dead pods leave at once"),
        new("--orleans-dashboard", "Silo:OrleansDashboard", Kind.Switch,
            "serve the Orleans Dashboard at /orleans-dashboard on the HTTP port (with API keys: --api-key's key, " +
            "as a Bearer token or a Basic password); give it to every silo of the cluster"),
    ];

    public static bool IsHelp(string[] args) => args.Any(a => a is "--help" or "-h" or "-?");

    public static string Help()
    {
        var sb = new StringBuilder(
            "usage: Weft.Silo [options]\n\nServes a GGUF model over an OpenAI-compatible HTTP API.\n\noptions:\n");
        int width = Flags.Max(f => f.Name.Length) + 2;
        foreach (var f in Flags) sb.Append("  ").Append(f.Name.PadRight(width)).Append(f.Help).Append('\n');
        sb.Append("  ").Append("--help".PadRight(width)).Append("show this help\n");
        sb.Append("\nEvery option can also be set in appsettings.json or the environment, e.g. WEFT_Weft__Model, " +
            "WEFT_Silo__Redis.\n");
        return sb.ToString();
    }

    /// <summary>The configuration keys and values the arguments set.</summary>
    /// <exception cref="SiloOptionsException">An unknown flag, a flag without its value, or a malformed
    /// value.</exception>
    public static Dictionary<string, string?> Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            int eq = arg.IndexOf('=');
            string name = eq > 0 ? arg[..eq] : arg;
            var flag = Flags.FirstOrDefault(f => f.Name == name)
                ?? throw new SiloOptionsException(arg.StartsWith('-')
                    ? $"unknown option '{name}' (see --help)" : $"unexpected argument '{arg}' (see --help)");
            string value = eq > 0 ? arg[(eq + 1)..]
                : flag.Kind == Kind.Switch ? "true"
                : i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i]
                : throw new SiloOptionsException($"{name} needs a value");
            values[flag.Key] = Check(flag, value);
        }
        return values;
    }

    static string Check(Flag flag, string value) => flag.Kind switch
    {
        Kind.Integer when !int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _) =>
            throw new SiloOptionsException($"{flag.Name}: '{value}' is not an integer"),
        Kind.Number when !double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _) =>
            throw new SiloOptionsException($"{flag.Name}: '{value}' is not a number"),
        Kind.Engine => EngineName(flag, value),
        Kind.Switch when !bool.TryParse(value, out _) =>
            throw new SiloOptionsException($"{flag.Name}: '{value}' is not true or false"),
        _ => value,
    };

    /// <summary>The configuration binder knows the enum's member names, not the command-line spellings.</summary>
    static string EngineName(Flag flag, string value)
    {
        try
        {
            return EngineKinds.Parse(value).ToString();
        }
        catch (ArgumentException e)
        {
            throw new SiloOptionsException($"{flag.Name}: {e.Message}");
        }
    }
}
