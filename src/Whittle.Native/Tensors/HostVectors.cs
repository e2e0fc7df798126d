using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Whittle.Native.Tensors;

/// <summary>
/// f32 ↔ f64 conversions of host rows, vectorised, each element exactly the scalar expression's value: shared by the CPU
/// backend's fused losses and the teacher top-k summariser (host code of a layer above the backends).
/// </summary>
internal static unsafe class HostVectors
{
    /// <summary>dst[j] = (double)src[j] · scale, eight at a time (exactly the scalar expression's value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void WidenScaled(float* src, double scale, Span<double> dst)
    {
        int j = 0;
        var vs = Vector256.Create(scale);
        fixed (double* d = dst)
        {
            for (; j + 8 <= dst.Length; j += 8)
            {
                var x = Vector256.Load(src + j);
                (Vector256.WidenLower(x) * vs).Store(d + j);
                (Vector256.WidenUpper(x) * vs).Store(d + j + 4);
            }
        }
        for (; j < dst.Length; j++) dst[j] = src[j] * scale;
    }

    /// <summary>dst[j] += (float)src[j], eight at a time (exactly the scalar expression's value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AddNarrowed(ReadOnlySpan<double> src, float* dst)
    {
        int j = 0;
        fixed (double* s = src)
        {
            for (; j + 8 <= src.Length; j += 8)
                (Vector256.Load(dst + j) + Vector256.Narrow(Vector256.Load(s + j), Vector256.Load(s + j + 4))).Store(dst + j);
        }
        for (; j < src.Length; j++) dst[j] += (float)src[j];
    }
}
