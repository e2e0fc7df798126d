using Whittle.Native.Cuda.Native;
using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// A block of device memory from the backend's caching allocator. Dispose returns it to the allocator (never to the
/// driver directly). Host copies are stream-ordered and pass through the backend's pinned staging buffer; a copy to the
/// host waits for the stream, because that is where a result is read.
/// </summary>
public sealed class CudaStorage : Storage, IHostCopyable
{
    readonly CudaBackend _owner;
    readonly nint _ptr;
    readonly long _blockSize;

    internal CudaStorage(CudaBackend owner, long bytes) : base(bytes)
    {
        _owner = owner;
        (_ptr, _blockSize) = owner.Allocator.Allocate(bytes);
    }

    public override Device Device => Device.Cuda;
    public override nint Pointer => IsDisposed ? throw new ObjectDisposedException(nameof(CudaStorage)) : _ptr;
    protected override void Release() => _owner.Allocator.Free(_ptr, _blockSize);

    public void CopyToHost(long srcByteOffset, nint hostDst, long bytes)
    {
        CheckRange(srcByteOffset, bytes);
        _owner.CopyDeviceToHost(_ptr + (nint)srcByteOffset, hostDst, bytes);
    }

    public void CopyFromHost(nint hostSrc, long dstByteOffset, long bytes)
    {
        CheckRange(dstByteOffset, bytes);
        _owner.CopyHostToDevice(hostSrc, _ptr + (nint)dstByteOffset, bytes);
    }

    void CheckRange(long offset, long bytes)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (offset < 0 || bytes < 0 || offset + bytes > Bytes)
            throw new ArgumentOutOfRangeException(nameof(bytes), $"copy of {bytes} bytes at {offset} outside a {Bytes}-byte device block");
    }
}
