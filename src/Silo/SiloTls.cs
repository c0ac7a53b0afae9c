using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;
using Weft.Abstractions;

namespace Weft.Silo;

static class SiloTls
{
    /// <summary>Mutual TLS on the silo-to-silo and gateway connections: a peer without an accepted certificate (see
    /// <see cref="WeftTls.Accepts"/>) is refused during the handshake, before Orleans reads a byte from it.</summary>
    /// <exception cref="SiloOptionsException">A certificate file cannot be read.</exception>
    public static ISiloBuilder UseWeftTls(this ISiloBuilder builder, SiloOptions silo)
    {
        X509Certificate2 certificate;
        X509Certificate2? ca;
        try
        {
            certificate = WeftTls.Load(silo.TlsCertificate!, silo.TlsPassword);
            ca = silo.TlsCa is { } path ? X509CertificateLoader.LoadCertificateFromFile(path) : null;
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new SiloOptionsException($"tls: {e.Message}");
        }
        if (!certificate.HasPrivateKey)
            throw new SiloOptionsException($"tls-certificate {silo.TlsCertificate} has no private key");
        return builder.UseTls(certificate, o =>
        {
            o.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
            o.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
            o.RemoteCertificateValidation = (remote, _, _) => WeftTls.Accepts(certificate, ca, remote);
        });
    }
}
