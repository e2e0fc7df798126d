namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/embedding.cu: one block per token.</summary>
internal static class Embedding
{
    public const string File = "embedding.cu";

    [Kernels("embedding_forward")]
    public static void Forward(
        IKernelLauncher l, nint ids, nint weight, nint output, int n, int c, int v, long ldWeight, long ldOutput, nint errorWord) =>
        l.Launch(File, "embedding_forward", LaunchShape.PerRow(n),
            l.Args().Add(ids).Add(weight).Add(output).Add(n).Add(c).Add(v).Add(ldWeight).Add(ldOutput).Add(errorWord));

    [Kernels("embedding_backward")]
    public static void Backward(
        IKernelLauncher l, nint ids, nint dOutput, nint dWeight, int n, int c, int v, long ldWeight, long ldOutput, nint errorWord) =>
        l.Launch(File, "embedding_backward", LaunchShape.PerRow(n),
            l.Args().Add(ids).Add(dOutput).Add(dWeight).Add(n).Add(c).Add(v).Add(ldWeight).Add(ldOutput).Add(errorWord));
}
