using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Orleans.Configuration;
using Orleans.Dashboard;
using Weft.Abstractions;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.Grains;
using Weft.Models.Gguf;
using Weft.Silo.Storage;

namespace Weft.Silo;

/// <summary>
/// The silo host: an Orleans silo serving the model (see <see cref="WeftSiloBuilderExtensions.AddWeft"/>) and, in the
/// same process, the OpenAI-compatible HTTP API, /health and /metrics.
/// </summary>
public static partial class WeftSilo
{
    /// <summary>Runs the silo until it is stopped; the exit code of the process.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        if (CommandLine.IsHelp(args))
        {
            Console.Write(CommandLine.Help());
            return 0;
        }
        WebApplication app;
        try
        {
            app = Build(args);
        }
        catch (SiloOptionsException e)
        {
            Console.Error.WriteLine($"weft-silo: {e.Message}");
            return 2;
        }
        await using (app)
        {
            try
            {
                // Opening the model here, before anything listens, turns a bad file into one line rather than a
                // failed host start with its stack trace in the log.
                app.Services.GetRequiredService<ModelHost>();
                if (UnavailablePort(app.Services.GetRequiredService<SiloOptions>()) is { } problem)
                {
                    Console.Error.WriteLine($"weft-silo: {problem}");
                    return 1;
                }
                await app.StartAsync();
            }
            catch (Exception e) when (e is GgufFormatException or IOException or UnauthorizedAccessException
                or ArgumentException or InvalidOperationException or OrleansException
                or System.Data.Common.DbException or System.Net.Sockets.SocketException)
            {
                Console.Error.WriteLine($"weft-silo: {OneLine(e, app.Services.GetRequiredService<SiloOptions>())}");
                return e is ArgumentException ? 2 : 1;
            }
            await app.WaitForShutdownAsync();
            // a model that fails to load in the background stops the host and sets the exit code
            return Environment.ExitCode;
        }
    }

    /// <summary>
    /// Why the silo cannot listen on one of its ports, or null. Orleans binds its ports with address reuse, so a second
    /// silo on a busy silo port would start and share it; a plain bind here fails instead. (Kestrel's own failure is
    /// caught too, but only after the host has logged it with its stack trace.)
    /// </summary>
    static string? UnavailablePort(SiloOptions silo)
    {
        var ports = new List<(string Name, IPEndPoint Endpoint)>
            { ($"silo port {silo.SiloPort}", new(IPAddress.Any, silo.SiloPort)) };
        if (silo.GatewayPort > 0) ports.Add(($"gateway port {silo.GatewayPort}", new(IPAddress.Any, silo.GatewayPort)));
        foreach (var url in silo.Urls.Split(';',
            StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var uri = new Uri(url.Replace("://*", "://localhost").Replace("://+", "://localhost"));
            var address = url.Contains("://*") || url.Contains("://+") ? IPAddress.Any
                : uri.IsLoopback ? IPAddress.Loopback
                : IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) ? ip : null;
            if (address is not null && uri.Port > 0) ports.Add((url, new(address, uri.Port)));
        }
        foreach (var (name, endpoint) in ports)
        {
            var listener = new System.Net.Sockets.TcpListener(endpoint);
            try
            {
                listener.Start();
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return e.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse
                    ? $"{name} is already in use" : $"cannot listen on {name}: {e.Message}";
            }
            finally
            {
                listener.Stop();
            }
        }
        return null;
    }

    static string OneLine(Exception e, SiloOptions silo) => (e switch
    {
        ArgumentException { ParamName: { } param } a => a.Message.Replace($" (Parameter '{param}')", ""),
        // Kestrel names its URL; Orleans only says "Address already in use"
        Microsoft.AspNetCore.Connections.AddressInUseException =>
            $"silo port {silo.SiloPort} or gateway port {silo.GatewayPort} is already in use",
        _ => e.Message,
    }).ReplaceLineEndings(" ");

    /// <summary>Builds the silo from the command line, the environment (WEFT_ prefix) and appsettings.json; tests start
    /// it themselves.</summary>
    /// <exception cref="SiloOptionsException">The options are malformed or out of range.</exception>
    public static WebApplication Build(string[] args)
    {
        var builder =
            WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddEnvironmentVariables("WEFT_");
        builder.Configuration.AddInMemoryCollection(CommandLine.Parse(args));
        var silo = Bind<SiloOptions>(builder.Configuration, SiloOptions.Section);
        var model = Bind<ModelHostOptions>(builder.Configuration, "Weft");
        var problems = silo.Validate().Concat(model.Validate()).ToList();
        if (problems.Count > 0) throw new SiloOptionsException(string.Join("; ", problems));
        var tenants = Tenants.Load(silo);
        if (silo.OrleansDashboard && tenants.RequireKey && !tenants.Has(WeftDefaults.Tenant))
            throw new SiloOptionsException("orleans-dashboard opens with the key of tenant 'default' (--api-key), " +
                "and no key names it");

        builder.WebHost.UseUrls(silo.Urls.Split(';',
            StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        builder.Logging.ClearProviders().AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        // Orleans retries a placement through Polly, which logs each retry as a warning with its exception: a silo that
        // has just joined (its device grain not yet active) gave two such lines per join. The MembershipLog's line
        // says what happened; a retry that gives up still fails the call and is logged there.
        builder.Logging.AddFilter("Polly", LogLevel.Error);
        builder.Services.AddSingleton(silo);
        builder.Services.AddSingleton(tenants);
        builder.Services.AddSingleton<Storage.StorageHealth>();
        // hosted services start in order: the schema exists before the silo below joins the membership table
        if (silo.Postgres is not null) builder.Services.AddHostedService<Storage.PostgresSchemaInstaller>();
        builder.UseOrleans(s =>
        {
            s.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = silo.ClusterId;
                o.ServiceId = silo.ServiceId;
            });
            if (silo.Postgres is { } postgres)
            {
                s.ConfigureEndpoints(IPAddress.Parse(silo.Address), silo.SiloPort, silo.GatewayPort);
                s.UsePostgres(postgres, WeftStorage.Name);
            }
            else if (silo.Redis is null)
            {
                var primary = silo.PrimarySiloPort is { } port ? new IPEndPoint(IPAddress.Loopback, port) : null;
                s.UseLocalhostClustering(silo.SiloPort, silo.GatewayPort, primary, silo.ServiceId, silo.ClusterId);
                s.AddMemoryGrainStorage(WeftStorage.Name);
            }
            else
            {
                s.ConfigureEndpoints(IPAddress.Parse(silo.Address), silo.SiloPort, silo.GatewayPort);
                s.UseRedis(silo.Redis, WeftStorage.Name, model);
            }
            if (silo.TlsCertificate is not null) s.UseWeftTls(silo);
            if (silo.Postgres is not null || silo.Redis is not null) s.UseWeftFailover(silo);
            if (silo.Postgres is not null || silo.Redis is not null) s.Services.AddHostedService<MembershipGuard>();
            if (silo.Kubernetes) s.UseKubernetesHosting();
            if (silo.OrleansDashboard) s.AddDashboard();
            s.AddWeft(model);
            // A store's exception raised in a grain (a conversation activating while PostgreSQL restarts) crosses to
            // the silo serving the request, which answers 503 for it; outside Orleans' default namespaces it could
            // not be serialized, and that silo got a serialization error it could only answer 500 for.
            s.Services.Configure<Orleans.Serialization.ExceptionSerializationOptions>(o =>
                o.SupportedNamespacePrefixes.UnionWith(["Npgsql", "StackExchange.Redis"]));
        });
        // target_info carries service.name (Prometheus' job-independent name of what is scraped)
        builder.Services.AddOpenTelemetry().ConfigureResource(r => r.AddService("weft")).WithMetrics(m => m
            .AddMeter(Grains.Metrics.MeterName, "Microsoft.AspNetCore.Hosting")
            .AddView(i => i.Meter.Name != Grains.Metrics.MeterName ? null
                : i.Name == MaskTiming.InstrumentName ? Buckets(MaskBuckets)
                : i.Unit == "s" ? Buckets(SecondsBuckets)
                : i.Name == "weft_batch_size" ? Buckets(BatchBuckets)
                : null)
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        builder.Services.AddSingleton<OpenAiApi>();

        var app = builder.Build();
        app.MapWeftApi(silo, tenants);
        app.MapChatPage();
        if (silo.OrleansDashboard) app.MapWeftOrleansDashboard(tenants);
        app.MapPrometheusScrapingEndpoint();
        app.Lifetime.ApplicationStarted.Register(() => LogStarted(app));
        return app;
    }

    /// <summary>Latencies and tick times: from a fraction of a millisecond (a GPU tick) to a minute (a long reply under
    /// load).</summary>
    static readonly double[] SecondsBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
        0.75, 1, 2.5, 5, 7.5, 10, 30, 60];
    /// <summary>Constrained-decoding masks: a reused mask takes microseconds, a walk over a whole vocabulary up to
    /// tens of milliseconds (`bench serve --json-schema` measured p50 5.7 µs, p99 9.4 ms).</summary>
    static readonly double[] MaskBuckets = [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
        0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
    static readonly double[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
    static ExplicitBucketHistogramConfiguration Buckets(double[] boundaries) => new() { Boundaries = boundaries };

    static T Bind<T>(IConfiguration configuration, string section) where T : new()
    {
        try
        {
            return configuration.GetSection(section).Get<T>() ?? new T();
        }
        catch (InvalidOperationException e)
        {
            // the binder's message names the configuration key and the type it could not convert the value to
            throw new SiloOptionsException(e.Message);
        }
    }

    static void LogStarted(WebApplication app)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Weft.Silo");
        var silo = app.Services.GetRequiredService<SiloOptions>();
        string clustering = silo.Postgres is not null ? "postgres"
            : silo.Redis is null ? "localhost" : $"redis {silo.Redis}";
        LogCluster(logger, clustering, silo.ClusterId, silo.SiloPort, silo.GatewayPort);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses
            ?? [];
        var tenants = app.Services.GetRequiredService<Tenants>();
        LogListening(logger, string.Join(", ", addresses),
            tenants.RequireKey ? $"API key required, {tenants.Count} tenants" : "no API key");
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "cluster: {Clustering}, cluster id {ClusterId}, silo port {SiloPort}, gateway port {GatewayPort}")]
    static partial void LogCluster(ILogger logger, string clustering, string clusterId, int siloPort, int gatewayPort);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "listening on {Urls} ({Auth}): OpenAI API under /v1, /health, /metrics")]
    static partial void LogListening(ILogger logger, string urls, string auth);
}
