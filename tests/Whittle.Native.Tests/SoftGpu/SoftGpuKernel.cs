using System.Text;
using Whittle.Native.Cuda;
using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// The test tree's kernels (SoftGpu/kernels/*.cu) as the engine would run them: compiled by NVRTC, loaded with
/// cuModuleLoadData, launched with cuLaunchKernel from a <see cref="KernelArgs"/> block, on a backend's context. The
/// software GPU has them compiled in (softgpu/build.sh); tests using them skip without the software GPU.
/// </summary>
sealed unsafe class SoftGpuKernel : IDisposable
{
    readonly nint _module;
    readonly KernelArgs _args = new();

    public SoftGpuKernel(string file)
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "SoftGpu", "kernels", file);
        var image = KernelCompiler.CompileSource(file, File.ReadAllText(path), 90);
        fixed (byte* p = image) CudaException.Check(CuDriver.cuModuleLoadData(out _module, p), "cuModuleLoadData", file);
    }

    /// <summary>Skips the calling test unless the CUDA driver loaded is the software GPU.</summary>
    public static void RequireSoftwareGpu()
    {
        if (CudaBackend.DeviceCount(out var why) == 0) Assert.Ignore($"no CUDA device: {why}");
        if (!SoftwareGpu.IsActive)
            Assert.Ignore("the CUDA driver is not the software GPU (bash softgpu/build.sh; WHITTLE_CUDA_LIB_DIR=softgpu/build/lib)");
    }

    /// <summary>The source line (1-based) of the first line of <paramref name="file"/> containing <paramref name="text"/>.</summary>
    public static int LineOf(string file, string text)
    {
        var lines = File.ReadAllLines(Path.Combine(TestContext.CurrentContext.TestDirectory, "SoftGpu", "kernels", file));
        int i = Array.FindIndex(lines, l => l.Contains(text, StringComparison.Ordinal));
        Assert.That(i, Is.GreaterThanOrEqualTo(0), $"'{text}' in {file}");
        return i + 1;
    }

    public KernelArgs Args() => _args.Reset();

    /// <summary>Launches on the legacy stream and synchronises; a failure throws the checked CudaException.</summary>
    public void Launch(string kernel, uint grid, uint block, KernelArgs args)
    {
        var name = Encoding.UTF8.GetBytes(kernel + "\0");
        nint f;
        fixed (byte* n = name) CudaException.Check(CuDriver.cuModuleGetFunction(out f, _module, n), "cuModuleGetFunction", kernel);
        CudaException.Check(
            CuDriver.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, 0, args.Pointers, null), $"cuLaunchKernel({kernel})", kernel);
        CudaException.Check(CuDriver.cuCtxSynchronize(), "cuCtxSynchronize", kernel);
    }

    public void Dispose()
    {
        CuDriver.cuModuleUnload(_module);
        _args.Dispose();
    }
}

/// <summary>Sets software GPU knobs for one test and puts back the values they had.</summary>
sealed class SoftGpuOptions : IDisposable
{
    readonly List<(string Name, int Value)> _previous = new();

    public SoftGpuOptions Set(string name, int value)
    {
        var before = SoftwareGpu.GetOption(name);
        Assert.That(before, Is.Not.Null, $"software GPU option {name}");
        Assert.That(SoftwareGpu.SetOption(name, value), Is.True, $"software GPU option {name} = {value}");
        _previous.Add((name, before!.Value));
        return this;
    }

    public void Dispose()
    {
        for (int i = _previous.Count - 1; i >= 0; i--) SoftwareGpu.SetOption(_previous[i].Name, _previous[i].Value);
        SoftwareGpu.TakeDiagnostic();
    }
}
