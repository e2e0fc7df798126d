using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// The fused distillation loss on the GPU (kernels/distillation.cu): argument checks on the host, then one block per row.
/// Policy: the same contract as CpuBackend.Distillation; bad targets or top-k ids are found on the device and reported
/// at the next synchronisation point, like cross-entropy's.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    public void Distillation(Tensor studentLogits, DistillTeacher teacher, Tensor targets, in DistillSettings settings, Tensor losses, Tensor? dStudent)
    {
        Enter("Distillation");
        settings.Validate();
        F32(studentLogits, "studentLogits", 2);
        int n = studentLogits.Size(0), v = studentLogits.Size(1);
        teacher.Check(n, v);
        long ldt = 0;
        int k = teacher.K;
        if (teacher.IsTopK) { OnDevice(teacher.TopLogProbs!, "teacher top log-probs"); OnDevice(teacher.TopIds!, "teacher top ids"); OnDevice(teacher.TailMass!, "teacher tail mass"); }
        else { OnDevice(teacher.Logits!, "teacher logits"); ldt = Ld(teacher.Logits!, "teacher logits"); }
        OnDevice(targets, "targets");
        if (targets.DType != DType.I32 || targets.Rank != 1 || targets.Size(0) != n) throw new ArgumentException($"Distillation: targets {targets.Describe()} must be i32 ({n})");
        Contiguous(targets, "targets");
        F32(losses, "losses", 2); Shape(losses, "losses", _op, n, 2); Contiguous(losses, "losses");
        long ldd = 0;
        if (dStudent is not null) { F32(dStudent, "dStudent", 2); Shape(dStudent, "dStudent", _op, n, v); ldd = Ld(dStudent, "dStudent"); }
        int bitmapBytes = teacher.IsTopK ? (v + 31) / 32 * 4 : 0;
        Launch("distillation.cu", "distillation", n, 1, Threads, bitmapBytes,
            Args().Add(studentLogits.Pointer).Add(Ld(studentLogits, "studentLogits")).Add(teacher.Logits?.Pointer ?? 0).Add(ldt)
                .Add(teacher.TopLogProbs?.Pointer ?? 0).Add(teacher.TopIds?.Pointer ?? 0).Add(teacher.TailMass?.Pointer ?? 0).Add(k)
                .Add(targets.Pointer).Add(losses.Pointer).Add(dStudent?.Pointer ?? 0).Add(ldd).Add(n).Add(v)
                .Add((int)settings.Kind).Add(settings.Temperature).Add(settings.Alpha).Add(settings.Beta).Add(settings.IgnoreIndex)
                .Add(settings.GradScale).Add(_errorWord));
    }
}
