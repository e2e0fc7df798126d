namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/elementwise.cu: one thread per element.</summary>
internal static class Elementwise
{
    public const string File = "elementwise.cu";

    [Kernels("add_f32")]
    public static void Add(IKernelLauncher l, nint a, nint b, nint y, long n) =>
        l.Launch(File, "add_f32", LaunchShape.PerElement(n), l.Args().Add(a).Add(b).Add(y).Add(n));

    [Kernels("axpy_f32")]
    public static void Axpy(IKernelLauncher l, float alpha, nint x, nint y, long n) =>
        l.Launch(File, "axpy_f32", LaunchShape.PerElement(n), l.Args().Add(alpha).Add(x).Add(y).Add(n));

    [Kernels("axpy_rows_f32")]
    public static void AxpyRows(IKernelLauncher l, float alpha, nint x, long ldx, nint y, long ldy, int m, int n) =>
        l.Launch(File, "axpy_rows_f32", LaunchShape.PerElement((long)m * n),
            l.Args().Add(alpha).Add(x).Add(ldx).Add(y).Add(ldy).Add(m).Add(n));

    [Kernels("scale_f32")]
    public static void Scale(IKernelLauncher l, nint x, float alpha, long n) =>
        l.Launch(File, "scale_f32", LaunchShape.PerElement(n), l.Args().Add(x).Add(alpha).Add(n));

    [Kernels("fill_u16")]
    public static void FillU16(IKernelLauncher l, nint x, ushort bits, long n) =>
        l.Launch(File, "fill_u16", LaunchShape.PerElement(n), l.Args().Add(x).Add(bits).Add(n));

    [Kernels("add_bias_rows")]
    public static void AddBiasRows(IKernelLauncher l, nint c, nint bias, int m, int n, long ldc) =>
        l.Launch(File, "add_bias_rows", LaunchShape.PerElement((long)m * n), l.Args().Add(c).Add(bias).Add(m).Add(n).Add(ldc));

    [Kernels("copy_strided")]
    public static void CopyStrided(IKernelLauncher l, nint src, nint dst, in StridedLayout layout, long n, int srcType, int dstType) =>
        l.Launch(File, "copy_strided", LaunchShape.PerElement(n), l.Args().Add(src).Add(dst).Add(layout).Add(n).Add(srcType).Add(dstType));
}
