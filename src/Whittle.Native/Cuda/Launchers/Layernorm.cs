namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/layernorm.cu.</summary>
internal static class Layernorm
{
    public const string File = "layernorm.cu";

    [Kernels("layernorm_forward")]
    public static void Forward(
        IKernelLauncher l, nint x, nint weight, nint bias, nint y, nint mean, nint rstd, int n, int c, long ldx, long ldy, float eps) =>
        l.Launch(File, "layernorm_forward", LaunchShape.PerRow(n),
            l.Args().Add(x).Add(weight).Add(bias).Add(y).Add(mean).Add(rstd).Add(n).Add(c).Add(ldx).Add(ldy).Add(eps));

    [Kernels("layernorm_backward_input")]
    public static void BackwardInput(
        IKernelLauncher l, nint dy, nint x, nint weight, nint mean, nint rstd, nint dx, int n, int c, long lddy, long ldx,
        long lddx) =>
        l.Launch(File, "layernorm_backward_input", LaunchShape.PerRow(n),
            l.Args().Add(dy).Add(x).Add(weight).Add(mean).Add(rstd).Add(dx).Add(n).Add(c).Add(lddy).Add(ldx).Add(lddx));

    /// <summary>Column sums over row chunks (<see cref="Reduce.ColumnChunks"/>), accumulated with atomics.</summary>
    [Kernels("layernorm_backward_params")]
    public static void BackwardParams(
        IKernelLauncher l, nint dy, nint x, nint mean, nint rstd, nint dWeight, nint dBias, int n, int c, long lddy,
        long ldx)
    {
        var (shape, chunk) = Reduce.ColumnChunks(n, c);
        l.Launch(File, "layernorm_backward_params", shape,
            l.Args().Add(dy).Add(x).Add(mean).Add(rstd).Add(dWeight).Add(dBias).Add(n).Add(c).Add(chunk).Add(lddy).Add(ldx));
    }
}
