using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Cuda;

/// <summary>How <see cref="DeviceAllocator"/> gets memory from the driver.</summary>
public enum DeviceAllocatorMode
{
    /// <summary>Bucketed sizes, freed blocks kept for reuse: no driver allocation in a steady-state step.</summary>
    Caching,
    /// <summary>
    /// Exactly the bytes asked for, straight from the driver and back to it on free: slower, but an overrun of a
    /// tensor reaches the end of its allocation (the software GPU's guard pages then catch it) and a use after free
    /// touches freed memory instead of a recycled block.
    /// </summary>
    Exact,
}

/// <summary>
/// A caching allocator for device memory, so a steady-state training step makes no driver allocations.
/// Policy: sizes round up to 512 B below 1 MiB and to 2 MiB above (few distinct buckets, bounded waste); a freed block
/// goes to its bucket's free list and is handed out again for the next request of that bucket. Blocks are reused
/// without waiting for the GPU because all work is ordered on one stream: a later op that reuses a block runs after the
/// op that last used it. When the driver is out of memory the cached blocks are released and the allocation retried once.
/// <see cref="DriverAllocations"/> counts cuMemAlloc calls (a test asserts it stays flat across steps).
/// In <see cref="DeviceAllocatorMode.Exact"/> mode nothing is rounded or cached (a debugging aid, chosen with
/// WHITTLE_CUDA_ALLOCATOR=exact).
/// </summary>
public sealed class DeviceAllocator(DeviceAllocatorMode mode = DeviceAllocatorMode.Caching) : IDisposable
{
    public const string ModeVariable = "WHITTLE_CUDA_ALLOCATOR";
    const long SmallLimit = 1L << 20, SmallQuantum = 512, LargeQuantum = 2L << 20;
    readonly Dictionary<long, Stack<nint>> _free = new();
    readonly HashSet<nint> _live = new();
    bool _disposed;

    public long DriverAllocations { get; private set; }
    public long DriverFrees { get; private set; }
    public long CacheHits { get; private set; }
    public long BytesReserved { get; private set; }
    public long BytesInUse { get; private set; }

    public DeviceAllocatorMode Mode { get; } = mode;

    /// <summary>The mode WHITTLE_CUDA_ALLOCATOR asks for (caching when unset); a user error for any other value.</summary>
    public static DeviceAllocatorMode ModeFromEnvironment()
    {
        var v = Environment.GetEnvironmentVariable(ModeVariable);
        return v switch
        {
            null or "" or "caching" => DeviceAllocatorMode.Caching,
            "exact" => DeviceAllocatorMode.Exact,
            _ => throw new WhittleException($"{ModeVariable}={ErrorText.Clip(v, 40)}: expected caching or exact"),
        };
    }

    /// <summary>The caching mode's bucket for a request of <paramref name="bytes"/>.</summary>
    public static long BucketSize(long bytes)
    {
        if (bytes <= 0) return 0;
        long q = bytes <= SmallLimit ? SmallQuantum : LargeQuantum;
        return (bytes + q - 1) / q * q;
    }

    /// <summary>A device block of at least <paramref name="bytes"/>; returns its address and bucket size (0, 0 for an empty
    /// request).</summary>
    public (nint Pointer, long Size) Allocate(long bytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long size = Mode == DeviceAllocatorMode.Exact ? Math.Max(0, bytes) : BucketSize(bytes);
        if (size == 0) return (0, 0);
        nint p;
        if (Mode == DeviceAllocatorMode.Caching && _free.TryGetValue(size, out var stack) && stack.Count > 0)
        {
            p = stack.Pop();
            CacheHits++;
        }
        else
        {
            int r = CuDriver.cuMemAlloc(out p, (nuint)size);
            if (r != CuDriver.CUDA_SUCCESS)
            {
                ReleaseCached();
                CudaException.Check(
                    CuDriver.cuMemAlloc(out p, (nuint)size), "cuMemAlloc_v2", $"allocating {size} bytes ({BytesInUse} in use)");
            }
            DriverAllocations++;
            BytesReserved += size;
        }
        _live.Add(p);
        BytesInUse += size;
        return (p, size);
    }

    public void Free(nint pointer, long size)
    {
        if (pointer == 0 || _disposed) return;
        if (!_live.Remove(pointer))
            throw new InvalidOperationException($"device block 0x{pointer:x} freed twice or not from this allocator");
        BytesInUse -= size;
        if (Mode == DeviceAllocatorMode.Exact)
        {
            CudaException.Check(CuDriver.cuMemFree(pointer), "cuMemFree_v2", "allocator");
            DriverFrees++;
            BytesReserved -= size;
            return;
        }
        if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<nint>();
        stack.Push(pointer);
    }

    /// <summary>Returns every cached (free) block to the driver.</summary>
    public void ReleaseCached()
    {
        foreach (var (size, stack) in _free)
            while (stack.Count > 0)
            {
                CudaException.Check(CuDriver.cuMemFree(stack.Pop()), "cuMemFree_v2", "allocator");
                DriverFrees++;
                BytesReserved -= size;
            }
    }

    public void Dispose()
    {
        if (_disposed) return;
        ReleaseCached();
        foreach (var p in _live) { CuDriver.cuMemFree(p); DriverFrees++; }
        _live.Clear();
        _disposed = true;
    }
}
