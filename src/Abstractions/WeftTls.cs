using System.Security.Cryptography.X509Certificates;

namespace Weft.Abstractions;

/// <summary>
/// Which certificates the silos and clients of one cluster accept from each other (mutual TLS on the silo and gateway
/// ports). With a CA, any certificate it issued; without one, only the very certificate this side presents: a
/// self-signed cluster certificate shared by every silo and client is then the whole of the trust.
/// </summary>
public static class WeftTls
{
    /// <summary>Whether <paramref name="remote"/> belongs to the cluster. Host names are not compared: silos are
    /// addressed by IP and a cluster certificate names no host.</summary>
    public static bool Accepts(X509Certificate2 local, X509Certificate2? ca, X509Certificate2 remote)
    {
        if (ca is null) return remote.RawDataMemory.Span.SequenceEqual(local.RawDataMemory.Span);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        // a private cluster CA publishes no revocation list
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(remote);
    }

    /// <summary>The certificate with its private key from a PKCS#12 (.pfx) file.</summary>
    public static X509Certificate2 Load(string pfxPath, string? password) =>
        X509CertificateLoader.LoadPkcs12FromFile(pfxPath, password, X509KeyStorageFlags.EphemeralKeySet);
}
