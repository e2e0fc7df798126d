namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/swiglu.cu: one thread per element.</summary>
internal static class Swiglu
{
    public const string File = "swiglu.cu";

    [Kernels("swiglu_forward")]
    public static void Forward(IKernelLauncher l, nint gate, nint up, nint y, long n) =>
        l.Launch(File, "swiglu_forward", LaunchShape.PerElement(n), l.Args().Add(gate).Add(up).Add(y).Add(n));

    [Kernels("swiglu_backward")]
    public static void Backward(IKernelLauncher l, nint dy, nint gate, nint up, nint dGate, nint dUp, long n) =>
        l.Launch(File, "swiglu_backward", LaunchShape.PerElement(n), l.Args().Add(dy).Add(gate).Add(up).Add(dGate).Add(dUp).Add(n));
}
