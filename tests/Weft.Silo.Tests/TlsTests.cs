using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Weft.Abstractions;
using Weft.Client;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Tokenization;

namespace Weft.Silo.Tests;

/// <summary>Mutual TLS on the gateway and between silos: a silo started with <c>--tls-certificate</c> (a self-signed
/// cluster certificate made here) and Orleans clients with the same certificate, another one, and none; two silos
/// with certificates of their own issued by a CA made here (<c>--tls-ca</c>).</summary>
public sealed class TlsTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    const string Password = "cluster-secret";

    readonly string _dir = Directory.CreateTempSubdirectory("weft-tls-").FullName;
    readonly List<IHost> _clients = [];
    readonly List<WebApplication> _silos = [];

    [Fact]
    public async Task Only_a_client_with_the_cluster_certificate_reaches_the_gateway()
    {
        using var cluster = SelfSigned("weft-cluster");
        using var stranger = SelfSigned("stranger");
        string pfx = Path.Combine(_dir, "cluster.pfx");
        await File.WriteAllBytesAsync(pfx, cluster.Export(X509ContentType.Pkcs12, Password), Ct);
        string model = Path.Combine(_dir, "model.gguf");
        DemoModel.Write(model, SiloFixture.Shape,
            DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));
        int gateway = TestHosts.FreePort();
        await StartSilo(model, TestHosts.FreePort(), gateway, ["--tls-certificate", pfx, "--tls-password", Password]);

        var member = await StartClient(gateway, c => c.UseWeftTls(WithKey(cluster)));
        var history = await member.Services.GetRequiredService<IClusterClient>()
            .GetGrain<IConversationGrain>("tls").GetHistoryAsync();
        Assert.Empty(history.Messages);

        // A refused peer is dropped during the handshake; Orleans' client would retry it for minutes before giving up,
        // so the gateway is asked directly.
        Assert.True(await Accepts(gateway, cluster, WithKey(cluster)));
        Assert.False(await Accepts(gateway, cluster, WithKey(stranger)));
        Assert.False(await Accepts(gateway, cluster, null));
    }

    [Fact]
    public async Task Two_silos_with_certificates_of_the_cluster_ca_form_one_cluster_that_refuses_another_ca()
    {
        using var ca = Authority("weft-ca");
        using var otherCa = Authority("other-ca");
        using var a = Issue(ca, "silo-a");
        using var b = Issue(ca, "silo-b");
        using var member = Issue(ca, "another-member");
        using var stranger = Issue(otherCa, "stranger");
        string caPath = Path.Combine(_dir, "ca.crt");
        await File.WriteAllBytesAsync(caPath, ca.Export(X509ContentType.Cert), Ct);
        string model = Path.Combine(_dir, "model.gguf");
        DemoModel.Write(model, SiloFixture.Shape,
            DemoVocabulary.SentencePiece(SiloFixture.Shape.VocabSize, ChatTemplates.TinyLlama));

        async Task<WebApplication> Start(X509Certificate2 certificate, int siloPort, string[] options)
        {
            string pfx = Path.Combine(_dir, $"{certificate.GetNameInfo(X509NameType.SimpleName, false)}.pfx");
            await File.WriteAllBytesAsync(pfx, certificate.Export(X509ContentType.Pkcs12, Password), Ct);
            return await StartSilo(model, siloPort, 0,
                ["--tls-certificate", pfx, "--tls-password", Password, "--tls-ca", caPath, .. options]);
        }
        int primary = TestHosts.FreePort();
        var first = await Start(a, primary, []);
        // the second joins through the first (its membership lives there): every call between them is over TLS,
        // each side presenting a certificate the other has never seen, issued by the CA both trust
        var second = await Start(b, TestHosts.FreePort(), ["--primary-silo-port", primary.ToString()]);
        await Http.WaitUntil(() => Task.FromResult(Active(first) == 2 && Active(second) == 2), "both silos active",
            Ct);

        Assert.True(await Accepts(primary, a, WithKey(member)));
        Assert.False(await Accepts(primary, a, WithKey(stranger)));
        Assert.False(await Accepts(primary, a, null));
    }

    [Fact]
    public async Task A_cluster_on_a_network_address_without_tls_refuses_to_start_unless_insecure()
    {
        string[] cluster = ["--redis", "127.0.0.1:1", "--address", "10.0.0.5"];
        var e = Assert.Throws<SiloOptionsException>(() => WeftSilo.Build(cluster));
        Assert.Equal("the silo and gateway ports would be open on 10.0.0.5 without TLS: give --tls-certificate, " +
            "or --insecure to allow it", e.Message);
        await using var insecure = WeftSilo.Build([.. cluster, "--insecure"]);
    }

    [Fact]
    public async Task A_kubernetes_silo_without_tls_refuses_to_start_unless_insecure()
    {
        // the default address is loopback, but Kubernetes hosting listens on every interface of the pod
        string[] pod = ["--kubernetes", "--redis", "127.0.0.1:1"];
        var e = Assert.Throws<SiloOptionsException>(() => WeftSilo.Build(pod));
        Assert.Equal("with kubernetes the silo and gateway ports are open on the pod's network without TLS: " +
            "give --tls-certificate, or --insecure to allow it", e.Message);
        await using var insecure = WeftSilo.Build([.. pod, "--insecure"]);
    }

    /// <summary>Whether the silo or gateway port keeps a TLS connection that presents <paramref name="certificate"/>
    /// open.</summary>
    static async Task<bool> Accepts(int port, X509Certificate2 server, X509Certificate2? certificate)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port, Ct);
        await using var tls = new SslStream(tcp.GetStream());
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "weft",
                ClientCertificates = certificate is null ? null : [certificate],
                // the port presents its silo's certificate
                RemoteCertificateValidationCallback = (_, remote, _, _) =>
                    remote is not null && remote.GetRawCertData().AsSpan().SequenceEqual(server.RawData),
            }, Ct);
            // TLS 1.3 judges the client's certificate after the handshake: a refusal then closes the connection, and
            // an accepted client is left waiting for the silo to speak first, which it never does
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            wait.CancelAfter(TimeSpan.FromSeconds(2));
            return await tls.ReadAsync(new byte[1], wait.Token) > 0;
        }
        catch (OperationCanceledException) when (!Ct.IsCancellationRequested)
        {
            return true;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return false;
        }
    }

    async Task<IHost> StartClient(int gateway, Action<IClientBuilder> tls)
    {
        var host = new HostBuilder().UseOrleansClient(c =>
        {
            c.UseLocalhostClustering(gateway, WeftDefaults.ServiceId, WeftDefaults.ClusterId);
            tls(c);
        }).Build();
        _clients.Add(host);
        await host.StartAsync(Ct);
        return host;
    }

    async Task<WebApplication> StartSilo(string model, int siloPort, int gateway, string[] options)
    {
        var silo = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "64", "--urls", "http://127.0.0.1:0",
            "--silo-port", siloPort.ToString(), "--gateway-port", gateway.ToString(), .. options]);
        _silos.Add(silo);
        await silo.StartAsync(Ct);
        return silo;
    }

    static int Active(WebApplication silo) => silo.Services.GetRequiredService<IClusterMembershipService>()
        .CurrentSnapshot.Members.Values.Count(m => m.Status == SiloStatus.Active);

    static X509Certificate2 Authority(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    /// <summary>A certificate with its private key, issued by <paramref name="ca"/>.</summary>
    static X509Certificate2 Issue(X509Certificate2 ca, string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var issued = request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(12),
            RandomNumberGenerator.GetBytes(16));
        return issued.CopyWithPrivateKey(key);
    }

    static X509Certificate2 SelfSigned(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    /// <summary>The certificate through a PKCS#12 round trip, as a client loads its own from a file.</summary>
    static X509Certificate2 WithKey(X509Certificate2 certificate) =>
        X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12, Password), Password);


    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            try
            {
                await client.StopAsync(CancellationToken.None);
            }
            catch (Exception e) when (e is OrleansException or InvalidOperationException)
            {
                // a refused client never connected
            }
            client.Dispose();
        }
        foreach (var silo in _silos)
        {
            await silo.StopAsync(CancellationToken.None);
            await silo.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }
}
