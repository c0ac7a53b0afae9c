using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Weft.GpuRuntime.Engine.Cpu;

static unsafe class Quantize
{
    /// <summary>
    /// A row of activations to q8_0 the way ggml's AVX path does for its dot products: per block of 32, the scale
    /// stored as f16 is max|x| / 127, the quants are x · 127 / max|x| rounded to nearest even. Also, per block, the
    /// eight lanes' −128·Σx that the VNNI kernels start from (<paramref name="c"/>, 8 ints per block).
    /// </summary>
    public static void RowQ8(float* x, sbyte* q, int* c, float* d, int k)
    {
        for (int b = 0; b < k / 32; b++)
        {
            float* xs = x + b * 32;
            float amax;
            if (Vector512.IsHardwareAccelerated && AvxVnni.IsSupported)
            {
                var v0 = Vector512.Load(xs);
                var v1 = Vector512.Load(xs + 16);
                amax = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1)) is var m ? MaxAcross(m) : 0;
                float id = amax != 0 ? 127f / amax : 0f;
                var q0 = Vector512.ConvertToInt32(Vector512.Round(v0 * id));
                var q1 = Vector512.ConvertToInt32(Vector512.Round(v1 * id));
                var packed = Vector512.Narrow(Vector512.Narrow(q0, q1), Vector512<short>.Zero).GetLower().AsSByte();
                packed.Store(q + b * 32);
                Vector256.Negate(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Create((byte)128),
                    packed)).Store(c + b * 8);
            }
            else
            {
                amax = 0;
                for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(xs[j]));
                float id = amax != 0 ? 127f / amax : 0f;
                for (int j = 0; j < 32; j++) q[b * 32 + j] = (sbyte)MathF.Round(xs[j] * id, MidpointRounding.ToEven);
                for (int lane = 0; lane < 8; lane++)
                    c[b * 8 + lane] = -128 * (q[b * 32 + 4 * lane] + q[b * 32 + 4 * lane + 1] + q[b * 32 + 4 * lane + 2]
                        + q[b * 32 + 4 * lane + 3]);
            }
            d[b] = (float)(Half)(amax / 127f);
        }
    }

    static float MaxAcross(Vector512<float> v)
    {
        var m = Vector256.Max(v.GetLower(), v.GetUpper());
        var m2 = Vector128.Max(m.GetLower(), m.GetUpper());
        return MathF.Max(MathF.Max(m2[0], m2[1]), MathF.Max(m2[2], m2[3]));
    }
}
