using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// The fused no-grad ops of evaluation (IBackend "fused no-grad ops") on the GPU, composed from the kernels of the ops
/// they fuse (elementwise.cu's add and add_bias_rows, layernorm.cu, rmsnorm.cu, gelu.cu): the fusion is the CPU's (one
/// pass over a row while it is in L1); on a GPU these passes are bandwidth-bound launches that a dedicated kernel would
/// merge, left for when evaluation on the GPU is profiled. Results: the unfused ops', with the residual sum associated
/// as (x + delta) + deltaBias (within the parity harness's f32 tolerance of the CPU's x + (delta + deltaBias)).
/// </summary>
public sealed unsafe partial class CudaBackend
{
    public void AddLayerNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, Tensor bias, float eps, Tensor y)
    {
        AddResidual(x, delta, deltaBias);
        using var mean = Empty(DType.F32, x.Size(0));   // (N) statistics the no-grad caller does not keep
        using var rstd = Empty(DType.F32, x.Size(0));   // (N)
        LayerNormForward(x, weight, bias, eps, y, mean, rstd);
    }

    public void AddRmsNormForward(Tensor x, Tensor? delta, Tensor? deltaBias, Tensor weight, float eps, Tensor y)
    {
        AddResidual(x, delta, deltaBias);
        using var rstd = Empty(DType.F32, x.Size(0));   // (N)
        RmsNormForward(x, weight, eps, y, rstd);
    }

    public void BiasGeluForward(Tensor x, Tensor? bias, Tensor y, bool tanhApproximation)
    {
        Enter("BiasGeluForward");
        F32(x, "x", 2); Contiguous(x, "x"); F32(y, "y", 2); Shape(y, "y", _op, x.Size(0), x.Size(1)); Contiguous(y, "y");
        if (bias is not null)
        {
            Vector(bias, "bias", x.Size(1));
            if (y.Pointer != x.Pointer) Copy(x, y);
            Launchers.Elementwise.AddBiasRows(this, y.Pointer, bias.Pointer, y.Size(0), y.Size(1), y.Size(1));
            x = y;
        }
        GeluForward(x, y, tanhApproximation);
    }

    /// <summary>x (N, C) contiguous += delta (N, C), then += deltaBias (C) on every row; either may be null.</summary>
    void AddResidual(Tensor x, Tensor? delta, Tensor? deltaBias)
    {
        Enter("AddResidual");
        F32(x, "x", 2); Contiguous(x, "x");
        if (delta is not null) Add(x, delta, x);
        if (deltaBias is null) return;
        Enter("AddResidual");
        Vector(deltaBias, "deltaBias", x.Size(1));
        Launchers.Elementwise.AddBiasRows(this, x.Pointer, deltaBias.Pointer, x.Size(0), x.Size(1), x.Size(1));
    }
}
