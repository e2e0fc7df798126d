using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Tensors;

public class TensorTests
{
    [Test]
    public void NarrowedWeightIsAViewWithTheParentsLeadingDimension()
    {
        using var w = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 3, 4);
        var sub = w.Narrow(0, 0, 2).Narrow(1, 0, 3);
        Assert.That(sub.ShapeArray, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(sub.Stride(0), Is.EqualTo(4), "row stride stays the parent's");
        Assert.That(sub.IsContiguous, Is.False);
        Assert.That(sub.IsRowDense, Is.True);
        Assert.That(sub.ToFloatArray(), Is.EqualTo(new float[] { 0, 1, 2, 4, 5, 6 }));
        w.AsSpan<float>()[5] = 50;
        Assert.That(sub.ToFloatArray()[4], Is.EqualTo(50f), "a view shares storage, no copy");
    }

    [Test]
    public void TransposeAndReshapeAgreeWithRowMajorOrder()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        Assert.That(x.Transpose(0, 1).ToFloatArray(), Is.EqualTo(new float[] { 1, 4, 2, 5, 3, 6 }));
        Assert.That(x.Reshape(3, -1).ShapeArray, Is.EqualTo(new[] { 3, 2 }));
        Assert.Throws<InvalidOperationException>(() => x.Transpose(0, 1).Reshape(6));
    }

    [Test]
    public void Bf16RoundsToNearestEven()
    {
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f)), Is.EqualTo(1f));
        // 1 + 2^-8 is exactly halfway between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f + 1f / 256)), Is.EqualTo(1f));
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f + 3f / 256)), Is.EqualTo(1f + 4f / 256));
        Assert.That(float.IsNaN(Bf16.ToFloat(Bf16.FromFloat(float.NaN))));
    }
}
