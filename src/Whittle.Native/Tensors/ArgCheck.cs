namespace Whittle.Native.Tensors;

/// <summary>Argument checks shared by the backends, so a wrong shape fails with the tensor's name and both shapes.</summary>
public static class ArgCheck
{
    public static void Shape(Tensor t, string name, params int[] expected)
    {
        if (!t.Shape.SequenceEqual(expected))
            throw new ArgumentException($"{name}: expected shape {Tensor.FormatShape(expected)}, got {t.Describe()}");
    }

    public static void SameShape(Tensor a, Tensor b, string op)
    {
        if (!a.SameShape(b)) throw new ArgumentException($"{op}: shapes differ, {a.Describe()} vs {b.Describe()}");
    }

    public static void Contiguous(Tensor t, string name)
    {
        if (!t.IsContiguous) throw new ArgumentException($"{name}: a contiguous tensor is required, got the strided view {t.Describe()}");
    }

    public static (int Rows, int Cols) Matrix(Tensor t, string name) => Matrix(t, name, DType.F32);

    /// <summary>A matrix of <paramref name="dtype"/> with dense rows and a row stride that holds a row.</summary>
    public static (int Rows, int Cols) Matrix(Tensor t, string name, DType dtype)
    {
        if (t.Rank != 2) throw new ArgumentException($"{name}: expected a matrix, got {t.Describe()}");
        if (!t.IsRowDense)
            throw new ArgumentException($"{name}: rows must be dense (last stride 1), got strides " +
            $"({string.Join(", ", t.Strides.ToArray())})");
        if (t.Size(0) > 1 && t.Stride(0) < t.Size(1))
            throw new ArgumentException($"{name}: row stride {t.Stride(0)} is smaller than the row length {t.Size(1)}");
        if (t.DType != dtype) throw new ArgumentException($"{name}: {dtype.Name()} expected, got {t.Describe()}");
        return (t.Size(0), t.Size(1));
    }

    public static (int Rows, int Cols) ContiguousMatrix(Tensor t, string name)
    {
        var r = Matrix(t, name);
        Contiguous(t, name);
        return r;
    }

    public static int Vector(Tensor t, DType dtype, string name)
    {
        if (t.Rank != 1 || t.DType != dtype || !t.IsContiguous)
            throw new ArgumentException($"{name}: expected a contiguous {dtype.Name()} vector, got {t.Describe()}");
        return t.Size(0);
    }

    public static void Vector(Tensor t, int length, string name)
    {
        if (Vector(t, DType.F32, name) != length) throw new ArgumentException($"{name}: expected {length} elements, got {t.Describe()}");
    }

    /// <summary>A (B, T, H, D) f32 view with a dense last dimension.</summary>
    public static (int B, int T, int H, int D) Heads(Tensor t, string name)
    {
        if (t.Rank != 4 || t.DType != DType.F32 || !t.IsRowDense)
            throw new ArgumentException($"{name}: expected an f32 (B, T, H, D) view with dense rows, got {t.Describe()}");
        return (t.Size(0), t.Size(1), t.Size(2), t.Size(3));
    }
}
