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
/// host-device copies) and collected by the GC if a caller forgets to dispose it.
/// </summary>
public sealed class CpuStorage : Storage
{
    byte[]? _data;
    readonly nint _ptr;

    public CpuStorage(long bytes, bool zero = true) : base(bytes)
    {
        if (bytes > Array.MaxLength) throw new OutOfMemoryException($"a single CPU tensor is limited to {Array.MaxLength} bytes; asked for {bytes}");
        _data = zero ? GC.AllocateArray<byte>((int)bytes, pinned: true) : GC.AllocateUninitializedArray<byte>((int)bytes, pinned: true);
        _ptr = bytes == 0 ? 0 : Marshal.UnsafeAddrOfPinnedArrayElement(_data, 0);
    }

    public override Device Device => Device.Cpu;
    public override nint Pointer => _data is null ? throw new ObjectDisposedException(nameof(CpuStorage)) : _ptr;
    public Span<byte> Bytes_ => _data ?? throw new ObjectDisposedException(nameof(CpuStorage));
    protected override void Release() => _data = null;
}
