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
    public void Both_backends_store_each_format_in_the_same_layout_and_prepare_its_input_alike()
    {
        foreach (var type in ModelWeights.MatrixTypes)
        {
            var cpu = CpuFormats.Find(type)!;
            var gpu = IlgpuFormats.Find(type)!;
            // the CPU serves the K-quants in their own layout with ggml's numerics; ILGPU still repacks them to q8_0
            bool kQuant = GgmlTypeTraits.Of(type).VecDotType == GgmlType.Q8_K;
            Assert.Equal(kQuant ? type : gpu.Stored, cpu.Stored);
            if (kQuant) Assert.Equal(GgmlType.Q8_0, gpu.Stored);
            // what each backend rounds or quantizes the input to is ggml's vec_dot_type of the stored layout
            var expected = GgmlTypeTraits.Of(gpu.Stored).VecDotType switch
            {
                GgmlType.F16 => InputPrep.F16,
                GgmlType.BF16 => InputPrep.Bf16,
                GgmlType.Q8_0 => InputPrep.Q8,
                _ => InputPrep.None,
            };
            Assert.Equal(expected, gpu.Prep);
        }
    }

    /// <summary>A file with one q5_0 matrix: a type ggml defines but no descriptor serves.</summary>
    static GgufFile Q5_0File(string dir)
    {
        string path = Path.Combine(dir, "q5_0.gguf");
        var w = new GgufWriter();
        w.AddTensor("blk.0.attn_k.weight", GgmlType.Q5_0, [64, 2],
            new byte[GgmlTypeTraits.RowBytes(GgmlType.Q5_0, 128)]);
        w.Write(path);
        return GgufFile.Open(path);
    }

    [Fact]
    public void A_matrix_of_a_type_no_format_serves_fails_at_load_in_one_line_naming_tensor_and_type()
    {
        var dir = Directory.CreateTempSubdirectory("weft-formats-").FullName;
        try
        {
            using var file = Q5_0File(dir);
            var t = file.GetTensor("blk.0.attn_k.weight");
            using var cpu = new CpuBackend(1);
            using var gpu = new IlgpuBackend(new CPUDevice(4, 32, 1),
                new LaunchShape(Lanes: 4, GroupSize: 16, MaxGroups: 64, TiledFromRows: 9));
            foreach (IBackend backend in new IBackend[] { cpu, gpu })
            {
                var e = Assert.Throws<GgufFormatException>(() => backend.LoadWeight(file, t));
                Assert.Contains("tensor 'blk.0.attn_k.weight' is stored as Q5_0", e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
