using System.Numerics.Tensors;

namespace Weft.GpuRuntime.Engine.Cpu;

/// <summary>Row n of a float weight matrix [N × k] as f32, for the portable path.</summary>
unsafe interface IRowReader
{
    static abstract void ReadRow(byte* w, long n, int k, float* row);
}

/// <summary>
/// The same matmuls without AVX-512 or VNNI (other x86 CPUs, Arm): row by row through System.Numerics.Tensors.
/// Slower, but it computes the same values, so greedy outputs and tests agree everywhere.
/// </summary>
static unsafe class Portable
{
    /// <summary>Float weights (f32/f16/bf16) read by <typeparamref name="TReader"/> against activations
    /// x [m × k].</summary>
    public static void Float<TReader>(byte* w, float* x, float* y, float* bias, int m, int k, int ldy, int n0, int n1)
        where TReader : IRowReader
    {
        // k is a row's length (up to the FFN width: tens of thousands of floats), too much for a worker's stack at the
        // top of the range
        float[]? rented = k > 8192 ? System.Buffers.ArrayPool<float>.Shared.Rent(k) : null;
        Span<float> row = rented is null ? stackalloc float[k] : rented.AsSpan(0, k);
        try
        {
            for (int n = n0; n < n1; n++)
            {
                fixed (float* r = row) TReader.ReadRow(w, n, k, r);
                for (int r = 0; r < m; r++)
                {
                    float s = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(x + (long)r * k, k));
                    y[(long)r * ldy + n] = s + (bias == null ? 0 : bias[n]);
                }
            }
        }
        finally
        {
            if (rented is not null) System.Buffers.ArrayPool<float>.Shared.Return(rented);
        }
    }

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
