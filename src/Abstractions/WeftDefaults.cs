namespace Weft.Abstractions;

/// <summary>What a silo and a client agree on unless configured otherwise.</summary>
public static class WeftDefaults
{
    public const string ClusterId = "weft";
    public const string ServiceId = "weft";
    public const int SiloPort = 11111;
    public const int GatewayPort = 30000;
    /// <summary>The tenant of a silo without API keys or with a single --api-key, and of the SDK's
    /// conversations.</summary>
    public const string Tenant = "default";
}
