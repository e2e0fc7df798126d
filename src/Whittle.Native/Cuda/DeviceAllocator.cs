using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Cuda;

/// <summary>
/// A caching allocator for device memory, so a steady-state training step makes no driver allocations.
/// Policy: sizes round up to 512 B below 1 MiB and to 2 MiB above (few distinct buckets, bounded waste); a freed block
/// goes to its bucket's free list and is handed out again for the next request of that bucket. Blocks are reused
/// without waiting for the GPU because all work is ordered on one stream: a later op that reuses a block runs after the
/// op that last used it. When the driver is out of memory the cached blocks are released and the allocation retried once.
/// <see cref="DriverAllocations"/> counts cuMemAlloc calls (a test asserts it stays flat across steps).
/// </summary>
public sealed class DeviceAllocator : IDisposable
{
    const long SmallLimit = 1L << 20, SmallQuantum = 512, LargeQuantum = 2L << 20;
    readonly Dictionary<long, Stack<nint>> _free = new();
    readonly HashSet<nint> _live = new();
    bool _disposed;

    public long DriverAllocations { get; private set; }
    public long DriverFrees { get; private set; }
    public long CacheHits { get; private set; }
    public long BytesReserved { get; private set; }
    public long BytesInUse { get; private set; }

    public static long BucketSize(long bytes)
    {
        if (bytes <= 0) return 0;
        long q = bytes <= SmallLimit ? SmallQuantum : LargeQuantum;
        return (bytes + q - 1) / q * q;
    }

    /// <summary>A device block of at least <paramref name="bytes"/>; returns its address and bucket size (0, 0 for an empty request).</summary>
    public (nint Pointer, long Size) Allocate(long bytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long size = BucketSize(bytes);
        if (size == 0) return (0, 0);
        nint p;
        if (_free.TryGetValue(size, out var stack) && stack.Count > 0) { p = stack.Pop(); CacheHits++; }
        else
        {
            int r = CuDriver.cuMemAlloc(out p, (nuint)size);
            if (r != CuDriver.CUDA_SUCCESS)
            {
                ReleaseCached();
                CudaException.Check(CuDriver.cuMemAlloc(out p, (nuint)size), "cuMemAlloc_v2", $"allocating {size} bytes ({BytesInUse} in use)");
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
        if (!_live.Remove(pointer)) throw new InvalidOperationException($"device block 0x{pointer:x} freed twice or not from this allocator");
        BytesInUse -= size;
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
