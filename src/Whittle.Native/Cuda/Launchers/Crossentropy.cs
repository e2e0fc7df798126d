namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/crossentropy.cu.</summary>
internal static class Crossentropy
{
    public const string File = "crossentropy.cu";

    [Kernels("cross_entropy")]
    public static void CrossEntropy(IKernelLauncher l, nint logits, nint targets, nint losses, nint dLogits, int n, int v, long ldLogits,
        long ldDLogits, int ignoreIndex, float gradScale, nint errorWord) =>
        l.Launch(File, "cross_entropy", LaunchShape.PerRow(n), l.Args().Add(logits).Add(targets).Add(losses).Add(dLogits).Add(n).Add(v)
            .Add(ldLogits).Add(ldDLogits).Add(ignoreIndex).Add(gradScale).Add(errorWord));
}
