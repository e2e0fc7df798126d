namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/gelu.cu: one thread per element.</summary>
internal static class Gelu
{
    public const string File = "gelu.cu";

    [Kernels("gelu_forward")]
    public static void Forward(IKernelLauncher l, nint x, nint y, long n, bool tanhApproximation) =>
        l.Launch(File, "gelu_forward", LaunchShape.PerElement(n), l.Args().Add(x).Add(y).Add(n).Add(tanhApproximation ? 1 : 0));

    [Kernels("gelu_backward")]
    public static void Backward(IKernelLauncher l, nint dy, nint x, nint dx, long n, bool tanhApproximation) =>
        l.Launch(File, "gelu_backward", LaunchShape.PerElement(n), l.Args().Add(dy).Add(x).Add(dx).Add(n).Add(tanhApproximation ? 1 : 0));
}
