using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Weft.GpuRuntime.Engine.Ilgpu;

namespace Weft.GpuRuntime.Tests.Ilgpu;

/// <summary>
/// Every kernel compiles to PTX for Hopper (sm_90) without a GPU, as the CUDA accelerator will compile it at start-up:
/// a kernel that uses something PTX has no code for (a math function without libdevice, say) fails here.
/// </summary>
public sealed class PtxCompileTests
{
    static readonly Type[] Formats =
    [
        typeof(F32Rows), typeof(F16Rows), typeof(Bf16Rows), typeof(Q8_0Rows), typeof(Q4_0Rows), typeof(Q4_1Rows),
        typeof(Q5_0Rows), typeof(Q5_1Rows), typeof(Q2_KRows), typeof(Q3_KRows), typeof(Q4_KRows), typeof(Q5_KRows),
        typeof(Q6_KRows), typeof(IQ4_NLRows), typeof(IQ4_XSRows),
    ];
    static readonly Type[] Caches = [typeof(F16Cache), typeof(F32Cache)];

    public static TheoryData<string, string> KernelNames()
    {
        var data = new TheoryData<string, string>();
        // every kernel found rather than listed, so that a new one cannot be left out (GeGlu, Scale and SoftCap were):
        // a generic one for each weight format (TW) or cache type (TC) it is instantiated with
        const BindingFlags Declared = BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var m in typeof(Kernels).GetMethods(Declared))
        {
            if (!m.IsGenericMethodDefinition) data.Add(m.Name, "");
            else
                foreach (var t in m.GetGenericArguments()[0].Name == "TW" ? Formats : Caches) data.Add(m.Name, t.Name);
        }
        data.Add(nameof(SamplingKernel.Sample), "");
        return data;
    }

    [Theory]
    [Trait("Device", "cuda")]
    [MemberData(nameof(KernelNames))]
    public void Kernel_compiles_for_cuda(string kernel, string typeArgument)
    {
        using var context = Context.Create(b => b.EnableAlgorithms());
        var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90,
            CudaInstructionSet.ISA_80, null!);
        var method = (typeof(Kernels).GetMethod(kernel) ?? typeof(SamplingKernel).GetMethod(kernel))!;
        if (method.IsGenericMethodDefinition)
            method = method.MakeGenericMethod(typeof(IlgpuBackend).Assembly.GetTypes()
                .Single(t => t.Name == typeArgument && t.Namespace == typeof(IlgpuBackend).Namespace));
        var entry = method.GetParameters()[0].ParameterType == typeof(Index1D)
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);
        var ptx = ((PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization())).PTXAssembly;
        Assert.Contains(".entry", ptx);
    }
}
