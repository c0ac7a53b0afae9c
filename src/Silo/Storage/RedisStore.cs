using Orleans.Storage;
using Weft.Grains;

namespace Weft.Silo.Storage;

/// <summary>
/// Redis as the cluster's store: Orleans' Redis membership and grain storage. Conversations and stored responses live
/// in two Redis providers with an expiry of their own, because Orleans' Redis storage sets one expiry for every key it
/// writes, and the two kinds of entry have TTLs of their own (one may be 0, kept until deleted, while the other
/// expires). The keys do not depend on the provider, so state written by one provider for both kinds reads back.
/// </summary>
static class RedisStore
{
    const string Conversations = "weft-conversations";
    const string Responses = "weft-responses";

    public static ISiloBuilder UseRedis(this ISiloBuilder silo, string configuration, string storageName,
        ModelHostOptions model)
    {
        silo.UseRedisClustering(o =>
            o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(configuration));
        // Each kind removes its own state after its TTL; the store's expiry, twice that TTL after the last write, only
        // catches what a silo that died left behind and responses no one reads again.
        AddProvider(silo, Conversations, configuration, model.ConversationTtlSeconds);
        AddProvider(silo, Responses, configuration, model.ResponseTtlSeconds);
        silo.Services.AddKeyedSingleton<IGrainStorage>(storageName, (services, _) => new ByKind(
            services.GetRequiredKeyedService<IGrainStorage>(Conversations),
            services.GetRequiredKeyedService<IGrainStorage>(Responses)));
        return silo;
    }

    static void AddProvider(ISiloBuilder silo, string name, string configuration, int ttlSeconds) =>
        silo.AddRedisGrainStorage(name, o =>
        {
            o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(configuration);
            // a reset conversation leaves no key behind
            o.DeleteStateOnClear = true;
            if (ttlSeconds > 0) o.EntryExpiry = TimeSpan.FromSeconds(2.0 * ttlSeconds);
        });

    /// <summary>The grains' one storage name, sending a stored response's state to the responses' provider and every
    /// other state (the conversations') to the conversations'.</summary>
    sealed class ByKind(IGrainStorage conversations, IGrainStorage responses) : IGrainStorage
    {
        IGrainStorage For(string stateName) => stateName == ResponseGrain.StateName ? responses : conversations;

        public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
            For(stateName).ReadStateAsync(stateName, grainId, grainState);

        public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
            For(stateName).WriteStateAsync(stateName, grainId, grainState);

        public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
            For(stateName).ClearStateAsync(stateName, grainId, grainState);
    }
}
