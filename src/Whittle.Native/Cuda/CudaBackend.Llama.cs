using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// The Llama family's ops on the GPU: RMSNorm (kernels/rmsnorm.cu: rows of a matrix, or the heads of a (B, T, H, D) view
/// for QK-norm) and the fused SwiGLU activation (kernels/swiglu.cu). Policy: the contract of CpuBackend.Llama.cs, the
/// shapes and layouts checked on the host; dWeight by fixed-order partial sums (no atomics), so results repeat exactly.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    // ---------------------------------------------------------------- rmsnorm

    /// <summary>
    /// A tensor's rows for rmsnorm.cu: a row-dense matrix (N, C) [ld] as the view B = N, T = H = 1, or a (B, T, H, C) view
    /// with a unit last stride (rows in (b, t, h) order).
    /// </summary>
    readonly record struct NormRows(int Rows, int T, int H, int C, Bthd Strides);

    NormRows Rows(Tensor x, string what)
    {
        F32(x, what);
        if (x.Rank == 2) return new NormRows(x.Size(0), 1, 1, x.Size(1), new Bthd(Ld(x, what), 0, 0));
        if (x.Rank != 4) throw new ArgumentException($"{_op}: {what} {x.Describe()} must be a matrix (N, C) or a (B, T, H, C) view");
        int b = x.Size(0), t = x.Size(1), h = x.Size(2), c = x.Size(3);
        return new NormRows(checked(b * t * h), t, h, c, Bthd4(x, what, b, t, h, c));
    }

    void SameShape(Tensor x, Tensor y, string what)
    {
        if (!x.SameShape(y)) throw new ArgumentException($"{_op}: {what} is {y.Describe()}, expected the shape of {x.Describe()}");
    }

    public void RmsNormForward(Tensor x, Tensor weight, float eps, Tensor y, Tensor rstd)
    {
        Enter("RmsNormForward");
        var xs = Rows(x, "x");
        Vector(weight, "weight", xs.C);
        F32(y, "y"); SameShape(x, y, "y"); Contiguous(y, "y");
        Vector(rstd, "rstd", xs.Rows);
        Launchers.Rmsnorm.Forward(this, x.Pointer, weight.Pointer, y.Pointer, rstd.Pointer, xs.Rows, xs.T, xs.H, xs.C, xs.Strides, eps);
    }

    public void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight)
    {
        Enter("RmsNormBackward");
        var xs = Rows(x, "x");
        SameShape(x, dy, "dy"); SameShape(x, dx, "dx");
        var dys = Rows(dy, "dy"); var dxs = Rows(dx, "dx");
        Vector(weight, "weight", xs.C); Vector(dWeight, "dWeight", xs.C); Vector(rstd, "rstd", xs.Rows);
        Launchers.Rmsnorm.BackwardInput(this, dy.Pointer, x.Pointer, weight.Pointer, rstd.Pointer, dx.Pointer, xs.Rows, xs.T, xs.H, xs.C,
            dys.Strides, xs.Strides, dxs.Strides);
        if (xs.Rows == 0 || xs.C == 0) return;
        int chunks = Launchers.Rmsnorm.Chunks(xs.Rows, xs.C).Shape.GridY;
        using var partials = Empty(DType.F32, chunks, xs.C);   // (chunks, C) Σ dy ⊙ x̂ per row chunk, summed in chunk order
        Launchers.Rmsnorm.BackwardPartials(this, dy.Pointer, x.Pointer, rstd.Pointer, partials.Pointer, xs.Rows, xs.T, xs.H, xs.C,
            dys.Strides, xs.Strides);
        Launchers.Rmsnorm.BackwardWeight(this, partials.Pointer, dWeight.Pointer, chunks, xs.C);
    }

    // ---------------------------------------------------------------- swiglu

    public void SwiGluForward(Tensor gate, Tensor up, Tensor y)
    {
        Enter("SwiGluForward");
        SameGated(gate, "gate", up, "up"); SameGated(gate, "gate", y, "y");
        Launchers.Swiglu.Forward(this, gate.Pointer, up.Pointer, y.Pointer, gate.Count);
    }

    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp)
    {
        Enter("SwiGluBackward");
        SameGated(gate, "gate", up, "up"); SameGated(gate, "gate", dy, "dy");
        SameGated(gate, "gate", dGate, "dGate"); SameGated(gate, "gate", dUp, "dUp");
        Launchers.Swiglu.Backward(this, dy.Pointer, gate.Pointer, up.Pointer, dGate.Pointer, dUp.Pointer, gate.Count);
    }

    /// <summary>SwiGLU's operands: f32, contiguous, the same shape (not only the same count, as the CPU backend requires).</summary>
    void SameGated(Tensor gate, string gn, Tensor other, string on)
    {
        SameDense(gate, gn, other, on);
        SameShape(gate, other, on);
    }
}
