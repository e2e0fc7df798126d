using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

// The fused no-grad ops of evaluation (IBackend "fused no-grad ops"): each does in one pass over a row what the unfused
// forward does in two or three passes over the whole (N, C) activation (a GEMM's bias, the residual add, the norm; a
// bias and the GELU), while the row is in L1. Each computes exactly what the unfused ops compute, in the same order
// (x + (delta + bias), then the same row kernels as LayerNormForward / RmsNormForward / GeluForward), so results are
// bit-identical to the unfused sequence; rows are split over threads as those ops split them.
public sealed unsafe partial class CpuBackend
{
    public void AddLayerNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, Tensor bias, float eps, Tensor y)
    {
        var (n, c) = CheckResidualNorm(x, delta, deltaBias, weight, y);
        ArgCheck.Vector(bias, c, nameof(bias));
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pw = (float*)weight.Pointer, pb = (float*)bias.Pointer;
        float* pd = delta is null ? null : (float*)delta.Pointer, pdb = deltaBias is null ? null : (float*)deltaBias.Pointer;
        ParallelRows(n, c, i =>
        {
            float* row = px + (long)i * c;
            AddResidualRow(row, pd == null ? null : pd + (long)i * c, pdb, c);
            float mean, rstd;   // not saved: no backward pass reads them
            LayerNormRow(row, c, pw, pb, eps, py + (long)i * c, &mean, &rstd);
        });
    }

    public void AddRmsNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, float eps, Tensor y)
    {
        var (n, c) = CheckResidualNorm(x, delta, deltaBias, weight, y);
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pw = (float*)weight.Pointer;
        float* pd = delta is null ? null : (float*)delta.Pointer, pdb = deltaBias is null ? null : (float*)deltaBias.Pointer;
        ParallelRows(n, c, i =>
        {
            float* row = px + (long)i * c;
            AddResidualRow(row, pd == null ? null : pd + (long)i * c, pdb, c);
            RmsNormRow(row, c, pw, eps, py + (long)i * c);
        });
    }

    public void BiasGeluForward(Tensor x, Tensor? bias, Tensor y, bool tanhApproximation)
    {
        var (n, m) = ArgCheck.ContiguousMatrix(x, nameof(x));
        ArgCheck.Shape(y, nameof(y), n, m); ArgCheck.Contiguous(y, nameof(y));
        if (bias is not null) ArgCheck.Vector(bias, m, nameof(bias));
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pb = bias is null ? null : (float*)bias.Pointer;
        ParallelRows(n, m, i =>
        {
            float* xr = px + (long)i * m, yr = py + (long)i * m;
            if (pb != null)
            {
                TensorPrimitives.Add(new ReadOnlySpan<float>(xr, m), new ReadOnlySpan<float>(pb, m), new Span<float>(yr, m));
                xr = yr;   // the biased row, still in L1
            }
            GeluSpan(xr, yr, 0, m, tanhApproximation);
        });
    }

    /// <summary>row += delta + deltaBias (the sum of the two first, as the unfused GEMM bias then residual add round it):
    /// eight lanes at a time, two separate adds per lane (nothing to fuse), so each element gets the scalar tail's bits.</summary>
    static void AddResidualRow(float* row, float* delta, float* deltaBias, int c)
    {
        var r = new Span<float>(row, c);
        if (delta != null && deltaBias != null)
        {
            int j = 0;
            for (; j + 8 <= c; j += 8)
                (Vector256.Load(row + j) + (Vector256.Load(delta + j) + Vector256.Load(deltaBias + j))).Store(row + j);
            for (; j < c; j++) row[j] += delta[j] + deltaBias[j];
        }
        else if (delta != null) TensorPrimitives.Add(r, new ReadOnlySpan<float>(delta, c), r);
        else if (deltaBias != null) TensorPrimitives.Add(r, new ReadOnlySpan<float>(deltaBias, c), r);
    }

    static (int N, int C) CheckResidualNorm(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, Tensor y)
    {
        var (n, c) = ArgCheck.ContiguousMatrix(x, nameof(x));
        if (delta is not null) { ArgCheck.Shape(delta, nameof(delta), n, c); ArgCheck.Contiguous(delta, nameof(delta)); }
        if (deltaBias is not null) ArgCheck.Vector(deltaBias, c, nameof(deltaBias));
        ArgCheck.Vector(weight, c, nameof(weight));
        ArgCheck.Shape(y, nameof(y), n, c); ArgCheck.Contiguous(y, nameof(y));
        return (n, c);
    }
}
