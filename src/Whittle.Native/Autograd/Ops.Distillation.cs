using Whittle.Native.Tensors;

namespace Whittle.Native.Autograd;

/// <summary>The two parts of a distillation loss, each a mean over the rows that are not ignored, for logging.</summary>
public readonly record struct DistillParts(double CrossEntropy, double Distillation, int Rows);

/// <summary>
/// The distillation tape op. Policy: the teacher is a plain tensor (no gradient flows to it); the loss is
/// mean over non-ignored rows of (α·CE + β·KD) with CE and KD as defined by IBackend.Distillation, and its gradient is
/// computed in the same fused call as the forward (then scaled by the upstream gradient in the backward closure).
/// </summary>
public static partial class Ops
{
    /// <summary>
    /// Scalar loss from student logits (N, V) and a teacher (full logits or top-k) for targets (N) i32; parts holds the
    /// mean CE and mean KD over the non-ignored rows. settings.GradScale is not used: the op's gradient scale is 1 / rows.
    /// </summary>
    public static Var Distillation(
        this Tape tape, Var studentLogits, DistillTeacher teacher, Tensor targets, DistillSettings settings, out DistillParts parts)
    {
        var b = tape.Backend;
        int n = studentLogits.Data.Size(0), v = studentLogits.Data.Size(1);
        int valid = CountValid(targets, settings.IgnoreIndex);
        if (valid == 0) throw new ArgumentException("distillation: every target is the ignore index");
        var losses = tape.Empty(DType.F32, n, 2);     // (N, 2): CE, KD per row
        bool grad = tape.IsRecording && studentLogits.RequiresGrad;
        Tensor? dStudent = grad ? tape.Zeros(DType.F32, n, v) : null;
        b.Distillation(studentLogits.Data, teacher, targets, settings with { GradScale = 1f / valid }, losses, dStudent);
        var perRow = losses.ToFloatArray();
        double ce = 0, kd = 0;
        for (int i = 0; i < n; i++) { ce += perRow[2 * i]; kd += perRow[2 * i + 1]; }   // ignored rows hold zeros
        parts = new DistillParts(ce / valid, kd / valid, valid);
        var output = tape.FusedLossOutput(
            (float)(settings.Alpha * parts.CrossEntropy + settings.Beta * parts.Distillation), studentLogits, dStudent);
        tape.ReleaseTensors(losses);
        return output;
    }
}
