using System.Numerics.Tensors;
using Weft.Models.Gguf;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>
/// The same matmuls without AVX-512 or VNNI (other x86 CPUs, Arm): row by row through System.Numerics.Tensors.
/// Slower, but it computes the same values, so greedy outputs and tests agree everywhere.
/// </summary>
static unsafe class Portable
{
    public static void MatMul(GgmlType type, byte* w, float* wScales, float* x, sbyte* xq, float* xScales, float* y, float* bias,
        int m, int k, int ldy, int n0, int n1)
    {
        // k is a row's length (up to the FFN width: tens of thousands of floats), too much for a worker's stack at the top
        // of the range
        float[]? rented = k > 8192 ? System.Buffers.ArrayPool<float>.Shared.Rent(k) : null;
        Span<float> row = rented is null ? stackalloc float[k] : rented.AsSpan(0, k);
        int blocks = k / 32;
        try
        {
            for (int n = n0; n < n1; n++)
            {
                switch (type)
                {
                    case GgmlType.F32: new ReadOnlySpan<float>((float*)w + (long)n * k, k).CopyTo(row); break;
                    case GgmlType.F16: fixed (float* r = row) HalfMath.ToSingle((ushort*)w + (long)n * k, r, k); break;
                    case GgmlType.BF16: fixed (float* r = row) HalfMath.Bf16ToSingle((ushort*)w + (long)n * k, r, k); break;
                }
                for (int r = 0; r < m; r++)
                {
                    float s;
                    if (type == GgmlType.Q8_0)
                    {
                        s = 0;
                        for (int b = 0; b < blocks; b++)
                        {
                            int isum = 0;
                            byte* wb = w + (long)n * k + b * 32;
                            sbyte* xb = xq + (long)r * k + b * 32;
                            for (int j = 0; j < 32; j++) isum += (wb[j] - 128) * xb[j];
                            s += wScales[(long)n * blocks + b] * xScales[(long)r * blocks + b] * isum;
                        }
                    }
                    else s = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(x + (long)r * k, k));
                    y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
                }
            }
        }
        finally
        {
            if (rented is not null) System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }
}
