using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

/// <summary>
/// Tape ops: each runs the backend's forward op, and when recording appends a closure running the backend's backward
/// op. Names follow the backend (and kernels/*.cu): Embedding, LayerNorm, RmsNorm, MatMul/Linear, Rotary, Attention,
/// Gelu, SwiGlu, Add, CrossEntropy. Backward ops accumulate into input gradients (IBackend's convention), so an input used twice
/// simply receives two contributions.
/// </summary>
public static partial class Ops
{
    /// <summary>(N) ids, weight (V, C) → (N, C).</summary>
    public static Var Embedding(this Tape tape, Tensor ids, Var weight)
    {
        var b = tape.Backend;
        var y = tape.Empty(DType.F32, (int)ids.Count, weight.Data.Size(1));
        b.EmbeddingForward(ids, weight.Data, y);
        var output = tape.Output(y, weight);
        if (output.RequiresGrad)
            tape.Record(() => { if (output.Grad is { } g) b.EmbeddingBackward(ids, g, weight.GradOrCreate(tape)); });
        return output;
    }

    /// <summary>LayerNorm over the last dim of x (N, C).</summary>
    public static Var LayerNorm(this Tape tape, Var x, Var weight, Var bias, float eps)
    {
        var b = tape.Backend;
        int n = x.Data.Size(0), c = x.Data.Size(1);
        var y = tape.Empty(DType.F32, n, c);
        var mean = tape.Empty(DType.F32, n);
        var rstd = tape.Empty(DType.F32, n);
        b.LayerNormForward(x.Data, weight.Data, bias.Data, eps, y, mean, rstd);
        var output = tape.Output(y, x, weight, bias);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                b.LayerNormBackward(
                    g, x.Data, weight.Data, mean, rstd, x.GradOrCreate(tape), weight.GradOrCreate(tape), bias.GradOrCreate(tape));
            });
        else tape.ReleaseTensors(mean, rstd);
        return output;
    }

    /// <summary>
    /// RMSNorm over the last dim of x: a matrix (N, C), or a (B, T, H, C) view normalised per head (QK-norm). The output
    /// is a new contiguous tensor of x's shape; the backward reads x and the saved rstd, never the output.
    /// </summary>
    public static Var RmsNorm(this Tape tape, Var x, Var weight, float eps)
    {
        var b = tape.Backend;
        var y = tape.Empty(DType.F32, x.Data.ShapeArray);
        var rstd = tape.Empty(DType.F32, checked((int)(x.Data.Count / x.Data.Size(-1))));   // (rows)
        b.RmsNormForward(x.Data, weight.Data, eps, y, rstd);
        var output = tape.Output(y, x, weight);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                b.RmsNormBackward(g, x.Data, weight.Data, rstd, x.GradOrCreate(tape), weight.GradOrCreate(tape));
            });
        else tape.ReleaseTensors(rstd);
        return output;
    }

    /// <summary>y (M, N) = op(a) @ op(b).</summary>
    public static Var MatMul(this Tape tape, Var a, bool transA, Var b, bool transB)
    {
        var be = tape.Backend;
        int m = transA ? a.Data.Size(1) : a.Data.Size(0);
        int n = transB ? b.Data.Size(0) : b.Data.Size(1);
        var y = tape.Empty(DType.F32, m, n);
        be.MatMul(a.Data, transA, b.Data, transB, y);
        var output = tape.Output(y, a, b);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                // y = A B (op'd): dA = g B^T, dB = A^T g, each mapped back through the transposes.
                if (a.RequiresGrad)
                {
                    if (!transA) be.MatMul(g, false, b.Data, !transB, a.GradOrCreate(tape), beta: 1f);
                    else be.MatMul(b.Data, transB, g, true, a.GradOrCreate(tape), beta: 1f);
                }
                if (b.RequiresGrad)
                {
                    if (!transB) be.MatMul(a.Data, !transA, g, false, b.GradOrCreate(tape), beta: 1f);
                    else be.MatMul(g, true, a.Data, transA, b.GradOrCreate(tape), beta: 1f);
                }
            });
        return output;
    }

    /// <summary>A linear layer y (N, out) = x (N, in) @ weight (out, in)^T + bias (out). weight may be a strided sub-matrix view.</summary>
    public static Var Linear(this Tape tape, Var x, Var weight, Var? bias)
    {
        var be = tape.Backend;
        var y = tape.Empty(DType.F32, x.Data.Size(0), weight.Data.Size(0));
        be.MatMul(x.Data, false, weight.Data, true, y, bias: bias?.Data);
        var output = bias is null ? tape.Output(y, x, weight) : tape.Output(y, x, weight, bias);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                if (x.RequiresGrad) be.MatMul(g, false, weight.Data, false, x.GradOrCreate(tape), beta: 1f);        // dx = g W
                if (weight.RequiresGrad) be.MatMul(g, true, x.Data, false, weight.GradOrCreate(tape), beta: 1f);    // dW = g^T x
                if (bias is { RequiresGrad: true }) be.SumRows(g, bias.GradOrCreate(tape));
            });
        return output;
    }

    /// <summary>A view of x's data (and, for the gradient, of x's gradient), e.g. q inside the fused qkv buffer.</summary>
    public static Var View(this Tape tape, Var x, Func<Tensor, Tensor> view) => new(x, view);

    /// <summary>GPT-NeoX partial rotary, IN PLACE on x (B, T, H, D). Safe because nothing saved x's pre-rotation values.</summary>
    public static Var Rotary(this Tape tape, Var x, Tensor cos, Tensor sin)
    {
        var b = tape.Backend;
        b.RotaryForward(x.Data, cos, sin);
        if (x.RequiresGrad && tape.IsRecording)
            tape.Record(() => { if (x.Grad is { } g) b.RotaryBackward(g, cos, sin); });
        return x;
    }

    /// <summary>
    /// Causal attention of q, k, v (B, T, H, D) views → (B, T, H, D) contiguous, forward and backward in
    /// <paramref name="precision"/> (<see cref="AttentionPrecision"/>).
    /// </summary>
    public static Var Attention(this Tape tape, Var q, Var k, Var v, float scale, AttentionPrecision precision = AttentionPrecision.F32)
    {
        var b = tape.Backend;
        int bs = q.Data.Size(0), t = q.Data.Size(1), h = q.Data.Size(2), d = q.Data.Size(3);
        var y = tape.Empty(DType.F32, bs, t, h, d);
        var lse = tape.Empty(DType.F32, bs, h, t);
        b.AttentionForward(q.Data, k.Data, v.Data, scale, y, lse, precision);
        var output = tape.Output(y, q, k, v);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                var (dq, dk, dv) = (q.GradOrCreate(tape), k.GradOrCreate(tape), v.GradOrCreate(tape));
                b.AttentionBackward(g, q.Data, k.Data, v.Data, y, lse, scale, dq, dk, dv, precision);
            });
        else tape.ReleaseTensors(lse);
        return output;
    }

    public static Var Gelu(this Tape tape, Var x, bool tanhApproximation)
    {
        var b = tape.Backend;
        var y = tape.Empty(DType.F32, x.Data.ShapeArray);
        b.GeluForward(x.Data, y, tanhApproximation);
        var output = tape.Output(y, x);
        if (output.RequiresGrad)
            tape.Record(() => { if (output.Grad is { } g) b.GeluBackward(g, x.Data, x.GradOrCreate(tape), tanhApproximation); });
        return output;
    }

    /// <summary>The gated MLP activation silu(gate) ⊙ up of two (N, M) tensors.</summary>
    public static Var SwiGlu(this Tape tape, Var gate, Var up)
    {
        var b = tape.Backend;
        var y = tape.Empty(DType.F32, gate.Data.ShapeArray);
        b.SwiGluForward(gate.Data, up.Data, y);
        var output = tape.Output(y, gate, up);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is { } g) b.SwiGluBackward(g, gate.Data, up.Data, gate.GradOrCreate(tape), up.GradOrCreate(tape));
            });
        return output;
    }

    public static Var Add(this Tape tape, Var a, Var c)
    {
        var b = tape.Backend;
        var y = tape.Empty(DType.F32, a.Data.ShapeArray);
        b.Add(a.Data, c.Data, y);
        var output = tape.Output(y, a, c);
        if (output.RequiresGrad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                if (a.RequiresGrad) b.Axpy(1f, g, a.GradOrCreate(tape));
                if (c.RequiresGrad) b.Axpy(1f, g, c.GradOrCreate(tape));
            });
        return output;
    }

    /// <summary>
    /// Mean cross-entropy of logits (N, V) against targets (N) over rows whose target is not <paramref name="ignoreIndex"/>;
    /// a scalar Var. Loss and dlogits come from one fused pass; the backward scales dlogits by the upstream gradient.
    /// </summary>
    public static Var CrossEntropy(this Tape tape, Var logits, Tensor targets, int ignoreIndex = -100)
    {
        var b = tape.Backend;
        int n = logits.Data.Size(0), v = logits.Data.Size(1);
        int valid = CountValid(targets, ignoreIndex);
        if (valid == 0) throw new ArgumentException("cross-entropy: every target is the ignore index");
        var losses = tape.Empty(DType.F32, n);
        bool grad = tape.IsRecording && logits.RequiresGrad;
        Tensor? dLogits = grad ? tape.Zeros(DType.F32, n, v) : null;
        b.CrossEntropy(logits.Data, targets, ignoreIndex, losses, dLogits, 1f / valid);
        var output = tape.FusedLossOutput((float)(b.Sum(losses) / valid), logits, dLogits);
        tape.ReleaseTensors(losses);
        return output;
    }

    /// <summary>
    /// The scalar output of a loss whose gradient was computed in its forward pass (fused cross-entropy, distillation):
    /// the backward only scales that gradient by the upstream one — or, when that is 1 and logits has no gradient yet,
    /// hands the buffer over as it is.
    /// </summary>
    static Var FusedLossOutput(this Tape tape, float value, Var logits, Tensor? dLogits)
    {
        var b = tape.Backend;
        var loss = tape.Empty(DType.F32, 1);
        b.Fill(loss, value);
        var output = tape.Output(loss, logits);
        if (dLogits is not null)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                float upstream = g.ToFloatArray()[0];
                if (upstream == 1f && logits.TryAdoptGrad(dLogits)) return;
                b.Axpy(upstream, dLogits, logits.GradOrCreate(tape));
            });
        return output;
    }

    static int CountValid(Tensor targets, int ignoreIndex)
    {
        int count = 0;
        foreach (var t in targets.ToIntArray()) if (t != ignoreIndex) count++;
        return count;
    }

    /// <summary>Frees tape-owned scratch right away when nothing will need it (no-grad mode or a value the backward does not
    /// use).</summary>
    static void ReleaseTensors(this Tape tape, params Tensor[] tensors) => tape.ReleaseScratch(tensors);
}
