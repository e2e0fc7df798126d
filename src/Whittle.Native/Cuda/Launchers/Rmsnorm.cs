namespace Whittle.Native.Cuda.Launchers;

/// <summary>
/// kernels/rmsnorm.cu: rows of a (B, T, H, C) view (a matrix (N, C) [ld] is B = N, T = H = 1), one warp per row and
/// <see cref="RowsPerBlock"/> rows per block; dWeight by per-chunk partial column sums, then their sum in chunk order.
/// </summary>
internal static class Rmsnorm
{
    public const string File = "rmsnorm.cu";
    /// <summary>ROWS_PER_BLOCK in rmsnorm.cu: warps of a block of <see cref="LaunchShape.Threads"/>.</summary>
    const int RowsPerBlock = LaunchShape.Threads / 32;

    static LaunchShape WarpPerRow(long rows) => new((rows + RowsPerBlock - 1) / RowsPerBlock, 1, LaunchShape.Threads, 0);

    [Kernels("rmsnorm_forward")]
    public static void Forward(IKernelLauncher l, nint x, nint weight, nint y, nint rstd, long rows, int t, int h, int c, Bthd sx,
        float eps) =>
        l.Launch(File, "rmsnorm_forward", WarpPerRow(rows),
            l.Args().Add(x).Add(weight).Add(y).Add(rstd).Add(rows).Add(t).Add(h).Add(c).Add(sx).Add(eps));

    [Kernels("rmsnorm_backward_input")]
    public static void BackwardInput(IKernelLauncher l, nint dy, nint x, nint weight, nint rstd, nint dx, long rows, int t, int h, int c,
        Bthd sdy, Bthd sx, Bthd sdx) =>
        l.Launch(File, "rmsnorm_backward_input", WarpPerRow(rows),
            l.Args().Add(dy).Add(x).Add(weight).Add(rstd).Add(dx).Add(rows).Add(t).Add(h).Add(c).Add(sdy).Add(sx).Add(sdx));

    /// <summary>Row chunks of the dWeight partials (<see cref="Reduce.ColumnChunks"/>): the partials buffer is (chunks, C).</summary>
    public static (LaunchShape Shape, int RowsPerChunk) Chunks(long rows, int c) => Reduce.ColumnChunks(checked((int)rows), c);

    [Kernels("rmsnorm_backward_partials")]
    public static void BackwardPartials(IKernelLauncher l, nint dy, nint x, nint rstd, nint partials, long rows, int t, int h, int c,
        Bthd sdy, Bthd sx)
    {
        var (shape, chunk) = Chunks(rows, c);
        l.Launch(File, "rmsnorm_backward_partials", shape,
            l.Args().Add(dy).Add(x).Add(rstd).Add(partials).Add(rows).Add(t).Add(h).Add(c).Add(chunk).Add(sdy).Add(sx));
    }

    [Kernels("rmsnorm_backward_weight")]
    public static void BackwardWeight(IKernelLauncher l, nint partials, nint dWeight, int chunks, int c) =>
        l.Launch(File, "rmsnorm_backward_weight", LaunchShape.PerElement(c), l.Args().Add(partials).Add(dWeight).Add(chunks).Add(c));
}
