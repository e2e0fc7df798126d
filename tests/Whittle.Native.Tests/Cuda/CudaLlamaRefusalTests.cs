using Whittle.Native.Cuda;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// Until the Llama family's kernels exist, CUDA refuses it clearly instead of computing something else: grouped-query
/// attention (KV ≠ H) and the RMSNorm/SwiGLU ops throw NotSupportedException naming the op, and a Llama-family model on
/// a CUDA backend is a user error (WhittleException) before anything is allocated. KV = H attention keeps working
/// (the GPT-NeoX parity tests). Skips without a device (the software GPU counts as one).
/// </summary>
public class CudaLlamaRefusalTests
{
    CudaBackend? _gpu;

    [OneTimeSetUp]
    public void Open()
    {
        if (CudaBackend.DeviceCount(out var problem) == 0) Assert.Ignore($"no CUDA device: {problem}");
        _gpu = new CudaBackend();
    }

    [OneTimeTearDown]
    public void Close() => _gpu?.Dispose();

    [Test]
    public void GroupedQueryAttentionIsRefusedNamingTheOp()
    {
        using var q = _gpu!.Zeros(DType.F32, 1, 4, 4, 8); using var kv = _gpu.Zeros(DType.F32, 1, 4, 2, 8);
        using var o = _gpu.Zeros(DType.F32, 1, 4, 4, 8); using var lse = _gpu.Zeros(DType.F32, 1, 4, 4);
        var e = Assert.Throws<NotSupportedException>(() => _gpu.AttentionForward(q, kv, kv, 0.35f, o, lse, AttentionPrecision.F32));
        Assert.That(e!.Message, Does.Contain("AttentionForward").And.Contain("grouped-query"));
        e = Assert.Throws<NotSupportedException>(() => _gpu.AttentionBackward(o, q, kv, kv, o, lse, 0.35f, q, kv, kv,
            AttentionPrecision.F32));
        Assert.That(e!.Message, Does.Contain("AttentionBackward"));
        using var x = _gpu.Zeros(DType.F32, 4, 8); using var w = _gpu.Zeros(DType.F32, 8); using var r = _gpu.Zeros(DType.F32, 4);
        Assert.That(Assert.Throws<NotSupportedException>(() => _gpu.RmsNormForward(x, w, 1e-6f, x, r))!.Message,
            Does.Contain("RmsNormForward"));
        Assert.That(Assert.Throws<NotSupportedException>(() => _gpu.SwiGluForward(x, x, x))!.Message, Does.Contain("SwiGluForward"));
    }

    [Test]
    public void ALlamaModelOnCudaIsAUserError()
    {
        var config = (LlamaConfig)ModelConfig.Load(Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "tiny-llama"));
        var e = Assert.Throws<WhittleException>(() => new Llama(config, _gpu!));
        Assert.That(e!.Message, Does.Contain("--device cpu"));
    }
}
