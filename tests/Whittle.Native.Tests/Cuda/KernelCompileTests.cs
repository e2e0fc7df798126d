using Whittle.Native.Cuda;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// Every kernel file must compile with NVRTC, with no error and no warning, for compute_80 and compute_90 (the archs of
/// A100 and H100). Runs without a GPU: NVRTC is a plain library. Skips only when NVRTC itself cannot be loaded. The
/// compiles here are strict (a warning fails them), so CI rejects any warning its NVRTC gives; outside strict mode a
/// warning is logged and the kernel used (a newer NVRTC on a GPU machine must not cost the session).
/// </summary>
[NonParallelizable]
public class KernelCompileTests
{
    string _cache = "";

    [SetUp]
    public void RequireNvrtc()
    {
        if (!CudaLibraries.TryLoad(CudaLibraries.NvrtcName, out var problem)) Assert.Ignore($"NVRTC not found: {problem}");
        _cache = Path.Combine(Path.GetTempPath(), "whittle-kernel-test-" + Guid.NewGuid().ToString("N"));
    }

    [TearDown]
    public void RemoveCache() { if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true); }

    public static IEnumerable<string> Files() => KernelCompiler.KernelFiles;

    [Test]
    public void TheExpectedKernelFilesAreEmbedded()
    {
        Assert.That(KernelCompiler.KernelFiles, Is.SupersetOf(new[]
        {
            "adamw.cu", "attention.cu", "crossentropy.cu", "distillation.cu", "elementwise.cu", "embedding.cu", "gelu.cu", "layernorm.cu",
                "reduce.cu", "rotary.cu",
        }));
    }

    [Test]
    public void EveryKernelFileCompilesWithoutWarningsForCompute80And90([ValueSource(nameof(Files))] string file, [Values(80, 90)] int arch)
    {
        var compiler = new KernelCompiler(_cache, strict: true);
        var k = compiler.Compile(file, arch, KernelBinary.Ptx);  // throws KernelCompileException with NVRTC's log on any warning
        var ptx = System.Text.Encoding.ASCII.GetString(k.Image).TrimEnd('\0');
        Assert.That(ptx, Does.Contain($".target sm_{arch}"), "PTX for the requested virtual architecture");
        // every extern "C" __global__ in the source is an entry point of the PTX, under its own (unmangled) name
        var source = KernelCompiler.ReadSource(file);
        var names = System.Text.RegularExpressions.Regex.Matches(
            source, @"extern ""C"" __global__ (?:__launch_bounds__\([^)]*\) )?void (\w+)").Select(m => m.Groups[1].Value).ToArray();
        Assert.That(names, Is.Not.Empty);
        foreach (var n in names) Assert.That(ptx, Does.Contain($".entry {n}("), $"kernel {n} in the PTX of {file}");
    }

    /// <summary>
    /// PTX is only text to NVRTC: inline PTX (the tensor-core mma in attention_mma.cu) and register allocation are checked
    /// by ptxas, which a CUBIN build runs. So every file must also assemble for the real sm_80 and sm_90.
    /// </summary>
    [Test]
    public void EveryKernelFileAssemblesToCubinForSm80And90([ValueSource(nameof(Files))] string file, [Values(80, 90)] int arch)
    {
        var k = new KernelCompiler(_cache, strict: true).Compile(file, arch, KernelBinary.Cubin);
        Assert.That(
            k.Image.AsSpan(0, 4).ToArray(), Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), "a CUBIN is an ELF image");
    }

    [Test]
    public void EveryKernelFileStartsWithItsPolicyComment([ValueSource(nameof(Files))] string file)
    {
        var source = KernelCompiler.ReadSource(file);
        Assert.That(source, Does.StartWith($"// {file}:"));
        Assert.That(source, Does.Contain("Matches CpuBackend."), "names the CPU function it must match");
        Assert.That(source, Does.Contain("Launch"), "states its launch shape");
    }

    [Test]
    public void ABrokenKernelFailsWithNvrtcsLog()
    {
        var e = Assert.Throws<KernelCompileException>(
            () => KernelCompiler.CompileSource("broken.cu", "extern \"C\" __global__ void f(float* x) { x[0] = undefined_name; }", 80));
        Assert.That(e!.Log, Does.Contain("undefined_name"));
    }

    [Test]
    public void AWarningIsAFailure()
    {
        // an unused variable is a warning in NVRTC (set but never used), not an error
        var e = Assert.Throws<KernelCompileException>(() => KernelCompiler.CompileSource("warn.cu",
            "extern \"C\" __global__ void f(float* x) { int unused = 1; x[0] = 1.0f; }", 80));
        Assert.That(e!.Log, Does.Contain("warning"));
    }

    [Test]
    public void OutsideStrictModeAWarningIsLoggedAndTheKernelCompiles()
    {
        var logged = new List<string>();
        var sink = KernelCompiler.WarningSink;
        KernelCompiler.WarningSink = logged.Add;
        try
        {
            var image = KernelCompiler.CompileSource("warn.cu", "extern \"C\" __global__ void f(float* x) { int unused = 1; x[0] = 1.0f; }",
                80, strict: false);
            Assert.That(System.Text.Encoding.ASCII.GetString(image), Does.Contain(".entry f("), "compiled");
        }
        finally { KernelCompiler.WarningSink = sink; }
        Assert.That(logged, Has.Count.EqualTo(1));
        Assert.That(logged[0], Does.Contain("warn.cu").And.Contain("warning").And.Contain(KernelCompiler.StrictVariable));
    }

    [Test]
    public void StrictModeComesFromTheEnvironmentUnlessGiven()
    {
        var saved = Environment.GetEnvironmentVariable(KernelCompiler.StrictVariable);
        try
        {
            Environment.SetEnvironmentVariable(KernelCompiler.StrictVariable, "1");
            Assert.That(new KernelCompiler(_cache).Strict, Is.True);
            Assert.That(new KernelCompiler(_cache, strict: false).Strict, Is.False);
            Environment.SetEnvironmentVariable(KernelCompiler.StrictVariable, null);
            Assert.That(new KernelCompiler(_cache).Strict, Is.False);
        }
        finally { Environment.SetEnvironmentVariable(KernelCompiler.StrictVariable, saved); }
    }
}
