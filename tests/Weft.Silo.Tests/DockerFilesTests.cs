using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Xml.Linq;
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

    /// <summary>Files in the repository root that MSBuild, the SDK, NuGet or the analyzers read when they find them
    /// there (case-insensitive, as NuGet matches nuget.config).</summary>
    static readonly HashSet<string> RootBuildInputs = new(StringComparer.OrdinalIgnoreCase)
    {
        "global.json", "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props",
        "Directory.Build.rsp", ".editorconfig", ".globalconfig", "nuget.config",
    };

    [Fact]
    public void The_dockerfile_copies_every_build_input_of_the_repository_root()
    {
        var copied = CopySources(Dockerfile()).Select(c => c.Source).ToHashSet();
        var inputs = Directory.GetFiles(Repo).Select(Path.GetFileName).OfType<string>()
            .Where(RootBuildInputs.Contains).ToList();
        // the analyzer settings are the input a build without them fails on (CA rules as errors)
        Assert.Contains(".editorconfig", inputs);
        Assert.Contains("Directory.Build.props", inputs);
        Assert.All(inputs, i => Assert.Contains(i, copied));
    }

    [Fact]
    public void The_dockerfile_restores_from_the_silos_project_files_before_it_copies_the_sources()
    {
        var lines = Dockerfile();
        var copies = CopySources(lines);
        int restore = lines.IndexOf("RUN dotnet restore src/Silo/Silo.csproj");
        int sources = copies.Single(c => c.Source == "src/").Line;
        Assert.InRange(restore, 0, sources);
        // the silo's project and those it references, transitively: restore needs each of them
        var projects = new SortedSet<string>(StringComparer.Ordinal);
        var pending = new Queue<string>(["src/Silo/Silo.csproj"]);
        while (pending.TryDequeue(out var project))
        {
            if (!projects.Add(project)) continue;
            string folder = Path.GetDirectoryName(Path.Combine(Repo, project))!;
            foreach (var reference in XDocument.Load(Path.Combine(Repo, project)).Descendants("ProjectReference"))
            {
                string referenced = Path.Combine(folder, reference.Attribute("Include")!.Value.Replace('\\', '/'));
                pending.Enqueue(Path.GetRelativePath(Repo, Path.GetFullPath(referenced)).Replace('\\', '/'));
            }
        }
        Assert.Contains("src/Scheduling/Scheduling.csproj", projects);
        var beforeRestore = copies.Where(c => c.Line < restore).Select(c => c.Source).ToHashSet();
        Assert.All(projects, p => Assert.Contains(p, beforeRestore));
        Assert.All(["global.json", "Directory.Build.props", "Directory.Packages.props"],
            f => Assert.Contains(f, beforeRestore));
    }

    [Fact]
    public void The_build_context_leaves_out_build_outputs_history_and_certificates_but_not_what_the_dockerfile_copies()
    {
        string path = Path.Combine(Repo, ".dockerignore");
        Assert.True(File.Exists(path), ".dockerignore is missing: the image would take the host's bin/ and obj/");
        var patterns = File.ReadAllLines(path).Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        Assert.All(["src/Silo/bin/Release/net10.0/Weft.Silo.dll", "src/Silo/obj/project.assets.json", ".git/HEAD",
                "tests/chat-page/node_modules/playwright-core/package.json", "docker/certs/silo.pfx",
                "tests/Weft.Silo.Tests/TestResults/x.trx"],
            p => Assert.True(Ignored(patterns, p), $"{p} is in the build context"));
        Assert.All(CopySources(Dockerfile()).Select(c => c.Source.TrimEnd('/')).Append("src/Silo/Program.cs"),
            p => Assert.False(Ignored(patterns, p), $"{p} is copied by the Dockerfile but left out of the context"));
    }

    static List<string> Dockerfile() => [.. File.ReadAllLines(Path.Combine(Docker, "Dockerfile"))];

    /// <summary>The sources of the Dockerfile's COPY instructions from the build context (not from a stage), with
    /// the index of their line.</summary>
    static List<(string Source, int Line)> CopySources(List<string> lines) =>
    [
        .. lines.Select((l, i) => (Words: l.Split(' ', StringSplitOptions.RemoveEmptyEntries), Line: i))
            .Where(l => l.Words is ["COPY", ..] && !l.Words.Any(w => w.StartsWith("--from=", StringComparison.Ordinal)))
            .SelectMany(l => l.Words[1..^1].Select(source => (source, l.Line))),
    ];

    /// <summary>Whether Docker's .dockerignore rules leave <paramref name="path"/> out of the build context: the last
    /// matching pattern decides ('!' keeps), and a pattern that matches a folder leaves out all below it.</summary>
    static bool Ignored(List<string> patterns, string path)
    {
        bool ignored = false;
        foreach (string line in patterns)
        {
            bool keep = line.StartsWith('!');
            string pattern = line.TrimStart('!').Trim('/');
            string regex = "^" + Regex.Escape(pattern)
                .Replace(@"\*\*/", "(.*/)?").Replace(@"\*\*", ".*").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]")
                + "(/.*)?$";
            if (Regex.IsMatch(path, regex)) ignored = !keep;
        }
        return ignored;
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
