using Weft.Models;

namespace Weft.GpuRuntime.Engine;

/// <summary>
/// Where each layer's K and V pools sit in a backend's one KV allocation: layer after layer, K then V, a sliding
/// layer's pools holding the window pool's blocks and the others the main pool's. Units are what the backend counts
/// a block in (bytes on the cpu, elements on ILGPU).
/// </summary>
/// <param name="Windowed">Per layer: whether it takes the window pool.</param>
/// <param name="Offset">Per layer: where its K pool starts; its V pool follows at Offset + Size.</param>
/// <param name="Size">Per layer: the size of its K pool (and of its V pool).</param>
readonly record struct KvLayout(bool[] Windowed, long[] Offset, long[] Size, long Total)
{
    /// <param name="windowBlocks">The window pool's blocks; 0 when there is none (every layer takes the main
    /// pool).</param>
    public static KvLayout Of(ModelConfig config, int numBlocks, int windowBlocks, long unitsPerBlock)
    {
        var windowed = new bool[config.Layers];
        var offset = new long[config.Layers];
        var size = new long[config.Layers];
        long total = 0;
        for (int l = 0; l < config.Layers; l++)
        {
            windowed[l] = windowBlocks > 0 && config.IsSliding(l);
            offset[l] = total;
            size[l] = (windowed[l] ? windowBlocks : numBlocks) * unitsPerBlock;
            total += 2 * size[l];
        }
        return new(windowed, offset, size, total);
    }
}
