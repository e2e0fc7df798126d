using System.Runtime.InteropServices;
using Whittle.Native.Verification;
using Whittle.Native.Cuda;
using Whittle.Native.Cuda.Native;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// The CUDA plumbing that works without a GPU: the driver binding, library discovery, the kernel cache, the allocator's
/// bucket policy. Tests that need a device skip with the driver's own reason.
/// </summary>
[NonParallelizable]
public class CudaRuntimeTests
{
    [Test]
    public void TheDriverBindingLoadsAndCuInitAnswers()
    {
        if (!CudaLibraries.TryLoad(CudaLibraries.DriverName, out var problem)) Assert.Ignore($"libcuda not found: {problem}");
        int r = CuDriver.cuInit(0);
        // without a GPU the driver says "no device" (100) or that no driver kernel module is loaded (999/35); with one, success
        Assert.That(
            r, Is.EqualTo(CuDriver.CUDA_SUCCESS).Or.EqualTo(CuDriver.CUDA_ERROR_NO_DEVICE).Or.EqualTo(999).Or.EqualTo(35).Or.EqualTo(34),
            $"cuInit returned {CudaException.DriverErrorName(r)}");
        Assert.That(
            CudaException.DriverErrorName(CuDriver.CUDA_ERROR_NO_DEVICE), Is.EqualTo("CUDA_ERROR_NO_DEVICE"), "cuGetErrorName works");
        if (r == CuDriver.CUDA_SUCCESS)
        {
            CudaException.Check(CuDriver.cuDeviceGetCount(out int n), "cuDeviceGetCount");
            Assert.That(n, Is.GreaterThanOrEqualTo(0));
        }
        else Assert.That(CudaBackend.DeviceCount(out var why), Is.Zero);
    }

    [Test]
    public void ACheckedFailureNamesTheErrorTheCallAndTheOp()
    {
        if (!CudaLibraries.TryLoad(CudaLibraries.DriverName, out var problem)) Assert.Ignore($"libcuda not found: {problem}");
        SoftwareGpu.TakeDiagnostic();   // on the software GPU: no diagnostic of an earlier test's failure may ride along
        var e = Assert.Throws<CudaException>(() => CudaException.Check(CuDriver.CUDA_ERROR_NO_DEVICE, "cuDeviceGet", "AttentionForward"));
        Assert.That(e!.Message, Is.EqualTo("CUDA_ERROR_NO_DEVICE from cuDeviceGet in AttentionForward"));
        Assert.That(Cublas.StatusName(13), Is.EqualTo("CUBLAS_STATUS_EXECUTION_FAILED"));
        if (CudaLibraries.TryLoad(CudaLibraries.NvrtcName, out _))
            Assert.That(CudaException.NvrtcErrorName(6), Is.EqualTo("NVRTC_ERROR_COMPILATION"));
    }

    [Test]
    public void DiscoveryHonoursTheOverrideFolderAndNothingElse()
    {
        var dir = Path.Combine(Path.GetTempPath(), "whittle-libdir-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var old = Environment.GetEnvironmentVariable(CudaLibraries.OverrideVariable);
        try
        {
            Environment.SetEnvironmentVariable(CudaLibraries.OverrideVariable, dir);
            Assert.That(
                CudaLibraries.SearchFolders(CudaLibraries.NvrtcName), Is.EqualTo(new[] { dir }), "the override is the only place searched");
            CudaLibraries.ResetForTests();
            // an empty override folder: NVRTC is not found even though the system has one, and the message names the variable
            Assert.That(CudaLibraries.TryLoad(CudaLibraries.CublasName, out var problem), Is.False);
            Assert.That(problem, Does.Contain(CudaLibraries.OverrideVariable));

            var system = Directory.GetFiles("/lib/x86_64-linux-gnu", "libnvrtc.so.11.2").Concat(
                Directory.GetFiles("/usr/lib/x86_64-linux-gnu", "libnvrtc.so.11.2")).FirstOrDefault();
            if (system is null) Assert.Ignore("no libnvrtc.so.11.2 on this machine to copy into an override folder");
            File.Copy(system, Path.Combine(dir, "libnvrtc.so.11.2"));
            CudaLibraries.ResetForTests();
            var r = CudaLibraries.Load(CudaLibraries.NvrtcName);
            Assert.That(r.Path, Is.EqualTo(Path.Combine(dir, "libnvrtc.so.11.2")), "loaded from the override folder, by full path");
        }
        finally
        {
            Environment.SetEnvironmentVariable(CudaLibraries.OverrideVariable, old);
            CudaLibraries.ResetForTests();
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void DefaultSearchOrderIsToolkitThenLoaderThenWheels()
    {
        var old = (Environment.GetEnvironmentVariable(CudaLibraries.OverrideVariable), Environment.GetEnvironmentVariable("CUDA_HOME"));
        try
        {
            Environment.SetEnvironmentVariable(CudaLibraries.OverrideVariable, null);
            Environment.SetEnvironmentVariable("CUDA_HOME", "/opt/cuda-x");
            var dirs = CudaLibraries.SearchFolders(CudaLibraries.CublasName);
            Assert.That(dirs[0], Is.EqualTo("/opt/cuda-x/lib64"));
            Assert.That(dirs.IndexOf("/usr/local/cuda/lib64"), Is.LessThan(dirs.IndexOf(null)), "toolkit before the system loader");
            Assert.That(
                CudaLibraries.SearchFolders(CudaLibraries.DriverName), Does.Not.Contain("/opt/cuda-x/lib64"),
                "the driver never comes from a toolkit");
            Assert.That(
                CudaLibraries.FileNames(CudaLibraries.NvrtcName),
                Is.EqualTo(new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so" }));
        }
        finally
        {
            Environment.SetEnvironmentVariable(CudaLibraries.OverrideVariable, old.Item1);
            Environment.SetEnvironmentVariable("CUDA_HOME", old.Item2);
        }
    }

    [Test]
    public void TheSecondCompileHitsTheCacheAndACorruptEntryIsRebuilt()
    {
        if (!CudaLibraries.TryLoad(CudaLibraries.NvrtcName, out var problem)) Assert.Ignore($"NVRTC not found: {problem}");
        var dir = Path.Combine(Path.GetTempPath(), "whittle-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            var first = new KernelCompiler(dir).Compile("gelu.cu", 80, KernelBinary.Ptx);
            Assert.That(first.FromCache, Is.False);
            var file = Path.Combine(dir, first.Key + ".ptx");
            Assert.That(File.Exists(file));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file left behind");

            var compiler = new KernelCompiler(dir);  // a new process, in effect
            var second = compiler.Compile("gelu.cu", 80, KernelBinary.Ptx);
            Assert.That(second.FromCache, Is.True);
            Assert.That((compiler.CacheHits, compiler.Compilations), Is.EqualTo((1, 0)));
            Assert.That(second.Image, Is.EqualTo(first.Image));

            // flip one byte of the PTX: the stored hash no longer matches, so the entry is rebuilt and rewritten
            var bytes = File.ReadAllBytes(file);
            bytes[bytes.Length / 2] ^= 0x20;
            File.WriteAllBytes(file, bytes);
            var third = compiler.Compile("gelu.cu", 80, KernelBinary.Ptx);
            Assert.That(third.FromCache, Is.False);
            Assert.That(compiler.CorruptEntriesRebuilt, Is.EqualTo(1));
            Assert.That(third.Image, Is.EqualTo(first.Image));
            Assert.That(compiler.Compile("gelu.cu", 80, KernelBinary.Ptx).FromCache, Is.True, "the rewritten entry is good");

            File.WriteAllBytes(file, bytes.AsSpan(0, 20).ToArray());  // truncated
            Assert.That(compiler.Compile("gelu.cu", 80, KernelBinary.Ptx).FromCache, Is.False);

            var other = compiler.Compile("gelu.cu", 90, KernelBinary.Ptx);
            Assert.That(other.Key, Is.Not.EqualTo(first.Key), "the arch is part of the key");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    [Test]
    public void ConcurrentCompilesOfOneKernelLeaveOneGoodEntry()
    {
        if (!CudaLibraries.TryLoad(CudaLibraries.NvrtcName, out var problem)) Assert.Ignore($"NVRTC not found: {problem}");
        var dir = Path.Combine(Path.GetTempPath(), "whittle-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            var images = new byte[4][];
            Parallel.For(0, 4, i => images[i] = new KernelCompiler(dir).Compile("adamw.cu", 90, KernelBinary.Ptx).Image);
            Assert.That(images.Distinct(new BytesEq()).Count(), Is.EqualTo(1));
            Assert.That(Directory.GetFiles(dir).Select(Path.GetExtension), Is.EqualTo(new[] { ".ptx" }));
            var c = new KernelCompiler(dir);
            Assert.That(c.Compile("adamw.cu", 90, KernelBinary.Ptx).FromCache, Is.True);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    sealed class BytesEq : IEqualityComparer<byte[]>
    {
        public bool Equals(byte[]? a, byte[]? b) => a.AsSpan().SequenceEqual(b);
        public int GetHashCode(byte[] a) => a.Length;
    }

    [Test]
    public void AllocatorBucketsBoundTheWaste()
    {
        Assert.That(DeviceAllocator.BucketSize(0), Is.Zero);
        Assert.That(DeviceAllocator.BucketSize(1), Is.EqualTo(512));
        Assert.That(DeviceAllocator.BucketSize(513), Is.EqualTo(1024));
        Assert.That(DeviceAllocator.BucketSize(1 << 20), Is.EqualTo(1 << 20));
        Assert.That(DeviceAllocator.BucketSize((1 << 20) + 1), Is.EqualTo(2 << 20));
        Assert.That(DeviceAllocator.BucketSize((5L << 20) + 7), Is.EqualTo(6L << 20));
    }

    [Test]
    public void KernelArgumentStructsMatchTheirCudaLayout()
    {
        // struct StridedLayout { int rank; int shape[6]; long long srcStride[6]; long long dstStride[6]; } is 128 bytes, strides at 32
        Assert.That(Marshal.SizeOf<StridedLayout>(), Is.EqualTo(128));
        Assert.That(Marshal.OffsetOf<StridedLayout>(nameof(StridedLayout.SrcStride)).ToInt32(), Is.EqualTo(32));
        Assert.That(Marshal.SizeOf<Bthd>(), Is.EqualTo(24));
    }
}

/// <summary>Tests that need a GPU: parity against the CPU and the allocator's steady state. They skip, with the reason, without
/// one.</summary>
[NonParallelizable]
public class CudaDeviceTests
{
    CudaBackend? _gpu;

    [OneTimeSetUp]
    public void OpenDevice()
    {
        _gpu = TestBackends.CudaOrIgnore();
    }

    [OneTimeTearDown]
    public void Close() => _gpu?.Dispose();

    [Test]
    public void SteadyStateStepsMakeNoDriverAllocations()
    {
        var gpu = _gpu!;
        void Step()
        {
            using var a = gpu.Zeros(DType.F32, 64, 128); using var b = gpu.Zeros(DType.F32, 128, 96);
            using var c = gpu.Empty(DType.F32, 64, 96);
            gpu.MatMul(a, false, b, false, c);
            using var y = gpu.Empty(DType.F32, 64, 96);
            gpu.GeluForward(c, y, false);
            gpu.SumOfSquares(y);
        }
        Step();
        long before = gpu.Allocator.DriverAllocations;
        for (int i = 0; i < 5; i++) Step();
        Assert.That(gpu.Allocator.DriverAllocations, Is.EqualTo(before));
        Assert.That(gpu.Allocator.CacheHits, Is.GreaterThan(0));
    }

    [Test]
    public void RoundTripThroughTheDevice()
    {
        var data = Enumerable.Range(0, 10_000).Select(i => i * 0.5f).ToArray();
        using var host = Tensor.FromArray(data, 100, 100);
        using var dev = _gpu!.FromHost(host);
        Assert.That(dev.ToFloatArray(), Is.EqualTo(data));
    }

    [Test]
    public void WholeModelsMatchCpu()
    {
        using var cpu = new Whittle.Native.Cpu.CpuBackend();
        var results = new ModelParity(cpu, _gpu!, _gpu!.AllowTf32).Run();
        TestContext.Out.WriteLine(string.Join("\n", results));
        Assert.That(results.Where(r => !r.Passed), Is.Empty);
    }

    [Test]
    public void ModelTrainingStepsAfterWarmUpMakeNoDriverAllocations()
    {
        var r = ModelParity.SteadyStateAllocations(_gpu!);
        Assert.That(r.MaxRelativeError, Is.Zero, r.Case);
    }

    [Test]
    public void CudaMatchesCpuOnEveryOp()
    {
        using var cpu = new Whittle.Native.Cpu.CpuBackend();
        var results = new ParityHarness(cpu, _gpu!).Run();
        TestContext.Out.WriteLine(string.Join("\n", results));
        Assert.That(results.Where(r => !r.Passed), Is.Empty);
    }
}

/// <summary>The parity harness itself, CPU against CPU: identical backends must agree exactly on every op and case.</summary>
public class ParityHarnessTests
{
    [Test]
    public void CpuAgainstItselfHasZeroErrorOnEveryOp()
    {
        using var a = new Whittle.Native.Cpu.CpuBackend();
        using var b = new Whittle.Native.Cpu.CpuBackend();
        var results = new ParityHarness(a, b).Run();
        Assert.That(results.Select(r => r.Op).Distinct().Count(), Is.GreaterThanOrEqualTo(22), "every op is exercised");
        Assert.That(results.Where(r => r.MaxRelativeError != 0), Is.Empty);
    }

    [Test]
    public void RelativeErrorIsMaxNormAndNaNFails()
    {
        Assert.That(ParityHarness.RelativeError([1f, -4f, 2f], [1f, -4f, 2.004f]), Is.EqualTo(0.001).Within(1e-6));
        Assert.That(ParityHarness.RelativeError([1f, 2f], [1f, float.NaN]), Is.EqualTo(double.PositiveInfinity));
        Assert.That(new ParityResult("x", "y", double.NaN, 1).Passed, Is.False);
    }
}
