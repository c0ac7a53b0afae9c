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

/// <summary>Mutual TLS on the gateway: a silo started with <c>--tls-certificate</c> (a self-signed cluster certificate
/// made here) and Orleans clients with the same certificate, another one, and none.</summary>
public sealed class TlsTests : IAsyncDisposable
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    const string Password = "cluster-secret";

    readonly string _dir = Directory.CreateTempSubdirectory("weft-tls-").FullName;
    readonly List<IHost> _clients = [];
    WebApplication? _silo;

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
        _silo = WeftSilo.Build([
            "--model", model, "--engine", "cpu", "--kv-blocks", "64", "--urls", "http://127.0.0.1:0",
            "--silo-port", TestHosts.FreePort().ToString(), "--gateway-port", gateway.ToString(),
            "--tls-certificate", pfx, "--tls-password", Password]);
        await _silo.StartAsync(Ct);

        var member = await StartClient(gateway, c => c.UseWeftTls(WithKey(cluster)));
        var history = await member.Services.GetRequiredService<IClusterClient>()
            .GetGrain<IConversationGrain>("tls").GetHistoryAsync();
        Assert.Empty(history.Messages);

        // A refused peer is dropped during the handshake; Orleans' client would retry it for minutes before giving up,
        // so the gateway is asked directly.
        Assert.True(await GatewayAccepts(gateway, cluster, WithKey(cluster)));
        Assert.False(await GatewayAccepts(gateway, cluster, WithKey(stranger)));
        Assert.False(await GatewayAccepts(gateway, cluster, null));
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

    /// <summary>Whether the gateway keeps a TLS connection that presents <paramref name="certificate"/> open.</summary>
    static async Task<bool> GatewayAccepts(int port, X509Certificate2 server, X509Certificate2? certificate)
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
                // the gateway is the cluster: it presents the cluster certificate
                RemoteCertificateValidationCallback = (_, remote, _, _) =>
                    remote is not null && remote.GetRawCertData().AsSpan().SequenceEqual(server.RawData),
            }, Ct);
            // TLS 1.3 judges the client's certificate after the handshake: a refusal then closes the connection, and
            // an accepted client is left waiting for the gateway to speak first, which it never does
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
        if (_silo is not null)
        {
            await _silo.StopAsync(CancellationToken.None);
            await _silo.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }
}
