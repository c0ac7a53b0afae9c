using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

namespace Weft.Grains;

public static class WeftSiloBuilderExtensions
{
    /// <summary>
    /// Serves a model from this silo: the model host (validated at start-up, loaded onto the device in the background),
    /// the grains' placement directors, and the cluster load monitor. Grain storage "weft" is the caller's choice
    /// (memory for one silo, Redis for a cluster).
    /// </summary>
    /// <param name="options">The model host's options; null binds them from the "Weft" configuration section.</param>
    public static ISiloBuilder AddWeft(this ISiloBuilder silo, ModelHostOptions? options = null)
    {
        if (options is not null) silo.Services.AddSingleton(Options.Create(options));
        else silo.Services.AddOptions<ModelHostOptions>().Bind(silo.Configuration.GetSection("Weft"));
        silo.Services.AddSingleton<ModelHost>();
        silo.Services.AddSingleton<TenantLimits>();
        silo.Services.AddSingleton<LocalReplies>();
        silo.Services.AddSingleton<TurnCallers>();
        // An idle conversation must outlive its TTL so that its own timer removes its state (an activation collected
        // earlier would leave it in storage); the activation then goes with it.
        silo.Services.AddOptions<GrainCollectionOptions>().Configure<IOptions<ModelHostOptions>>((o, m) =>
        {
            if (m.Value.ConversationTtlSeconds <= 0) return;
            var ttl = TimeSpan.FromSeconds(m.Value.ConversationTtlSeconds);
            var age = ttl + 2 * ConversationGrain.CheckPeriod(ttl);
            if (age > o.CollectionAge) o.ClassSpecificCollectionAge[typeof(ConversationGrain).FullName!] = age;
        });
        silo.Services.AddHostedService<ModelLoader>();
        silo.Services.AddHostedService<ServingSummary>();
        silo.Services.AddHostedService<MembershipLog>();
        silo.Services.AddSingleton<ClusterLoad>();
        silo.Services.AddHostedService(sp => sp.GetRequiredService<ClusterLoad>());
        silo.Services.AddPlacementDirector<DevicePlacementStrategy, DevicePlacementDirector>();
        silo.Services.AddPlacementDirector<KvCapacityPlacementStrategy, KvCapacityPlacementDirector>();
        return silo;
    }
}

/// <summary>Validates the model when the host starts (a bad file stops start-up) and loads it in the
/// background.</summary>
sealed partial class ModelLoader(ModelHost host, IHostApplicationLifetime lifetime, ILogger<ModelLoader> logger)
    : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogModel(logger, host.ModelName, host.ModelPath, host.Config.Architecture, host.Config.Layers, host.Config.Dim,
            host.MaxModelLen, host.Template.IsTemplate ? $"rendered ({host.Template.Name})" : host.Template.Name);
        if (host.Template.TemplateProblem is { } problem) LogTemplateProblem(logger, problem, host.Template.Name);
        _ = Task.Run(() =>
        {
            try
            {
                host.Load();
            }
            catch (Exception e)
            {
                LogLoadFailed(logger, host.ModelPath, e.Message);
                Environment.ExitCode = 1;
                lifetime.StopApplication();
            }
        }, CancellationToken.None);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "model: {Name} ({Path}): {Architecture}, {Layers} layers, " +
        "dim {Dim}, context {Context}, chat template {Template}")]
    static partial void LogModel(ILogger logger, string name, string path, string architecture, int layers, int dim,
        int context, string template);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Problem}; the built-in {Format} chat format is used instead")]
    static partial void LogTemplateProblem(ILogger logger, string problem, string format);

    [LoggerMessage(Level = LogLevel.Critical, Message = "{Path}: loading failed: {Reason}")]
    static partial void LogLoadFailed(ILogger logger, string path, string reason);
}
