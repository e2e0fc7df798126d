using Whittle.Native.Cuda;
using Whittle.Native.Cuda.Native;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// Proof that the software GPU bites: each deliberately broken kernel of SoftGpu/kernels/negative.cu fails the way the
/// emulator promises (softgpu/README.md), and a correct twin or a correct launch passes, so the failure is the bug's.
/// Run on the software GPU only (CI builds it); skipped elsewhere.
/// </summary>
[NonParallelizable]
public class SoftGpuNegativeTests
{
    const string File = "negative.cu";
    CudaBackend? _gpu;
    SoftGpuKernel? _kernels;

    [OneTimeSetUp]
    public void Open()
    {
        SoftGpuKernel.RequireSoftwareGpu();
        _gpu = new CudaBackend(allocatorMode: DeviceAllocatorMode.Exact);
        _kernels = new SoftGpuKernel(File);
    }

    [OneTimeTearDown]
    public void Close()
    {
        _kernels?.Dispose();
        _gpu?.Dispose();
    }

    [Test]
    public void AMissingBarrierPassesInOrderButTheRaceCheckerNamesBothLines()
    {
        const int n = 200;
        var x = Enumerable.Range(1, n).Select(i => (float)i).ToArray();
        double sum = x.Sum(v => (double)v);
        using var dx = _gpu!.FromHost(Tensor.FromArray(x, n));
        using var dy = _gpu.Zeros(DType.F32, n);
        float[] Run()
        {
            _kernels!.Launch("softgpu_test_missing_barrier", 1, 256, _kernels.Args().Add(dx.Pointer).Add(dy.Pointer).Add(n));
            return dy.ToFloatArray();
        }

        using (new SoftGpuOptions().Set("order", 0).Set("race", 0))
        {
            var y = Run();
            for (int i = 0; i < n; i++)
                Assert.That(y[i], Is.EqualTo(x[i] / sum).Within(1e-6 * y[i]), "threads in order: thread 0 stores the total first");
        }
        using (new SoftGpuOptions().Set("order", 1).Set("race", 0))
            Assert.That(
                Run()[n - 1], Is.NaN, "in reverse order thread 0 stores the total last: the others divide by poisoned shared memory");
        using (new SoftGpuOptions().Set("order", 0).Set("race", 1))
        {
            var e = Assert.Throws<CudaException>(() => Run())!;
            Assert.That(e.ErrorName, Is.EqualTo("CUDA_ERROR_LAUNCH_FAILED"));
            Assert.That(e.Message, Does.Contain("read-after-write race on shared memory").And.Contain("softgpu_test_missing_barrier"));
            Assert.That(e.Message, Does.Contain($"{File}:{SoftGpuKernel.LineOf(File, "if (t == 0) total = partial[0];")}"), "the store");
            Assert.That(e.Message, Does.Contain($"{File}:{SoftGpuKernel.LineOf(File, "if (t < n) y[t] = x[t] / total;")}"), "the read");
        }
    }

    /// <summary>Runs softgpu_test_off_by_one on n floats with guard pages on, on a backend with the given allocator.</summary>
    void OffByOne(int n, DeviceAllocatorMode allocator)
    {
        using var _ = new SoftGpuOptions().Set("guard", 1);
        using var gpu = new CudaBackend(allocatorMode: allocator);
        using var x = gpu.Zeros(DType.F32, n);
        using var y = gpu.Zeros(DType.F32, n);
        _kernels!.Launch("softgpu_test_off_by_one", (uint)(n / 256 + 1), 256, _kernels.Args().Add(x.Pointer).Add(y.Pointer).Add(n));
    }

    [Test]
    public void AnOffByOneStoreFaultsAtTheGuardPageNamingTheThread()
    {
        // 1024 floats = 4096 bytes: the exact allocation ends at its guard page, so thread 1024 (block 4, thread 0) faults
        var e = Assert.Throws<CudaException>(() => OffByOne(1024, DeviceAllocatorMode.Exact))!;
        Assert.That(e.ErrorName, Is.EqualTo("CUDA_ERROR_ILLEGAL_ADDRESS"));
        Assert.That(e.Message, Does.Contain("kernel softgpu_test_off_by_one, block (4,0,0), thread 0")
            .And.Contain("0 bytes past the end of device allocation"));
    }

    [Test]
    public void AnOffByOneStoreInsideTheAlignmentSlackIsFoundByTheCanary()
    {
        // 1000 floats = 4000 bytes: the stray store lands in the 96 bytes of alignment slack before the guard page
        var e = Assert.Throws<CudaException>(() => OffByOne(1000, DeviceAllocatorMode.Exact))!;
        Assert.That(e.ErrorName, Is.EqualTo("CUDA_ERROR_ILLEGAL_ADDRESS"));
        Assert.That(e.Message, Does.Contain("kernel softgpu_test_off_by_one wrote byte 0 past the end of device allocation"));
    }

    [Test]
    public void TheCachingAllocatorHidesTheSameOverrunWhichIsWhyExactModeExists()
    {
        // a 4096-byte bucket for 4000 bytes: the stray store lands inside the bucket, unseen
        Assert.DoesNotThrow(() => OffByOne(1000, DeviceAllocatorMode.Caching));
    }

    [Test]
    public void ASwappedMmaFragmentLayoutFailsParityAndTheRightOnePasses()
    {
        var rng = new Random(7);
        // values with at most 8 significant bits are exact in bf16, so the only error left is the f32 accumulation
        var a = Enumerable.Range(0, 256).Select(_ => (float)(rng.Next(-128, 128) / 64.0)).ToArray();
        var b = Enumerable.Range(0, 128).Select(_ => (float)(rng.Next(-128, 128) / 64.0)).ToArray();
        var reference = new double[128];
        double scale = 0;
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 8; j++)
            {
                double s = 0, abs = 0;
                for (int k = 0; k < 16; k++)
                {
                    s += (double)a[i * 16 + k] * b[k * 8 + j];
                    abs += Math.Abs((double)a[i * 16 + k] * b[k * 8 + j]);
                }
                reference[i * 8 + j] = s;
                scale = Math.Max(scale, abs);
            }
        using var fa = _gpu!.FromHost(Tensor.FromArray(a, 16, 16));
        using var fb = _gpu.FromHost(Tensor.FromArray(b, 16, 8));
        using var da = _gpu.Empty(DType.BF16, 16, 16);
        using var db = _gpu.Empty(DType.BF16, 16, 8);
        _gpu.Copy(fa, da);   // exact: every value has at most 8 significant bits
        _gpu.Copy(fb, db);
        using var dd = _gpu.Zeros(DType.F32, 16, 8);
        double Error(int swap)
        {
            _kernels!.Launch("softgpu_test_mma_tile", 1, 32, _kernels.Args().Add(da.Pointer).Add(db.Pointer).Add(dd.Pointer).Add(swap));
            var d = dd.ToFloatArray();
            return Enumerable.Range(0, 128).Max(i => Math.Abs(d[i] - reference[i])) / scale;
        }
        // 16 f32 additions of exact products: each rounds by at most 2^-24 of a partial sum bounded by sum |a b|
        Assert.That(Error(0), Is.LessThanOrEqualTo(16 * Math.Pow(2, -24)), "the PTX ISA layout");
        Assert.That(Error(1), Is.GreaterThan(0.05), "registers a1 and a2 swapped");
    }

    [Test]
    public void AnArgumentOfTheWrongSizeIsRefusedAtLaunch()
    {
        var host = new float[] { 1, 2, 3 };
        using var y = _gpu!.FromHost(Tensor.FromArray(host, 3));
        var e = Assert.Throws<CudaException>(() =>
            _kernels!.Launch("softgpu_test_scale", 1, 32, _kernels.Args().Add(y.Pointer).Add(3).Add(2f)))!;   // n packed as int
        Assert.That(e.ErrorName, Is.EqualTo("CUDA_ERROR_INVALID_VALUE"));
        Assert.That(e.Message, Does.Contain("launch of softgpu_test_scale refused: argument 2 is at byte 12")
            .And.Contain("argument 1 is 8 bytes in the kernel, and the host packed 4 bytes"));
        Assert.That(y.ToFloatArray(), Is.EqualTo(host), "nothing ran");
        _kernels!.Launch("softgpu_test_scale", 1, 32, _kernels.Args().Add(y.Pointer).Add(3L).Add(2f));
        Assert.That(y.ToFloatArray(), Is.EqualTo(new float[] { 2, 4, 6 }), "the right types run");
    }

    [Test]
    public unsafe void DeferredStreamsShowAHostReadThatDidNotSynchronise()
    {
        using var _ = new SoftGpuOptions().Set("deferred", 1);
        using var src = _gpu!.FromHost(Tensor.FromArray(new float[] { 5, 6, 7, 8 }, 4));
        CudaException.Check(CuDriver.cuStreamCreate(out var stream, 0), "cuStreamCreate");
        CudaException.Check(CuDriver.cuMemAllocHost(out var pinned, 16), "cuMemAllocHost");
        try
        {
            var host = (float*)pinned;
            for (int i = 0; i < 4; i++) host[i] = -1;
            CudaException.Check(CuDriver.cuMemcpyDtoHAsync(pinned, src.Pointer, 16, stream), "cuMemcpyDtoHAsync");
            Assert.That(host[0], Is.EqualTo(-1f), "queued, not run: a read before cuStreamSynchronize sees the old bytes");
            CudaException.Check(CuDriver.cuStreamSynchronize(stream), "cuStreamSynchronize");
            Assert.That(new[] { host[0], host[1], host[2], host[3] }, Is.EqualTo(new float[] { 5, 6, 7, 8 }));
        }
        finally
        {
            CuDriver.cuMemFreeHost(pinned);
            CuDriver.cuStreamDestroy(stream);
        }
    }
}
