using Whittle.Native.Verification;
using Whittle.Native.Cpu;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// Issue 21's "numbers checked where they are timed" on the software GPU: the bf16 tensor-core attention at the context
/// the GPU kit times (T = 2048, head sizes 64 and 128, forward; the D = 64 backward) against the CPU, once per CI run
/// (about 50 s on 2 cores; doctor's five variants run it at DoctorCommand.SoftwareGpuLongSeqLen), and the
/// cuBLASLt algorithm cache (one heuristic query per distinct GEMM problem). Skipped without the software GPU or a GPU.
/// </summary>
[NonParallelizable]
public class SoftGpuLongContextTests
{
    [Test]
    public void Bf16TensorCoreAttentionAtT2048MatchesTheCpu()
    {
        if (CudaBackend.DeviceCount(out var why) == 0) Assert.Ignore($"no CUDA device: {why}");
        using var cpu = new CpuBackend();
        using var gpu = new CudaBackend();
        var results = new ParityHarness(cpu, gpu) { LongSeqLen = ParityHarness.HardwareLongSeqLen }.RunLongContext();
        Assert.That(results.Select(r => $"{r.Op} {r.Case}"), Is.EquivalentTo(new[]
        {
            "AttentionForward(bf16 mma) B=1 T=2048 H=2 D=64 fused qkv", "AttentionBackward(bf16 mma) B=1 T=2048 H=2 D=64 fused qkv",
            "AttentionForward(bf16 mma) B=1 T=2048 H=2 D=128 fused qkv",
        }));
        foreach (var r in results) Assert.That(r.Passed, Is.True, r.ToString());
    }

    [Test]
    public void TheLongContextCasesRunOnlyWhenAskedAndOnlyOnCuda()
    {
        using var a = new CpuBackend(); using var b = new CpuBackend();
        Assert.That(new ParityHarness(a, b) { LongSeqLen = 2048 }.RunLongContext(), Is.Empty, "the mma kernels are CUDA's");
        if (CudaBackend.DeviceCount(out var why) == 0) Assert.Ignore($"no CUDA device: {why}");
        using var gpu = new CudaBackend();
        Assert.That(new ParityHarness(a, gpu).RunLongContext(), Is.Empty, "LongSeqLen 0: not run");
    }

    [Test]
    public void CublasLtAsksItsHeuristicOncePerProblem()
    {
        if (CudaBackend.DeviceCount(out var why) == 0) Assert.Ignore($"no CUDA device: {why}");
        using var gpu = new CudaBackend(allocatorMode: DeviceAllocatorMode.Caching);
        if (!CudaLibraries.TryLoad(CudaLibraries.CublasLtName, out var problem)) Assert.Ignore($"no cuBLASLt: {problem}");
        Tensor Dev(int r, int c) { using var h = Tensor.FromArray(Enumerable.Range(0, r * c).Select(i => (i % 7) * 0.25f).ToArray(), r, c);
        return gpu.FromHost(h); }
        using var x = Dev(8, 32); using var w = Dev(16, 32); using var w2 = Dev(24, 32);
        using var bias = gpu.FromHost(Tensor.FromArray(new float[16], 16));
        using var bias2 = gpu.FromHost(Tensor.FromArray(new float[24], 24));
        using var y = gpu.Empty(DType.F32, 8, 16); using var y2 = gpu.Empty(DType.F32, 8, 24);
        int before = gpu.CublasLtHeuristicQueries;
        for (int i = 0; i < 3; i++) gpu.MatMul(x, false, w, true, y, bias: bias);   // a Linear with bias: the cuBLASLt BIAS epilogue
        gpu.Synchronize();
        if (gpu.CublasLtAlgorithmsCached == 0) Assert.Ignore("cuBLASLt offered no algorithm here (SOFTGPU_LT_NO_ALGO)");
        Assert.That(gpu.CublasLtHeuristicQueries - before, Is.EqualTo(1), "three calls of one problem: one query");
        gpu.MatMul(x, false, w2, true, y2, bias: bias2);
        gpu.Synchronize();
        Assert.That(gpu.CublasLtHeuristicQueries - before, Is.EqualTo(2), "a new shape is a new problem");
    }
}
