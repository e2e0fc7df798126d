using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

/// <summary>Supplies the teacher for rows [row0, row0 + rows) of a chunked distillation loss and calls <c>use</c> with it;
/// whatever it allocated for the chunk it frees after <c>use</c> returns.</summary>
public delegate void TeacherRows(int row0, int rows, Action<DistillTeacher> use);

/// <summary>
/// The LM head fused with its loss over chunks of rows, so the (N, V) logits (and their gradient) are never held whole:
/// for each chunk of R rows, logits (R, V) = h_c Wᵀ, the fused loss writes the chunk's per-row losses and d logits, and
/// right away dh_c = dlogits W and dW += dlogitsᵀ h_c. Only (R, V) logits + (R, V) d logits exist at a time; the op keeps
/// dh (N, d) and dW (V, d) for its backward step, which only scales them by the upstream gradient.
/// Policy:
///  - chunks are of rows, not of the vocabulary: each row's softmax then stays one fused pass over a whole row (the same
///    kernels, bit for bit the same per-row losses as the unchunked op), with no second pass to merge per-chunk
///    log-sum-exps; the memory bound is the same, R·V instead of N·V (the point of chunking), for any R >= 1;
///  - the gradient is computed in the forward pass (no recomputation of the logits in the backward pass), so a chunked
///    step does the same GEMMs as an unchunked one: the cost is R-row GEMMs instead of one N-row GEMM;
///  - in bf16 mode (<paramref name="weightBf16"/> given) the GEMMs are those of <see cref="LinearBf16"/>: h and each d logits
///    chunk rounded to bf16, f32 accumulation, dW in f32;
///  - loss = mean over non-ignored rows, as <see cref="CrossEntropy"/> and <see cref="Distillation"/>.
/// </summary>
public static partial class Ops
{
    /// <summary>Chunked LM head + cross-entropy: the value and gradients of CrossEntropy(Linear(hidden, weight)).</summary>
    public static Var ChunkedCrossEntropy(
        this Tape tape, Var hidden, Var weight, Tensor? weightBf16, Tensor targets, int chunkRows, int ignoreIndex = -100)
    {
        int valid = CountValid(targets, ignoreIndex);
        if (valid == 0) throw new ArgumentException("cross-entropy: every target is the ignore index");
        var b = tape.Backend;
        var losses = tape.Empty(DType.F32, hidden.Data.Size(0));
        var output = ChunkedHead(tape, hidden, weight, weightBf16, chunkRows,
            (logits, r0, rows, dLogits) =>
                b.CrossEntropy(logits, targets.Narrow(0, r0, rows), ignoreIndex, losses.Narrow(0, r0, rows), dLogits, 1f / valid),
            () => b.Sum(losses) / valid);
        tape.ReleaseTensors(losses);
        return output;
    }

    /// <summary>Chunked LM head + distillation loss: the value and gradients of Distillation(Linear(hidden, weight), teacher).</summary>
    public static Var ChunkedDistillation(this Tape tape, Var hidden, Var weight, Tensor? weightBf16, TeacherRows teacher, Tensor targets,
        DistillSettings settings, int chunkRows, out DistillParts parts)
    {
        int n = hidden.Data.Size(0);
        int valid = CountValid(targets, settings.IgnoreIndex);
        if (valid == 0) throw new ArgumentException("distillation: every target is the ignore index");
        var b = tape.Backend;
        var losses = tape.Empty(DType.F32, n, 2);     // (N, 2): CE, KD per row
        var s = settings with { GradScale = 1f / valid };
        double ce = 0, kd = 0;
        var output = ChunkedHead(tape, hidden, weight, weightBf16, chunkRows,
            (logits, r0, rows, dLogits) =>
                teacher(r0, rows, t => b.Distillation(logits, t, targets.Narrow(0, r0, rows), s, losses.Narrow(0, r0, rows), dLogits)),
            () =>
            {
                var perRow = losses.ToFloatArray();
                for (int i = 0; i < n; i++) { ce += perRow[2 * i]; kd += perRow[2 * i + 1]; }   // ignored rows hold zeros
                return settings.Alpha * ce / valid + settings.Beta * kd / valid;
            });
        parts = new DistillParts(ce / valid, kd / valid, valid);
        tape.ReleaseTensors(losses);
        return output;
    }

    /// <summary>
    /// The shared loop: hidden (N, d) row-dense, weight (V, d) row-dense (a sub-network view is fine); lossOfChunk(logits
    /// (R, V), row0, R, dLogits (R, V) zeroed or null) fills the chunk's losses and accumulates its gradient; value() is
    /// read once every chunk is done.
    /// </summary>
    static Var ChunkedHead(
        Tape tape, Var hidden, Var weight, Tensor? weightBf16, int chunkRows, Action<Tensor, int, int, Tensor?> lossOfChunk,
        Func<double> value)
    {
        var be = tape.Backend;
        var (n, d) = ArgCheck.Matrix(hidden.Data, "hidden");
        var (v, dw) = ArgCheck.Matrix(weight.Data, "weight");
        if (dw != d)
            throw new ArgumentException($"LM head: hidden {hidden.Data.Describe()} and weight {weight.Data.Describe()} differ in width");
        if (chunkRows < 1) throw new ArgumentOutOfRangeException(nameof(chunkRows), $"chunk rows must be at least 1, got {chunkRows}");
        if (weightBf16 is not null && (weightBf16.DType != DType.BF16 || !weightBf16.SameShape(weight.Data)))
            throw new ArgumentException($"LM head: the weight's bf16 copy {weightBf16.Describe()} must be bf16 with the weight's shape " +
                $"{weight.Data.Describe()}");
        int r = Math.Min(chunkRows, n);
        bool recording = tape.IsRecording;
        var dHidden = recording && hidden.RequiresGrad ? tape.Empty(DType.F32, n, d) : null;   // (N, d) every row written once
        var dWeight = recording && weight.RequiresGrad ? tape.Zeros(DType.F32, v, d) : null;   // (V, d) accumulated over chunks
        bool grad = dHidden is not null || dWeight is not null;
        var hb = weightBf16 is null ? null : tape.RoundToBf16(hidden.Data);                     // (N, d) bf16
        var logits = tape.Empty(DType.F32, r, v);                                             // (R, V)
        var dLogits = grad ? tape.Empty(DType.F32, r, v) : null;                              // (R, V)
        var dLogitsBf16 = grad && hb is not null ? tape.Empty(DType.BF16, r, v) : null;       // (R, V)
        for (int r0 = 0; r0 < n; r0 += r)
        {
            int rows = Math.Min(r, n - r0);
            var lc = logits.Narrow(0, 0, rows);
            if (hb is null) be.MatMul(hidden.Data.Narrow(0, r0, rows), false, weight.Data, true, lc);
            else be.MatMul(hb.Narrow(0, r0, rows), false, weightBf16!, true, lc);
            var dc = dLogits?.Narrow(0, 0, rows);
            if (dc is not null) be.Fill(dc, 0f);
            lossOfChunk(lc, r0, rows, dc);
            if (dc is null) continue;
            if (hb is null)
            {
                // dh_c = g W
                if (dHidden is not null) be.MatMul(dc, false, weight.Data, false, dHidden.Narrow(0, r0, rows));
                // dW += gᵀ h_c
                if (dWeight is not null) be.MatMul(dc, true, hidden.Data.Narrow(0, r0, rows), false, dWeight, beta: 1f);
            }
            else
            {
                var gb = dLogitsBf16!.Narrow(0, 0, rows);
                be.Copy(dc, gb);
                if (dHidden is not null) be.MatMul(gb, false, weightBf16!, false, dHidden.Narrow(0, r0, rows));
                if (dWeight is not null) be.MatMul(gb, true, hb.Narrow(0, r0, rows), false, dWeight, beta: 1f);
            }
        }
        tape.ReleaseScratch(logits);
        if (dLogits is not null) tape.ReleaseScratch(dLogits);
        if (dLogitsBf16 is not null) tape.ReleaseScratch(dLogitsBf16);
        if (hb is not null) tape.ReleaseScratch(hb);

        var loss = tape.Empty(DType.F32, 1);
        be.Fill(loss, (float)value());
        var output = tape.Output(loss, hidden, weight);
        if (grad)
            tape.Record(() =>
            {
                if (output.Grad is not { } g) return;
                float upstream = g.ToFloatArray()[0];
                if (dHidden is not null && !(upstream == 1f && hidden.TryAdoptGrad(dHidden)))
                    be.Axpy(upstream, dHidden, hidden.GradOrCreate(tape));
                if (dWeight is not null) be.Axpy(upstream, dWeight, weight.GradOrCreate(tape));
            });
        return output;
    }
}
