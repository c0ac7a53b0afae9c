using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;
using Weft.Abstractions;

namespace Weft.Client;

public static class WeftClientTls
{
    /// <summary>
    /// Connects to the gateways over mutual TLS, as silos started with <c>--tls-certificate</c> require: this client
    /// presents <paramref name="certificate"/> (with its private key) and accepts a gateway whose certificate is the
    /// same one or, given <paramref name="ca"/>, one that CA issued.
    /// </summary>
    public static IClientBuilder UseWeftTls(this IClientBuilder client, X509Certificate2 certificate,
        X509Certificate2? ca = null) =>
        client.UseTls(certificate, o =>
        {
            o.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
            o.RemoteCertificateValidation = (remote, _, _) => WeftTls.Accepts(certificate, ca, remote);
        });
}
