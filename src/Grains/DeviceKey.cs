namespace Weft.Grains;

/// <summary>A BatchGrain's key: the silo it is pinned to and the device index on that silo,
/// "{silo}/{device}".</summary>
public readonly record struct DeviceKey(SiloAddress Silo, int Device)
{
    public override string ToString() => $"{Silo.ToParsableString()}/{Device}";

    public static DeviceKey Parse(string key)
    {
        int slash = key.LastIndexOf('/');
        if (slash < 0 || !int.TryParse(key.AsSpan(slash + 1), out int device))
            throw new ArgumentException($"'{key}' is not a device key (silo/device)");
        return new DeviceKey(SiloAddress.FromParsableString(key[..slash]), device);
    }
}
