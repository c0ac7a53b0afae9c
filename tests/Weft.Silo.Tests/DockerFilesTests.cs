using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Weft.Abstractions;

namespace Weft.Silo.Tests;

/// <summary>
/// docker/: no Docker engine or Kubernetes API runs here, so the files are checked as far as they can be without one:
/// the YAML parses (python3's yaml) and says what the silo needs, the silo accepts the command lines they give it,
/// and the certificates docker/make-certs.sh makes are ones the silo's mutual TLS accepts.
/// </summary>
public sealed class DockerFilesTests
{
    internal static readonly string Repo = FindRepo();
    static string Docker => Path.Combine(Repo, "docker");

    [Fact]
    public void The_dockerfile_publishes_onto_the_runtime_image_and_runs_as_non_root_with_a_health_check()
    {
        string[] lines = File.ReadAllLines(Path.Combine(Docker, "Dockerfile"));
        var from = lines.Where(l => l.StartsWith("FROM ", StringComparison.Ordinal)).ToList();
        Assert.Equal(["FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build", "FROM mcr.microsoft.com/dotnet/aspnet:10.0"],
            from);
        Assert.Contains(lines, l => l.Contains("dotnet publish") && l.Contains("--no-self-contained"));
        Assert.Contains("USER $APP_UID", lines);
        Assert.Contains(lines, l => l.StartsWith("HEALTHCHECK ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("/health"));
    }

    [Fact]
    public async Task The_compose_file_runs_postgres_and_two_silos_with_tls_that_the_silo_accepts()
    {
        var compose = Yaml(Path.Combine(Docker, "docker-compose.yml"));
        var services = compose["services"]!.AsObject();
        Assert.Equal(["postgres", "silo1", "silo2"], services.Select(s => s.Key).Order());
        foreach (string name in new[] { "silo1", "silo2" })
        {
            var silo = services[name]!;
            string[] args = [.. silo["command"]!.AsArray().Select(a => (string)a!)];
            Assert.Equal("service_healthy", (string?)silo["depends_on"]!["postgres"]!["condition"]);
            // a silo's address is the one the network gives it: the other silo reaches it there
            Assert.Equal((string?)silo["networks"]!["cluster"]!["ipv4_address"],
                args[Array.IndexOf(args, "--address") + 1]);
            Assert.Contains("--tls-certificate", args);
            // what the silo makes of it: every option known and valid (TLS on a network address needs no --insecure)
            string[] local = [.. args.Select(a => a.Replace("/certs/", CertsDirectory + "/")), "--tls-password",
                File.ReadAllText(Path.Combine(CertsDirectory, "password")).Trim()];
            var options = CommandLine.Parse(local);
            Assert.Equal(args[Array.IndexOf(args, "--address") + 1], options["Silo:Address"]);
            await using var app = WeftSilo.Build(local);
        }
    }

    [Fact]
    public async Task The_kubernetes_manifest_runs_the_silos_with_orleans_kubernetes_hosting_and_the_pod_address()
    {
        var documents = Yaml(Path.Combine(Docker, "kubernetes.yaml"), all: true).AsArray();
        var deployment = documents.Single(d => (string?)d!["kind"] == "Deployment")!;
        var pod = deployment["spec"]!["template"]!;
        Assert.Equal("weft", (string?)pod["metadata"]!["labels"]!["orleans/clusterId"]);
        Assert.Equal("weft", (string?)pod["metadata"]!["labels"]!["orleans/serviceId"]);
        var container = pod["spec"]!["containers"]![0]!;
        string[] args = [.. container["args"]!.AsArray().Select(a => (string)a!)];
        Assert.Contains("--kubernetes", args);
        var env = container["env"]!.AsArray().ToDictionary(e => (string)e!["name"]!, e => e!);
        Assert.Equal("status.podIP", (string?)env["POD_IP"]["valueFrom"]!["fieldRef"]!["fieldPath"]);
        Assert.Equal("$(POD_IP)", (string?)env["WEFT_Silo__Address"]["value"]);
        Assert.Contains("POD_NAME", env.Keys);
        var role = documents.Single(d => (string?)d!["kind"] == "Role")!;
        Assert.Contains("watch", role["rules"]![0]!["verbs"]!.AsArray().Select(v => (string?)v));
        // the silo with those arguments, the environment's address and a store: it builds (Kubernetes hosting wired)
        await using var app = WeftSilo.Build([.. args.Select(a => a.Replace("/certs/", CertsDirectory + "/")),
            "--tls-password", File.ReadAllText(Path.Combine(CertsDirectory, "password")).Trim(),
            "--postgres", "Host=postgres.example;Username=weft;Database=weft", "--address", "10.1.2.3"]);
    }

    [Fact]
    public void The_certificates_the_script_makes_pass_the_silos_mutual_tls_check()
    {
        var certificate = WeftTls.Load(Path.Combine(CertsDirectory, "silo.pfx"),
            File.ReadAllText(Path.Combine(CertsDirectory, "password")).Trim());
        using var ca = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(CertsDirectory, "ca.crt"));
        Assert.True(certificate.HasPrivateKey);
        Assert.True(WeftTls.Accepts(certificate, ca, certificate));
        // a certificate the CA did not issue is refused
        using var stranger = SelfSigned();
        Assert.False(WeftTls.Accepts(certificate, ca, stranger));
    }

    static X509Certificate2 SelfSigned()
    {
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var request = new CertificateRequest("CN=stranger", key, System.Security.Cryptography.HashAlgorithmName.SHA256,
            System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    /// <summary>docker/make-certs.sh run once into a folder of the tests' own.</summary>
    static string CertsDirectory => field ??= MakeCerts();

    static string MakeCerts()
    {
        string dir = Path.Combine(Directory.CreateTempSubdirectory("weft-certs-").FullName, "certs");
        Run("bash", Path.Combine(Docker, "make-certs.sh"), dir);
        return dir;
    }

    /// <summary>The YAML file as JSON, through python3's yaml (the one YAML reader on these machines).</summary>
    static JsonNode Yaml(string path, bool all = false)
    {
        string script = all
            ? "import json,sys,yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"
            : "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
        return JsonNode.Parse(Run("python3", "-c", script, path))!;
    }

    static string Run(string file, params string[] args)
    {
        Process process;
        try
        {
            process = Process.Start(new ProcessStartInfo(file, args)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Skip($"{file} is not installed");
            throw;
        }
        using (process)
        {
            string output = process.StandardOutput.ReadToEnd();
            string errors = process.StandardError.ReadToEnd();
            process.WaitForExit();
            Assert.SkipWhen(errors.Contains("No module named 'yaml'"), "python3 has no yaml module (PyYAML)");
            Assert.True(process.ExitCode == 0, $"{file} {string.Join(' ', args)}: {errors}");
            return output;
        }
    }

    static string FindRepo()
    {
        string dir = AppContext.BaseDirectory;
        while (!Directory.Exists(Path.Combine(dir, "docker"))) dir = Path.GetDirectoryName(dir)!;
        return dir;
    }
}
