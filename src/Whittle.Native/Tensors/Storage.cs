using System.Runtime.InteropServices;

namespace Whittle.Native.Tensors;

/// <summary>
/// A flat block of memory on one device. Storage is owned by exactly one tensor (the one that allocated it);
/// views share it without owning it. Freeing is deterministic (Dispose): GPU memory is never freed by a finalizer.
/// </summary>
public abstract class Storage : IDisposable
{
    protected Storage(long bytes) => Bytes = bytes;
    public long Bytes { get; }
    public abstract Device Device { get; }
    /// <summary>Host address (CPU, pinned) or device address (CUDA) of byte 0.</summary>
    public abstract nint Pointer { get; }
    public bool IsDisposed { get; private set; }
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }
    protected abstract void Release();
}

/// <summary>
/// Host memory in a pinned managed array: safe to hand out as Span and as a raw pointer (SIMD kernels, pinned
/// host-device copies) and collected by the GC if a caller forgets to dispose it. Large arrays come from and return to
/// <see cref="PinnedArrayPool"/>, so a training step's activations and gradients reuse the previous step's memory.
/// </summary>
public sealed class CpuStorage : Storage
{
    byte[]? _data;
    readonly nint _ptr;

    public CpuStorage(long bytes, bool zero = true) : base(bytes)
    {
        if (bytes > Array.MaxLength)
            throw new OutOfMemoryException($"a single CPU tensor is limited to {Array.MaxLength} bytes; asked for {bytes}");
        _data = PinnedArrayPool.Rent((int)bytes, zero);
        _ptr = bytes == 0 ? 0 : Marshal.UnsafeAddrOfPinnedArrayElement(_data, 0);
        long live = Interlocked.Add(ref _liveBytes, bytes);
        for (long peak = Volatile.Read(ref _peakBytes); live > peak; peak = Volatile.Read(ref _peakBytes))
            if (Interlocked.CompareExchange(ref _peakBytes, live, peak) == peak) break;
    }

    static long _liveBytes, _peakBytes;
    /// <summary>Bytes held by CPU tensors not yet disposed (what the engine holds, whatever the pool or the GC keeps around).</summary>
    public static long LiveBytes => Volatile.Read(ref _liveBytes);
    /// <summary>The highest <see cref="LiveBytes"/> since <see cref="ResetPeak"/>: the peak memory figure of benchmarks.</summary>
    public static long PeakBytes => Volatile.Read(ref _peakBytes);
    public static void ResetPeak() => Volatile.Write(ref _peakBytes, LiveBytes);

    public override Device Device => Device.Cpu;
    public override nint Pointer => _data is null ? throw new ObjectDisposedException(nameof(CpuStorage)) : _ptr;
    public Span<byte> Bytes_ => (_data ?? throw new ObjectDisposedException(nameof(CpuStorage))).AsSpan(0, (int)Bytes);
    protected override void Release()
    {
        var data = _data;
        _data = null;
        if (data is null) return;
        Interlocked.Add(ref _liveBytes, -Bytes);
        PinnedArrayPool.Return(data);
    }
}

/// <summary>
/// Pinned byte arrays of 64 KiB and more, kept after Dispose and handed out again. Policy: a fresh large pinned array costs
/// page faults and zeroing on first touch and pushes the GC towards gen-2 collections, every training step, while the
/// sizes repeat exactly from step to step. Sizes are rounded up to 1/8 of their power of two (at most 12.5% slack);
/// at most <see cref="MaxIdleBytes"/> are kept idle, beyond that a returned array is left to the GC. Smaller arrays are
/// allocated directly (the GC handles them well).
/// </summary>
internal static class PinnedArrayPool
{
    const int MinPooled = 1 << 16;
    const long MaxIdleBytes = 1L << 30;
    static readonly Dictionary<int, Stack<byte[]>> Idle = new();
    static long _idleBytes;

    public static byte[] Rent(int bytes, bool zero)
    {
        if (bytes < MinPooled || bytes > Array.MaxLength / 2)
            return zero ? GC.AllocateArray<byte>(bytes, pinned: true) : GC.AllocateUninitializedArray<byte>(bytes, pinned: true);
        int size = BucketSize(bytes);
        byte[]? array = null;
        lock (Idle)
            if (Idle.TryGetValue(size, out var stack) && stack.TryPop(out array)) _idleBytes -= size;
        if (array is null)
            return zero ? GC.AllocateArray<byte>(size, pinned: true) : GC.AllocateUninitializedArray<byte>(size, pinned: true);
        if (zero) Array.Clear(array, 0, bytes);
        return array;
    }

    public static void Return(byte[] array)
    {
        int size = array.Length;
        if (size < MinPooled || size != BucketSize(size)) return;   // not one of ours
        lock (Idle)
        {
            if (_idleBytes + size > MaxIdleBytes) return;
            if (!Idle.TryGetValue(size, out var stack)) Idle[size] = stack = new Stack<byte[]>();
            stack.Push(array);
            _idleBytes += size;
        }
    }

    /// <summary>bytes rounded up to a multiple of an eighth of its highest power of two.</summary>
    static int BucketSize(int bytes)
    {
        int step = Math.Max(1, (int)(System.Numerics.BitOperations.RoundUpToPowerOf2((uint)bytes) >> 4));
        return (int)Math.Min(Array.MaxLength, ((long)bytes + step - 1) / step * step);
    }
}
