namespace Whittle.Native.Cuda;

/// <summary>One launch's geometry: a (GridX, GridY) grid of blocks of <see cref="Block"/> threads with
/// <see cref="SharedBytes"/> of dynamic shared memory.</summary>
internal readonly record struct LaunchShape(long GridX, int GridY, int Block, int SharedBytes)
{
    public const int Threads = 256;   // the block size of every kernel that does not say otherwise

    /// <summary>One thread per element, <see cref="Threads"/> per block.</summary>
    public static LaunchShape PerElement(long count) => new((count + Threads - 1) / Threads, 1, Threads, 0);

    /// <summary>One block of <see cref="Threads"/> per row.</summary>
    public static LaunchShape PerRow(long rows, int sharedBytes = 0) => new(rows, 1, Threads, sharedBytes);
}

/// <summary>
/// Runs a packed launch. Policy: the launcher classes (Launchers/, one per <c>kernels/*.cu</c>, same name) only pack
/// arguments in the kernel's parameter order with the kernel's parameter types, and compute each kernel family's
/// geometry; the backend implements this interface with cuLaunchKernel, and a test implements it to compare every
/// launcher's argument block with the kernel signatures parsed from the .cu files.
/// </summary>
internal interface IKernelLauncher
{
    KernelArgs Args();
    void Launch(string file, string kernel, LaunchShape shape, KernelArgs args);
}

/// <summary>
/// The kernels a launcher method launches (several when it takes the kernel's name: variants with one signature).
/// The kernel-interface test invokes each method once per name and checks the argument block against that kernel.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class KernelsAttribute(params string[] names) : Attribute
{
    public string[] Names { get; } = names;
}
