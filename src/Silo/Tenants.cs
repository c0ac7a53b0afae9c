using System.Security.Cryptography;
using System.Text;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// The API keys and the tenant each belongs to: --api-key (tenant "default"), Silo:ApiKeys (tenant -> key) and the file
/// of --api-keys (one "TENANT KEY" a line; '#' starts a comment line). A tenant may have several keys; a key names one
/// tenant. Keys are looked up by their SHA-256, so the time a lookup takes tells nothing about how much of a guessed
/// key was right.
/// </summary>
sealed class Tenants
{
    const int MaxTenantName = 64;
    readonly Dictionary<string, string> _byKeyHash;

    Tenants(Dictionary<string, string> byKeyHash) => _byKeyHash = byKeyHash;

    /// <summary>Whether requests need a key; without any, every request is tenant "default".</summary>
    public bool RequireKey => _byKeyHash.Count > 0;

    public int Count => _byKeyHash.Values.Distinct(StringComparer.Ordinal).Count();

    public bool Has(string tenant) => _byKeyHash.ContainsValue(tenant);

    /// <exception cref="SiloOptionsException">A key file that cannot be read, a malformed line, a bad tenant name or a
    /// key given twice.</exception>
    public static Tenants Load(SiloOptions options)
    {
        var byKeyHash = new Dictionary<string, string>(StringComparer.Ordinal);
        void Add(string tenant, string key, string where)
        {
            if (!IsTenantName(tenant))
                throw new SiloOptionsException($"{where}: tenant '{tenant}' must be 1 to {MaxTenantName} letters, " +
                    "digits, '-', '_' or '.'");
            if (key.Length == 0 || key.Any(char.IsWhiteSpace))
                throw new SiloOptionsException($"{where}: the key of tenant '{tenant}' is empty or holds whitespace");
            if (!byKeyHash.TryAdd(Hash(key), tenant))
                throw new SiloOptionsException($"{where}: the key of tenant '{tenant}' is given twice; a key names " +
                    "one tenant");
        }

        if (options.ApiKey is { } single) Add(WeftDefaults.Tenant, single, "api-key");
        foreach (var (tenant, key) in options.ApiKeys) Add(tenant, key, $"Silo:ApiKeys:{tenant}");
        if (options.ApiKeysFile is { } file)
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException
                or NotSupportedException)
            {
                throw new SiloOptionsException($"api-keys: cannot read {file}: {e.Message}");
            }
            int before = byKeyHash.Count;
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].Trim();
                if (line.Length == 0 || line.StartsWith('#')) continue;
                var fields = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length != 2)
                    throw new SiloOptionsException($"api-keys {file}:{i + 1}: expected 'TENANT KEY', got " +
                        $"{fields.Length} fields");
                Add(fields[0], fields[1], $"api-keys {file}:{i + 1}");
            }
            if (byKeyHash.Count == before) throw new SiloOptionsException($"api-keys: {file} holds no keys");
        }
        return new Tenants(byKeyHash);
    }

    /// <summary>The tenant whose key an "Authorization: Bearer KEY" header carries, or null.</summary>
    public string? Resolve(string authorization) =>
        authorization.StartsWith("Bearer ", StringComparison.Ordinal)
        && _byKeyHash.TryGetValue(Hash(authorization["Bearer ".Length..]), out var tenant) ? tenant : null;

    static string Hash(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>Tenant names go into grain keys (before a '/') and metric labels: a short, plain alphabet.</summary>
    static bool IsTenantName(string name) => name.Length is > 0 and <= MaxTenantName
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
