namespace Weft.Grains;

public static class WeftStorage
{
    /// <summary>The grain storage provider conversations persist to (memory by default, Redis in a cluster).</summary>
    public const string Name = "weft";
}
