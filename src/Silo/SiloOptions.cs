using System.Net;
using Weft.Abstractions;
namespace Weft.Silo;

/// <summary>
/// How the silo listens and joins its cluster; bound from the "Silo" configuration section (what it serves is
/// <see cref="Weft.Grains.ModelHostOptions"/>, section "Weft").
/// </summary>
public sealed record SiloOptions
{
    public const string Section = "Silo";

    /// <summary>Where the HTTP API listens; several URLs are separated by ';'.</summary>
    public string Urls { get; init; } = "http://127.0.0.1:8000";
    /// <summary>When set, every /v1 call and /tokenize, /detokenize need "Authorization: Bearer {key}"; the key's
    /// tenant is "default".</summary>
    public string? ApiKey { get; init; }
    /// <summary>API keys of tenants, tenant -> key. With any key (here, <see cref="ApiKey"/> or in
    /// <see cref="ApiKeysFile"/>), every /v1 call and /tokenize, /detokenize need one of them.</summary>
    public Dictionary<string, string> ApiKeys { get; init; } = [];
    /// <summary>A file of API keys: one "TENANT KEY" a line; blank lines and lines starting with '#' are
    /// skipped.</summary>
    public string? ApiKeysFile { get; init; }
    /// <summary>Largest request body of the generation routes (and every other but /tokenize, /detokenize), in
    /// bytes: 8 MiB holds a 128k-token context written out as text or as token ids several times over.</summary>
    public long MaxRequestBytes { get; init; } = 8 << 20;
    /// <summary>Largest request body of /tokenize and /detokenize, in bytes.</summary>
    public long MaxTokenizeBytes { get; init; } = 1 << 20;
    /// <summary>Most tokens /tokenize returns; null: the served context length.</summary>
    public int? MaxTokenizeTokens { get; init; }
    /// <summary>HOST:PORT (or any StackExchange.Redis configuration string) of a Redis for clustering and grain
    /// storage; null: one silo on localhost with memory storage.</summary>
    public string? Redis { get; init; }
    public int SiloPort { get; init; } = 11111;
    /// <summary>The port clients (the Weft client SDK) connect to; 0 runs no gateway.</summary>
    public int GatewayPort { get; init; } = 30000;
    /// <summary>Localhost clustering only: the silo port of the primary silo this one joins; null makes this silo the
    /// primary.</summary>
    public int? PrimarySiloPort { get; init; }
    public string ClusterId { get; init; } = WeftDefaults.ClusterId;
    public string ServiceId { get; init; } = WeftDefaults.ServiceId;
    /// <summary>Npgsql connection string of a PostgreSQL for clustering and grain storage (the recommended store; the
    /// silo creates its schema); excludes <see cref="Redis"/>.</summary>
    public string? Postgres { get; init; }
    /// <summary>The IP address the silo and gateway ports bind to, and that other silos and clients reach this silo at
    /// (redis or postgres clustering; localhost clustering is loopback only).</summary>
    public string Address { get; init; } = "127.0.0.1";
    /// <summary>A PKCS#12 file (certificate and private key): silo-to-silo and client-to-gateway connections then use
    /// mutual TLS, accepting the same certificate or, with <see cref="TlsCa"/>, one that CA issued.</summary>
    public string? TlsCertificate { get; init; }
    public string? TlsPassword { get; init; }
    public string? TlsCa { get; init; }
    /// <summary>Lets a cluster listen on a non-loopback address (or, with <see cref="Kubernetes"/>, the pod's network)
    /// without TLS.</summary>
    public bool Insecure { get; init; }
    /// <summary>Seconds within which a silo that stopped answering is declared dead and its conversations move to the
    /// survivors (redis or postgres clusters); Orleans' defaults take 6-8 s after a kill -9.</summary>
    public double FailureDetectionSeconds { get; init; } = 3;
    /// <summary>Runs in a Kubernetes pod (Microsoft.Orleans.Hosting.Kubernetes): the pod's name and IP come from
    /// POD_NAME and POD_IP, and silos whose pods are gone are declared dead at once.</summary>
    public bool Kubernetes { get; init; }
    /// <summary>Serves the Orleans Dashboard under <see cref="OrleansDashboardEndpoint.Path"/> on the HTTP API's
    /// port; with API keys, only tenant "default"'s key opens it (it shows every tenant's grains).</summary>
    public bool OrleansDashboard { get; init; }

    bool Clustered => Redis is not null || Postgres is not null;

    public IEnumerable<string> Validate()
    {
        var urls = Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (urls.Length == 0) yield return "urls must name at least one URL";
        foreach (var url in urls)
            if (!IsListenUrl(url))
                yield return $"url '{url}' is not a listen address such as http://127.0.0.1:8000 " +
                    "(host and port; * or + for every interface)";
        if (ApiKey is { Length: 0 }) yield return "api-key must not be empty";
        if (ApiKeysFile is { } file && string.IsNullOrWhiteSpace(file)) yield return "api-keys must name a file";
        if (MaxRequestBytes < 1) yield return "max-request-bytes must be positive";
        if (MaxTokenizeBytes < 1) yield return "max-tokenize-bytes must be positive";
        if (MaxTokenizeTokens is < 1) yield return "max-tokenize-tokens must be positive";
        if (Redis is { } redis && string.IsNullOrWhiteSpace(redis)) yield return "redis must be HOST:PORT";
        if (SiloPort is < 1 or > 65535) yield return "silo-port must be between 1 and 65535";
        if (GatewayPort is < 0 or > 65535) yield return "gateway-port must be between 0 (no gateway) and 65535";
        if (GatewayPort == SiloPort) yield return "gateway-port must differ from silo-port";
        if (PrimarySiloPort is < 1 or > 65535) yield return "primary-silo-port must be between 1 and 65535";
        if (Postgres is { } postgres && string.IsNullOrWhiteSpace(postgres))
            yield return "postgres must be a connection string such as Host=db;Username=weft;Database=weft";
        if (Postgres is not null && Redis is not null) yield return "postgres and redis exclude each other: choose one";
        if (PrimarySiloPort is not null && (Redis ?? Postgres) is not null)
            yield return "primary-silo-port is for localhost clustering; " +
                "with redis or postgres the silos find each other there";
        if (!IPAddress.TryParse(Address, out var address))
            yield return $"address '{Address}' is not an IP address such as 10.0.0.5";
        else if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
            yield return "address must be one other silos can reach this silo at, not a wildcard";
        else if (!IPAddress.IsLoopback(address) && !Clustered)
            yield return "address is for redis or postgres clusters; localhost clustering stays on loopback";
        else if (!IPAddress.IsLoopback(address) && TlsCertificate is null && !Insecure)
            yield return $"the silo and gateway ports would be open on {Address} without TLS: " +
                "give --tls-certificate, or --insecure to allow it";
        // Kubernetes hosting binds the ports on every interface of the pod, whatever the address says
        else if (Kubernetes && Clustered && TlsCertificate is null && !Insecure)
            yield return "with kubernetes the silo and gateway ports are open on the pod's network without TLS: " +
                "give --tls-certificate, or --insecure to allow it";
        if (TlsCertificate is null && (TlsPassword ?? TlsCa) is not null)
            yield return "tls-password and tls-ca need tls-certificate";
        // below a second, one missed probe on a busy machine (a GC pause, a long tick) declares a live silo dead
        if (FailureDetectionSeconds is < 1 or > 120 || double.IsNaN(FailureDetectionSeconds))
            yield return "failure-detection must be between 1 and 120 seconds";
        if (Kubernetes && !Clustered)
            yield return "kubernetes needs postgres or redis for membership and conversations";
        if (string.IsNullOrWhiteSpace(ClusterId) || string.IsNullOrWhiteSpace(ServiceId))
            yield return "cluster and service ids must not be empty";
    }

    /// <summary>What Kestrel binds to: http(s)://host:port, where Kestrel also takes * and + as the host. Checked here
    /// because Kestrel falls back to listening on every interface, port 80, when it cannot read a URL.</summary>
    static bool IsListenUrl(string url)
    {
        int scheme = url.IndexOf("://", StringComparison.Ordinal);
        if (scheme < 0 || url[..scheme].ToLowerInvariant() is not ("http" or "https")) return false;
        string rest = url[(scheme + 3)..];
        if (rest.StartsWith('*') || rest.StartsWith('+')) rest = "localhost" + rest[1..];
        return Uri.TryCreate($"{url[..scheme]}://{rest}", UriKind.Absolute, out var uri) && uri.AbsolutePath == "/"
            && uri.Query.Length == 0
            && rest.Contains(':') && !string.IsNullOrEmpty(uri.Host);
    }
}
