using System.Runtime.InteropServices;

namespace Whittle.Native.Cuda;

/// <summary>
/// The argument block for cuLaunchKernel: values packed into one native buffer with their natural alignment, plus the
/// array of pointers to them. Reused for every launch of one backend (single-threaded, like its stream), so launches
/// allocate nothing.
/// </summary>
internal sealed unsafe class KernelArgs : IDisposable
{
    const int Capacity = 4096, MaxArgs = 64;
    byte* _buffer = (byte*)NativeMemory.AlignedAlloc(Capacity, 16);
    void** _pointers = (void**)NativeMemory.Alloc(MaxArgs, (nuint)sizeof(void*));
    readonly int[] _sizes = new int[MaxArgs];   // what each argument's packed size was (the kernel-interface test reads it)
    int _used, _count;

    public KernelArgs Reset() { _used = 0; _count = 0; return this; }

    public KernelArgs Add<T>(T value) where T : unmanaged
    {
        int align = Math.Min(sizeof(T), 8);
        _used = (_used + align - 1) / align * align;
        if (_used + sizeof(T) > Capacity || _count == MaxArgs) throw new InvalidOperationException("kernel argument block overflow");
        *(T*)(_buffer + _used) = value;
        _sizes[_count] = sizeof(T);
        _pointers[_count++] = _buffer + _used;
        _used += sizeof(T);
        return this;
    }

    public void** Pointers => _pointers;

    /// <summary>How many arguments were added since the last <see cref="Reset"/>.</summary>
    public int Count => _count;

    /// <summary>Argument <paramref name="i"/>: its byte offset in the block, its size, and its bytes.</summary>
    public (int Offset, int Size, byte[] Bytes) Argument(int i) =>
        ((int)((byte*)_pointers[i] - _buffer), _sizes[i], new ReadOnlySpan<byte>(_pointers[i], _sizes[i]).ToArray());

    public void Dispose()
    {
        if (_buffer != null) { NativeMemory.AlignedFree(_buffer); _buffer = null; }
        if (_pointers != null) { NativeMemory.Free(_pointers); _pointers = null; }
    }
}

/// <summary>Element strides of a (B, T, H, D) view with unit D stride; matches <c>struct Bthd</c> in attention.cu.</summary>
[StructLayout(LayoutKind.Sequential)]
internal readonly record struct Bthd(long SB, long ST, long SH);

/// <summary>Shape and strides for copy_strided; matches <c>struct StridedLayout</c> in elementwise.cu (rank &lt;= 6).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct StridedLayout
{
    public int Rank;
    public fixed int Shape[6];
    public fixed long SrcStride[6];
    public fixed long DstStride[6];
}
