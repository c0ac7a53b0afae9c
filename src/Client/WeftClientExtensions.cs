using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Weft.Abstractions;

namespace Weft.Client;

public static class WeftClientExtensions
{
    /// <summary>
    /// Connects this host to a Weft cluster as an Orleans client and registers <see cref="WeftClient"/> and an
    /// <see cref="IChatClient"/>. Without <paramref name="configure"/> it joins a local silo (localhost clustering,
    /// gateway port 30000, cluster and service id "weft" as the silo's defaults); pass a configuration to use Redis
    /// clustering or other gateways.
    /// </summary>
    public static IHostApplicationBuilder AddWeftClient(this IHostApplicationBuilder builder,
        Action<IClientBuilder>? configure = null, string modelId = "weft")
    {
        builder.UseOrleansClient(client =>
        {
            if (configure is null)
                client.UseLocalhostClustering(WeftDefaults.GatewayPort, WeftDefaults.ServiceId, WeftDefaults.ClusterId);
            else configure(client);
        });
        builder.Services.AddSingleton<WeftClient>();
        builder.Services.AddSingleton<IChatClient>(sp =>
            new WeftChatClient(sp.GetRequiredService<WeftClient>(), modelId));
        return builder;
    }
}
