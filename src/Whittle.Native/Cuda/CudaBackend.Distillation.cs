using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// The fused distillation loss on the GPU (kernels/distillation.cu): argument checks on the host, then one block per row.
/// Policy: the same contract as CpuBackend.Distillation; bad targets or top-k ids are found on the device and reported
/// at the next synchronisation point, like cross-entropy's.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    public void Distillation(
        Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent)
    {
        Enter("Distillation");
        settings.Validate();
        F32(studentLogits, "studentLogits", 2);
        int n = studentLogits.Size(0), v = studentLogits.Size(1);
        teacher.Check(n, v);
        long ldt = 0;
        int k = teacher.K;
        if (teacher.IsTopK)
        {
            OnDevice(teacher.TopLogProbs!, "teacher top log-probs");
            OnDevice(teacher.TopIds!, "teacher top ids");
            OnDevice(teacher.TailMass!, "teacher tail mass");
        }
        else { OnDevice(teacher.Logits!, "teacher logits"); ldt = Ld(teacher.Logits!, "teacher logits"); }
        OnDevice(targets, "targets");
        if (targets.DType != DType.I32 || targets.Rank != 1 || targets.Size(0) != n)
            throw new ArgumentException($"Distillation: targets {targets.Describe()} must be i32 ({n})");
        Contiguous(targets, "targets");
        F32(losses, "losses", 2); Shape(losses, "losses", _op, n, 2); Contiguous(losses, "losses");
        long ldd = 0;
        if (dStudent is not null) { F32(dStudent, "dStudent", 2); Shape(dStudent, "dStudent", _op, n, v); ldd = Ld(dStudent, "dStudent"); }
        Launchers.Distillation.Loss(
            this, Launchers.Distillation.Shape(n, v, teacher.IsTopK), studentLogits.Pointer, Ld(studentLogits, "studentLogits"),
            teacher.Logits?.Pointer ?? 0, ldt, teacher.TopLogProbs?.Pointer ?? 0, teacher.TopIds?.Pointer ?? 0,
                teacher.TailMass?.Pointer ?? 0, k,
            targets.Pointer, losses.Pointer, dStudent?.Pointer ?? 0, ldd, n, v, (int)settings.Kind, settings.Temperature, settings.Alpha,
                settings.Beta,
            settings.IgnoreIndex, settings.GradScale, _errorWord);
    }
}
