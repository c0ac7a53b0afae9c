using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Weft.GpuRuntime.Engine;
using Weft.GpuRuntime.Engine.Cpu;
using Weft.GpuRuntime.Engine.Ilgpu;
using Weft.Models;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Tests.Engine;

public sealed class WeightFormatTests
{
    [Fact]
    public void Every_matrix_type_the_loader_accepts_has_a_format_on_both_backends_and_no_other()
    {
        Assert.Equal(ModelWeights.MatrixTypes.Order(), CpuFormats.Types.Order());
        Assert.Equal(ModelWeights.MatrixTypes.Order(), IlgpuFormats.Types.Order());
    }

    [Fact]
    public void Both_backends_store_each_format_alike_or_the_cpu_in_the_files_own_and_ilgpu_prepares_input_as_ggml()
    {
        foreach (var type in ModelWeights.MatrixTypes)
        {
            var cpu = CpuFormats.Find(type)!;
            var gpu = IlgpuFormats.Find(type)!;
            Assert.Equal(type, gpu.Stored);
            Assert.Equal(cpu.Stored, gpu.Stored);
            // what the ILGPU backend rounds or quantizes the input to is ggml's vec_dot_type of its stored layout (q8_1
            // is q8_0's quants and scale with their sum, which the kernel makes itself)
            var expected = GgmlTypeTraits.Of(gpu.Stored).VecDotType switch
            {
                GgmlType.F16 => InputPrep.F16,
                GgmlType.BF16 => InputPrep.Bf16,
                GgmlType.Q8_0 or GgmlType.Q8_1 => InputPrep.Q8,
                GgmlType.Q8_K => InputPrep.Q8K,
                _ => InputPrep.None,
            };
            Assert.Equal(expected, gpu.Prep);
        }
    }

    /// <summary>q4_0 blocks are 18 bytes: three rows of one block end mid-word, and the device holds the file's
    /// bytes and the two that round them up to a 32-bit word.</summary>
    [Fact]
    public void Ilgpu_holds_a_quantized_matrix_as_the_files_bytes_rounded_up_to_a_word()
    {
        var dir = Directory.CreateTempSubdirectory("weft-formats-").FullName;
        try
        {
            string path = Path.Combine(dir, "q4_0.gguf");
            var bytes = new byte[GgmlTypeTraits.RowBytes(GgmlType.Q4_0, 32) * 3];
            new Random(3).NextBytes(bytes);
            new GgufWriter().AddTensor("blk.0.attn_k.weight", GgmlType.Q4_0, [32, 3], bytes).Write(path);
            using var file = GgufFile.Open(path);
            using var gpu = new IlgpuBackend(EngineKind.IlgpuCpu);
            var w = (IlgpuWeight)gpu.LoadWeight(file, file.GetTensor("blk.0.attn_k.weight"));
            Assert.Equal(54, bytes.Length);
            Assert.Equal(56, w.DeviceBytes);
            byte[] held = MemoryMarshal.AsBytes(w.Data!.GetAsArray1D().AsSpan()).ToArray();
            Assert.Equal([.. bytes, 0, 0], held);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public unsafe void An_f16_matrix_below_64_is_copied_scaled_one_reaching_64_stays_in_place_and_both_read_exactly()
    {
        var dir = Directory.CreateTempSubdirectory("weft-formats-").FullName;
        try
        {
            string path = Path.Combine(dir, "f16.gguf");
            var rng = new Random(5);
            Half[] small = [.. Enumerable.Range(0, 64 * 3).Select(i => i % 9 == 0
                ? BitConverter.UInt16BitsToHalf((ushort)rng.Next(0, 1024)) // zeros and subnormals
                : (Half)(rng.NextSingle() * 120 - 60))];
            Half[] large = [.. small];
            large[70] = (Half)100f;
            static byte[] Bytes(Half[] h) => MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
            new GgufWriter()
                .AddTensor("blk.0.attn_q.weight", GgmlType.F16, [64, 3], Bytes(small))
                .AddTensor("blk.0.attn_k.weight", GgmlType.F16, [64, 3], Bytes(large))
                .Write(path);
            using var file = GgufFile.Open(path);
            using var cpu = new CpuBackend(1);
            foreach (var (name, values, copied) in new[]
                { ("blk.0.attn_q.weight", small, true), ("blk.0.attn_k.weight", large, false) })
            {
                var t = file.GetTensor(name);
                var w = (CpuWeight)cpu.LoadWeight(file, t);
                Assert.Equal(copied, w.Owned);
                Assert.Equal(copied, w.Data != file.DataPointer(t));
                var row = new float[64];
                for (int r = 0; r < 3; r++)
                {
                    w.Format.ReadRow(w, r, row);
                    Assert.Equal(values.Skip(64 * r).Take(64).Select(h => (float)h), row);
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A file with one q8_1 matrix: a type ggml defines but no descriptor serves.</summary>
    static GgufFile Q8_1File(string dir)
    {
        string path = Path.Combine(dir, "q8_1.gguf");
        var w = new GgufWriter();
        w.AddTensor("blk.0.attn_k.weight", GgmlType.Q8_1, [64, 2],
            new byte[GgmlTypeTraits.RowBytes(GgmlType.Q8_1, 128)]);
        w.Write(path);
        return GgufFile.Open(path);
    }

    [Fact]
    public void A_matrix_of_a_type_no_format_serves_fails_at_load_in_one_line_naming_tensor_and_type()
    {
        var dir = Directory.CreateTempSubdirectory("weft-formats-").FullName;
        try
        {
            using var file = Q8_1File(dir);
            var t = file.GetTensor("blk.0.attn_k.weight");
            using var cpu = new CpuBackend(1);
            using var gpu = new IlgpuBackend(new CPUDevice(4, 32, 1),
                new LaunchShape(Lanes: 4, GroupSize: 16, MaxGroups: 64, TiledFromRows: 9));
            foreach (IBackend backend in new IBackend[] { cpu, gpu })
            {
                var e = Assert.Throws<GgufFormatException>(() => backend.LoadWeight(file, t));
                Assert.Contains("tensor 'blk.0.attn_k.weight' is stored as Q8_1", e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
