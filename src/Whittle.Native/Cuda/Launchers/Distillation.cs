namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/distillation.cu.</summary>
internal static class Distillation
{
    public const string File = "distillation.cu";

    /// <summary>One block per row; a top-k teacher needs a (V/32)-word bitmap of dynamic shared memory.</summary>
    public static LaunchShape Shape(int rows, int vocab, bool topK) =>
        LaunchShape.PerRow(rows, topK ? (vocab + 31) / 32 * sizeof(uint) : 0);

    [Kernels("distillation")]
    public static void Loss(
        IKernelLauncher l, LaunchShape shape, nint student, long ldStudent, nint teacher, long ldTeacher, nint topLogProbs,
        nint topIds, nint tailMass, int k, nint targets, nint losses, nint dStudent, long ldDStudent, int n, int v, int kind,
            float temperature,
        float alpha, float beta, int ignoreIndex, float gradScale, nint errorWord) =>
        l.Launch(File, "distillation", shape, l.Args().Add(student).Add(ldStudent).Add(teacher).Add(ldTeacher).Add(topLogProbs).Add(topIds)
            .Add(tailMass).Add(k).Add(targets).Add(losses).Add(dStudent).Add(ldDStudent).Add(n).Add(v).Add(kind).Add(temperature).Add(alpha)
            .Add(beta).Add(ignoreIndex).Add(gradScale).Add(errorWord));
}
