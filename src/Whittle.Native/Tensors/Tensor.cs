using System.Runtime.InteropServices;
using System.Text;

namespace Whittle.Native.Tensors;

/// <summary>
/// A strided view of a <see cref="Storage"/>: shape, element strides, element offset and dtype.
/// The tensor that allocated its storage owns it and frees it on Dispose; views (Narrow, Transpose, Reshape, ...)
/// share the storage and their Dispose does nothing, so a view must not outlive its owner.
/// Sub-networks rely on this: <c>W[:m', :d']</c> is <c>W.Narrow(0, 0, m').Narrow(1, 0, d')</c>, a view whose row
/// stride (leading dimension) is still the parent's.
/// </summary>
public sealed class Tensor : IDisposable
{
    readonly int[] _shape;
    readonly long[] _strides;

    Tensor(Storage storage, DType dtype, int[] shape, long[] strides, long offset, bool owns, string? name)
    {
        Storage = storage; DType = dtype; _shape = shape; _strides = strides; Offset = offset; OwnsStorage = owns; Name = name;
    }

    public Storage Storage { get; }
    public DType DType { get; }
    public long Offset { get; }
    public bool OwnsStorage { get; }
    /// <summary>Optional name used in error messages (e.g. the checkpoint's parameter name).</summary>
    public string? Name { get; set; }
    public ReadOnlySpan<int> Shape => _shape;
    public ReadOnlySpan<long> Strides => _strides;
    public int Rank => _shape.Length;
    public Device Device => Storage.Device;
    public long Count { get { long n = 1; foreach (var d in _shape) n *= d; return n; } }
    public int Size(int dim) => _shape[dim < 0 ? dim + Rank : dim];
    public long Stride(int dim) => _strides[dim < 0 ? dim + Rank : dim];
    public int[] ShapeArray => (int[])_shape.Clone();

    // ---------------------------------------------------------------- creation

    /// <summary>Wraps storage as a contiguous tensor that owns it.</summary>
    public static Tensor FromStorage(Storage storage, DType dtype, ReadOnlySpan<int> shape, string? name = null)
    {
        var s = CheckShape(shape);
        long need = Numel(s) * dtype.SizeOf();
        if (need > storage.Bytes)
            throw new ArgumentException($"storage of {storage.Bytes} bytes is too small for {dtype.Name()}{FormatShape(s)} ({need} bytes)");
        return new Tensor(storage, dtype, s, ContiguousStrides(s), 0, owns: true, name);
    }

    public static Tensor Zeros(DType dtype, params int[] shape) =>
        FromStorage(new CpuStorage(Numel(CheckShape(shape)) * dtype.SizeOf()), dtype, shape);
    public static Tensor Zeros(params int[] shape) => Zeros(DType.F32, shape);
    public static Tensor Empty(DType dtype, params int[] shape) =>
        FromStorage(new CpuStorage(Numel(CheckShape(shape)) * dtype.SizeOf(), zero: false), dtype, shape);

    public static Tensor FromArray(float[] data, params int[] shape)
    {
        var t = Empty(DType.F32, shape);
        if (data.Length != t.Count)
            throw new ArgumentException($"{data.Length} values cannot fill shape {FormatShape(shape)} ({t.Count} elements)");
        data.CopyTo(t.AsSpan<float>());
        return t;
    }

    public static Tensor FromArray(int[] data, params int[] shape)
    {
        var t = Empty(DType.I32, shape);
        if (data.Length != t.Count)
            throw new ArgumentException($"{data.Length} values cannot fill shape {FormatShape(shape)} ({t.Count} elements)");
        data.CopyTo(t.AsSpan<int>());
        return t;
    }

    // ---------------------------------------------------------------- access

    public bool IsContiguous
    {
        get
        {
            long expect = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (_shape[i] != 1 && _strides[i] != expect) return false;
                expect *= _shape[i];
            }
            return true;
        }
    }

    /// <summary>True when the last dimension is dense (stride 1): a matrix view usable with a leading dimension.</summary>
    public bool IsRowDense => Rank == 0 || _strides[Rank - 1] == 1 || _shape[Rank - 1] == 1;

    /// <summary>Address of element 0 of this view (host or device address).</summary>
    public nint Pointer => Storage.Pointer + (nint)(Offset * DType.SizeOf());

    /// <summary>The elements of a contiguous CPU tensor.</summary>
    public unsafe Span<T> AsSpan<T>() where T : unmanaged
    {
        if (Device != Device.Cpu) throw new InvalidOperationException($"tensor {Describe()} lives on {Device}; copy it to the CPU first");
        if (!IsContiguous) throw new InvalidOperationException($"tensor {Describe()} is a strided view; AsSpan needs a contiguous tensor");
        if (sizeof(T) != DType.SizeOf())
            throw new InvalidOperationException($"tensor {Describe()} has {DType.SizeOf()}-byte elements, not {typeof(T).Name}");
        return new Span<T>((void*)Pointer, checked((int)Count));
    }

    /// <summary>Span covering every element a strided CPU view can touch (offset .. last element), for kernels that index with
    /// strides.</summary>
    public unsafe Span<T> SpanOfExtent<T>() where T : unmanaged
    {
        if (Device != Device.Cpu) throw new InvalidOperationException($"tensor {Describe()} lives on {Device}");
        long extent = 1;
        for (int i = 0; i < Rank; i++) if (_shape[i] == 0) { extent = 0; break; } else extent += (long)(_shape[i] - 1) * _strides[i];
        return new Span<T>((void*)Pointer, checked((int)extent));
    }

    /// <summary>Copies the elements (in row-major order, any strides, any device) to a new array.</summary>
    public float[] ToFloatArray()
    {
        using var host = Device == Device.Cpu ? null : ToCpu();
        var src = host ?? this;
        var result = new float[src.Count];
        if (src.DType == DType.F32) src.CopyStridedTo<float>(result);
        else if (src.DType == DType.BF16)
        {
            var tmp = new ushort[src.Count]; src.CopyStridedTo<ushort>(tmp);
            for (int i = 0; i < tmp.Length; i++) result[i] = Bf16.ToFloat(tmp[i]);
        }
        else if (src.DType == DType.F16)
        {
            var tmp = new Half[src.Count]; src.CopyStridedTo<Half>(tmp);
            for (int i = 0; i < tmp.Length; i++) result[i] = (float)tmp[i];
        }
        else if (src.DType == DType.I32)
        {
            var tmp = new int[src.Count]; src.CopyStridedTo<int>(tmp);
            for (int i = 0; i < tmp.Length; i++) result[i] = tmp[i];
        }
        return result;
    }

    public int[] ToIntArray()
    {
        if (DType != DType.I32) throw new InvalidOperationException($"tensor {Describe()} is {DType.Name()}, not i32");
        using var host = Device == Device.Cpu ? null : ToCpu();
        var src = host ?? this;
        var result = new int[src.Count];
        src.CopyStridedTo<int>(result);
        return result;
    }

    /// <summary>A contiguous CPU copy (for CUDA tensors the storage must implement host copies).</summary>
    public Tensor ToCpu()
    {
        if (Device == Device.Cpu) return Contiguous();
        if (Storage is not IHostCopyable dev) throw new InvalidOperationException($"{Device} storage cannot be copied to the host");
        if (!IsContiguous) throw new InvalidOperationException($"tensor {Describe()} must be contiguous to leave the device");
        var t = Empty(DType, _shape);
        dev.CopyToHost(Offset * DType.SizeOf(), t.Pointer, Count * DType.SizeOf());
        return t;
    }

    /// <summary>A contiguous copy on the CPU (always a new tensor that owns its storage).</summary>
    public unsafe Tensor Contiguous()
    {
        if (Device != Device.Cpu) throw new InvalidOperationException("Contiguous() on a device tensor: use the backend's Copy");
        var t = Empty(DType, _shape);
        switch (DType.SizeOf())
        {
            case 4: CopyStridedTo(t.AsSpan<int>()); break;
            case 2: CopyStridedTo(t.AsSpan<ushort>()); break;
        }
        return t;
    }

    unsafe void CopyStridedTo<T>(Span<T> dst) where T : unmanaged
    {
        if (Count == 0) return;
        T* src = (T*)Pointer;
        if (IsContiguous) { new Span<T>(src, dst.Length).CopyTo(dst); return; }
        var idx = new int[Rank];
        for (long n = 0; n < dst.Length; n++)
        {
            long off = 0;
            for (int d = 0; d < Rank; d++) off += idx[d] * _strides[d];
            dst[(int)n] = src[off];
            for (int d = Rank - 1; d >= 0; d--) { if (++idx[d] < _shape[d]) break; idx[d] = 0; }
        }
    }

    // ---------------------------------------------------------------- views

    /// <summary>Elements [start, start+length) along <paramref name="dim"/>, without a copy.</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        if (dim < 0) dim += Rank;
        if ((uint)dim >= (uint)Rank) throw new ArgumentOutOfRangeException(nameof(dim), $"dim {dim} of a rank-{Rank} tensor {Describe()}");
        if (start < 0 || length < 0 || start + length > _shape[dim])
            throw new ArgumentOutOfRangeException(
                nameof(start), $"narrow [{start}, {start + length}) of dim {dim} (size {_shape[dim]}) of {Describe()}");
        var shape = ShapeArray; shape[dim] = length;
        return new Tensor(Storage, DType, shape, (long[])_strides.Clone(), Offset + start * _strides[dim], owns: false, Name);
    }

    /// <summary>Index <paramref name="index"/> along dim 0, dropping that dimension.</summary>
    public Tensor Select(int index)
    {
        if ((uint)index >= (uint)_shape[0])
            throw new ArgumentOutOfRangeException(nameof(index), $"index {index} into dim 0 (size {_shape[0]}) of {Describe()}");
        return new Tensor(Storage, DType, _shape[1..], _strides[1..], Offset + index * _strides[0], owns: false, Name);
    }

    public Tensor Transpose(int d0, int d1)
    {
        if (d0 < 0) d0 += Rank; if (d1 < 0) d1 += Rank;
        var shape = ShapeArray; var strides = (long[])_strides.Clone();
        (shape[d0], shape[d1]) = (shape[d1], shape[d0]);
        (strides[d0], strides[d1]) = (strides[d1], strides[d0]);
        return new Tensor(Storage, DType, shape, strides, Offset, owns: false, Name);
    }

    /// <summary>Same elements, new shape. Needs a contiguous tensor; one dimension may be -1.</summary>
    public Tensor Reshape(params int[] shape)
    {
        shape = (int[])shape.Clone();
        int infer = Array.IndexOf(shape, -1);
        if (infer >= 0)
        {
            long rest = 1; for (int i = 0; i < shape.Length; i++) if (i != infer) rest *= shape[i];
            shape[infer] = rest == 0 ? 0 : (int)(Count / rest);
        }
        if (Numel(shape) != Count) throw new ArgumentException($"cannot reshape {Describe()} ({Count} elements) to {FormatShape(shape)}");
        if (!IsContiguous) throw new InvalidOperationException($"cannot reshape the strided view {Describe()}; make it contiguous first");
        return new Tensor(Storage, DType, shape, ContiguousStrides(shape), Offset, owns: false, Name);
    }

    /// <summary>A view with explicit shape and strides over the same storage (for layouts like the fused QKV split).</summary>
    public Tensor AsStrided(int[] shape, long[] strides, long extraOffset = 0)
    {
        if (shape.Length != strides.Length) throw new ArgumentException("shape and strides differ in rank");
        var t = new Tensor(Storage, DType, (int[])shape.Clone(), (long[])strides.Clone(), Offset + extraOffset, owns: false, Name);
        long last = t.Offset; for (int i = 0; i < shape.Length; i++) if (shape[i] > 0) last += (shape[i] - 1) * strides[i];
        if (t.Count > 0 && (t.Offset < 0 || (last + 1) * DType.SizeOf() > Storage.Bytes))
            throw new ArgumentOutOfRangeException(nameof(shape), $"strided view {FormatShape(shape)} reaches beyond its storage");
        return t;
    }

    public void Dispose()
    {
        if (OwnsStorage) Storage.Dispose();
    }

    // ---------------------------------------------------------------- helpers

    public bool SameShape(Tensor other) => _shape.AsSpan().SequenceEqual(other._shape);

    public string Describe() => $"{(Name is null ? "" : Name + " ")}{DType.Name()}{FormatShape(_shape)}";
    public override string ToString() => Describe() + $" on {Device}";

    public static string FormatShape(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("(");
        for (int i = 0; i < shape.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i]); }
        return sb.Append(')').ToString();
    }

    public static long Numel(ReadOnlySpan<int> shape) { long n = 1; foreach (var d in shape) n *= d; return n; }

    public static long[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var s = new long[shape.Length]; long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    static int[] CheckShape(ReadOnlySpan<int> shape)
    {
        foreach (var d in shape) if (d < 0) throw new ArgumentException($"negative dimension in shape {FormatShape(shape)}");
        return shape.ToArray();
    }
}

/// <summary>Storage that is not host-addressable but can be copied to and from the host (CUDA).</summary>
public interface IHostCopyable
{
    void CopyToHost(long srcByteOffset, nint hostDst, long bytes);
    void CopyFromHost(nint hostSrc, long dstByteOffset, long bytes);
}

/// <summary>bfloat16 conversions: round-to-nearest-even, NaN preserved.</summary>
public static class Bf16
{
    public static float ToFloat(ushort b) => BitConverter.Int32BitsToSingle(b << 16);
    public static ushort FromFloat(float f)
    {
        uint u = (uint)BitConverter.SingleToInt32Bits(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40); // quiet NaN
        u += 0x7FFF + ((u >> 16) & 1);
        return (ushort)(u >> 16);
    }
}
