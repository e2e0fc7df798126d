using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

public static partial class Ops
{
    /// <summary>
    /// A linear layer in bf16 mixed precision (Model/Precision.cs): y (N, out) = bf16(x) @ weightBf16ᵀ + bias, f32 out.
    /// <paramref name="weight"/> is the f32 master (its gradient receives dW in f32); <paramref name="weightBf16"/> is its
    /// bf16 copy (same shape, possibly the same sub-matrix view). The backward rounds the upstream gradient to bf16 once
    /// for both GEMMs (dx += bf16(g) W, dW += bf16(g)ᵀ bf16(x)); the bias gradient sums the f32 g.
    /// Only the bf16 copy of x is kept for the backward pass, so a caller may <see cref="Tape.Discard"/> x's f32 data
    /// when nothing else reads it.
    /// </summary>
    public static Var LinearBf16(this Tape tape, Var x, Var weight, Tensor weightBf16, Var? bias)
    {
        var be = tape.Backend;
        if (weightBf16.DType != DType.BF16 || !weightBf16.SameShape(weight.Data))
            throw new ArgumentException($"LinearBf16: the weight's bf16 copy {weightBf16.Describe()} must be bf16 with the weight's " +
                $"shape {weight.Data.Describe()}");
        int n = x.Data.Size(0), outF = weight.Data.Size(0);
        var xb = RoundToBf16(tape, x.Data);                                             // (N, in) bf16
        var y = tape.Empty(DType.F32, n, outF);
        be.MatMul(xb, false, weightBf16, true, y, bias: bias?.Data);
        var output = bias is null ? tape.Output(y, x, weight) : tape.Output(y, x, weight, bias);
        if (!output.RequiresGrad) { tape.ReleaseTensors(xb); return output; }
        tape.Record(() =>
        {
            if (output.Grad is not { } g) return;
            var gb = RoundToBf16(tape, g);                                              // (N, out) bf16
            if (x.RequiresGrad) be.MatMul(gb, false, weightBf16, false, x.GradOrCreate(tape), beta: 1f);       // dx = g W
            if (weight.RequiresGrad) be.MatMul(gb, true, xb, false, weight.GradOrCreate(tape), beta: 1f);      // dW = g^T x
            if (bias is { RequiresGrad: true }) be.SumRows(g, bias.GradOrCreate(tape));
            tape.ReleaseTensors(gb, xb);
        });
        return output;
    }

    /// <summary>A tape-owned bf16 copy of an f32 tensor, rounded to nearest even (the GEMM-input cast of bf16 mode).</summary>
    public static Tensor RoundToBf16(this Tape tape, Tensor f32)
    {
        var b = tape.Empty(DType.BF16, f32.ShapeArray);
        tape.Backend.Copy(f32, b);
        return b;
    }
}
