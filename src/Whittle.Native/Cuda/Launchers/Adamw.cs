namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/adamw.cu.</summary>
internal static class Adamw
{
    public const string File = "adamw.cu";

    [Kernels("adamw_step")]
    public static void Step(IKernelLauncher l, nint param, nint grad, nint m, nint v, long count, long decayCount, float lr, float beta1,
        float beta2, float eps, float weightDecay, float biasCorrection1, float biasCorrection2, float gradScale) =>
        l.Launch(File, "adamw_step", LaunchShape.PerElement(count), l.Args().Add(param).Add(grad).Add(m).Add(v).Add(count).Add(decayCount)
            .Add(lr).Add(beta1).Add(beta2).Add(eps).Add(weightDecay).Add(biasCorrection1).Add(biasCorrection2).Add(gradScale));
}
