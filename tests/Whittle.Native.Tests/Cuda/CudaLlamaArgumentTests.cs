using Whittle.Native.Cuda;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// The Llama family's CUDA ops check their shapes on the host before any launch, naming the op and the tensor: k and v
/// with a head count that does not divide q's, dk or dv with q's heads instead of k's, an RMSNorm weight of the wrong
/// width, SwiGLU operands of the same size but another shape. Skips without a device (the software GPU counts as one).
/// </summary>
public class CudaLlamaArgumentTests
{
    CudaBackend? _gpu;

    [OneTimeSetUp]
    public void Open()
    {
        _gpu = TestBackends.CudaOrIgnore();
    }

    [OneTimeTearDown]
    public void Close() => _gpu?.Dispose();

    [Test]
    public void KvHeadsMustDivideTheQueryHeadsAndTheGradientsHaveKsShape()
    {
        using var q = _gpu!.Zeros(DType.F32, 1, 4, 4, 8); using var k3 = _gpu.Zeros(DType.F32, 1, 4, 3, 8);
        using var k2 = _gpu.Zeros(DType.F32, 1, 4, 2, 8);
        using var o = _gpu.Zeros(DType.F32, 1, 4, 4, 8); using var lse = _gpu.Zeros(DType.F32, 1, 4, 4);
        var e = Assert.Throws<ArgumentException>(() => _gpu.AttentionForward(q, k3, k3, 0.35f, o, lse, AttentionPrecision.F32));
        Assert.That(e!.Message, Does.Contain("AttentionForward").And.Contain("KV dividing H"));
        e = Assert.Throws<ArgumentException>(() => _gpu.AttentionBackward(o, q, k2, k2, o, lse, 0.35f, q, q, q, AttentionPrecision.F32));
        Assert.That(e!.Message, Does.Contain("AttentionBackward").And.Contain("dk"));
    }

    [Test]
    public void RmsNormAndSwiGluNameTheMisshapenTensor()
    {
        using var x = _gpu!.Zeros(DType.F32, 4, 8); using var w = _gpu.Zeros(DType.F32, 6); using var r = _gpu.Zeros(DType.F32, 4);
        using var y = _gpu.Zeros(DType.F32, 4, 8);
        Assert.That(Assert.Throws<ArgumentException>(() => _gpu.RmsNormForward(x, w, 1e-6f, y, r))!.Message,
            Does.Contain("RmsNormForward").And.Contain("weight"));
        using var flat = _gpu.Zeros(DType.F32, 8, 4);
        Assert.That(Assert.Throws<ArgumentException>(() => _gpu.SwiGluForward(x, x, flat))!.Message,
            Does.Contain("SwiGluForward").And.Contain("y"));
    }
}
