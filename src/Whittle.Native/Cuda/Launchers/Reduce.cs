namespace Whittle.Native.Cuda.Launchers;

/// <summary>kernels/reduce.cu.</summary>
internal static class Reduce
{
    public const string File = "reduce.cu";
    public const int MaxPartialBlocks = 1024;

    /// <summary>
    /// Column reductions (bias gradients, layernorm parameters): one thread per column, blocks of rows of a chunk,
    /// enough chunks to fill the GPU and few enough atomics: at least 32 rows, at most 1024 chunks.
    /// </summary>
    public static (LaunchShape Shape, int RowsPerChunk) ColumnChunks(int rows, int cols)
    {
        int chunk = Math.Max(32, (rows + 1023) / 1024);
        return (new LaunchShape(
            (cols + LaunchShape.Threads - 1) / LaunchShape.Threads, (rows + chunk - 1) / chunk, LaunchShape.Threads, 0), chunk);
    }

    /// <summary>Blocks for <see cref="Partials"/>: one per <see cref="LaunchShape.Threads"/> elements, at most 1024.</summary>
    public static int PartialBlocks(long count) => (int)Math.Min(MaxPartialBlocks, (count + LaunchShape.Threads - 1) / LaunchShape.Threads);

    [Kernels("column_sums")]
    public static void ColumnSums(IKernelLauncher l, nint dy, nint dBias, int m, int n, long ld)
    {
        var (shape, chunk) = ColumnChunks(m, n);
        l.Launch(File, "column_sums", shape, l.Args().Add(dy).Add(dBias).Add(m).Add(n).Add(chunk).Add(ld));
    }

    [Kernels("reduce_partials")]
    public static void Partials(IKernelLauncher l, nint x, long n, bool squared, nint partials) =>
        l.Launch(File, "reduce_partials", new LaunchShape(PartialBlocks(n), 1, LaunchShape.Threads, 0),
            l.Args().Add(x).Add(n).Add(squared ? 1 : 0).Add(partials));

    [Kernels("reduce_final")]
    public static void Final(IKernelLauncher l, nint partials, int count, nint result) =>
        l.Launch(File, "reduce_final", new LaunchShape(1, 1, LaunchShape.Threads, 0), l.Args().Add(partials).Add(count).Add(result));
}
