namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/rotary.cu: one thread per rotated pair.</summary>
internal static class Rotary
{
    public const string File = "rotary.cu";

    [Kernels("rotary_apply")]
    public static void Apply(
        IKernelLauncher l, nint x, nint cos, nint sin, int b, int t, int h, int half, long strideB, long strideT, long strideH,
        long ldTable, float sign) =>
        l.Launch(File, "rotary_apply", LaunchShape.PerElement((long)b * t * h * half),
            l.Args().Add(x).Add(cos).Add(sin).Add(b).Add(t).Add(h).Add(half).Add(strideB).Add(strideT).Add(strideH).Add(ldTable).Add(sign));
}
