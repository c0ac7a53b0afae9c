namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The q8_0 matmul for CPUs with neither AVX2 nor SSSE3/Arm64 SIMD, and the rows left over after the 128-bit
/// kernel's tiles of four: block by block in scalars, in the order of ggml's scalar code.
/// </summary>
static unsafe class Portable
{
    /// <summary>Repacked q8_0 weights (see <see cref="MatMulKernels.Q8"/>) against q8_0 activations, block by
    /// block.</summary>
    public static void Q8(byte* w, float* wScales, sbyte* xq, float* xScales, float* y, float* bias, int m, int k,
        int ldy, int n0, int n1)
    {
        int blocks = k / 32;
        for (int n = n0; n < n1; n++)
            for (int r = 0; r < m; r++)
            {
                float s = 0;
                for (int b = 0; b < blocks; b++)
                {
                    int isum = 0;
                    byte* wb = w + (long)n * k + b * 32;
                    sbyte* xb = xq + (long)r * k + b * 32;
                    for (int j = 0; j < 32; j++) isum += (wb[j] - 128) * xb[j];
                    s += wScales[(long)n * blocks + b] * xScales[(long)r * blocks + b] * isum;
                }
                y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
            }
    }
}
