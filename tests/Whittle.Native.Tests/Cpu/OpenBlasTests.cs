using Whittle.Native.Cpu;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Tests.Cpu;

// Policy: the OpenBLAS path must compute what our GEMM computes. Both are checked against the same independent
// double-precision triple loop, with the error scaled as in GemmTests (Σ|terms|: fp32 rounding of a length-k dot product
// is ~sqrt(k)·6e-8 of it, so 1e-5 catches any wrong index, transpose, leading dimension, alpha or beta), and against each
// other. Operands live in strided buffers whose padding is NaN (A, B) or a sentinel (C), so a read or write outside the
// logical matrix shows. Skipped, with the loader's message, where libopenblas is not installed.
[NonParallelizable] // OpenBLAS's thread count is process-wide.
public unsafe class OpenBlasTests
{
    const double Tolerance = 1e-5;
    const float Sentinel = -777.25f;

    [SetUp]
    public void RequireOpenBlas()
    {
        if (!OpenBlas.TryLoad(out var problem)) Assert.Ignore($"OpenBLAS is not installed here: {problem}");
    }

    static float[] Buffer(int rows, int cols, long ld, Random rng, float pad)
    {
        var data = new float[(rows - 1) * ld + cols];
        Array.Fill(data, pad);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                data[i * ld + j] = (float)(rng.NextDouble() * 2 - 1);
        return data;
    }

    /// <summary>One case through both GEMMs from the same starting C; returns the worst scaled error of either.</summary>
    static double Check(Random rng, bool transA, bool transB, int m, int n, int k, float alpha, float beta, int padA, int padB, int padC)
    {
        long lda = (transA ? m : k) + padA, ldb = (transB ? k : n) + padB, ldc = n + padC;
        var a = transA ? Buffer(k, m, lda, rng, float.NaN) : Buffer(m, k, lda, rng, float.NaN);
        var b = transB ? Buffer(n, k, ldb, rng, float.NaN) : Buffer(k, n, ldb, rng, float.NaN);
        var c0 = Buffer(m, n, ldc, rng, Sentinel);
        if (beta == 0f)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) c0[i * ldc + j] = float.NaN;   // beta = 0: C must not be read
        var ours = (float[])c0.Clone(); var blas = (float[])c0.Clone();
        fixed (float* pa = a, pb = b, po = ours, pl = blas)
        {
            Gemm.Sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, po, ldc);
            OpenBlas.Sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pl, ldc);
        }
        string what = $"{(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} m={m} n={n} k={k} alpha={alpha} beta={beta} lda={lda} ldb={ldb} " +
            $"ldc={ldc}";
        double worst = 0;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, scale = 0;
                for (int p = 0; p < k; p++)
                {
                    double t = (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                    sum += t; scale += Math.Abs(t);
                }
                double old = beta == 0f ? 0 : c0[i * ldc + j];
                double expected = alpha * sum + beta * old;
                scale = Math.Max(Math.Abs(alpha) * scale + Math.Abs(beta * old), 1e-30);
                float o = ours[i * ldc + j], l = blas[i * ldc + j];
                Assert.That(float.IsFinite(l), $"OpenBLAS C[{i},{j}] = {l} (NaN leaked) for {what}");
                worst = Math.Max(worst, Math.Max(Math.Abs(o - expected), Math.Abs(l - expected)) / scale);
                Assert.That(Math.Abs(o - l) / scale, Is.LessThanOrEqualTo(2 * Tolerance), $"ours vs OpenBLAS at C[{i},{j}] for {what}");
            }
            for (long j = n; j < ldc && i < m - 1; j++)
                Assert.That(blas[i * ldc + j], Is.EqualTo(Sentinel), $"OpenBLAS wrote padding of C row {i} column {j} for {what}");
        }
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance), what);
        return worst;
    }

    [Test]
    public void AllTransposesWithStridesMatchOursAndTheDoubleReference(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        var rng = new Random(900 + (transA ? 2 : 0) + (transB ? 1 : 0));
        float[] alphas = [1f, -0.5f, 2.25f];
        float[] betas = [0f, 1f, 0.5f];
        for (int trial = 0; trial < 12; trial++)
        {
            int Size() => rng.Next(3) == 0 ? rng.Next(100, 400) : rng.Next(1, 40);
            Check(rng, transA, transB, Size(), Size(), Size(), alphas[trial % 3], betas[trial % 3], rng.Next(0, 9), rng.Next(0, 9),
                rng.Next(0, 9));
        }
    }

    [Test]
    public void BetaOneAccumulatesLikeAWeightGradient(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        // dW += gᵀ x and dx += g W: beta = 1 on a C that already holds a previous micro-batch's gradient; k past one block.
        Check(new Random(31), transA, transB, 130, 96, 700, 1f, 1f, 3, 0, 5);
    }

    [Test]
    public void BackendMatMulWithOpenBlasMatchesOurs()
    {
        // The MatMul a linear layer issues: y = x Wᵀ + bias, then dW += gᵀ x, through each backend.
        var rng = new Random(12);
        float[] Rand(int count) { var d = new float[count];
        for (int i = 0; i < count; i++) d[i] = (float)(rng.NextDouble() * 2 - 1); return d; }
        var (x, w, bias, dw) = (Rand(300 * 64), Rand(48 * 64), Rand(48), Rand(48 * 64));
        float[] Run(CpuBackend backend)
        {
            using var tx = Tensor.FromArray(x, 300, 64); using var tw = Tensor.FromArray(w, 48, 64);
            using var tb = Tensor.FromArray(bias, 48);
            using var y = backend.Zeros(Whittle.Native.Tensors.DType.F32, 300, 48);
            using var g = Tensor.FromArray(Rand(300 * 48), 300, 48); using var tdw = Tensor.FromArray((float[])dw.Clone(), 48, 64);
            backend.MatMul(tx, false, tw, true, y, bias: tb);
            backend.MatMul(g, true, tx, false, tdw, beta: 1f);
            return [.. y.ToFloatArray(), .. tdw.ToFloatArray()];
        }
        var blasBackend = new CpuBackend(CpuGemm.OpenBlas);
        Assert.That(blasBackend.GemmChoice, Is.EqualTo(CpuGemm.OpenBlas));
        Assert.That(blasBackend.Name, Does.Contain("openblas"));
        var seed = rng.Next();
        rng = new Random(seed); var viaBlas = Run(blasBackend);
        rng = new Random(seed); var viaOurs = Run(new CpuBackend(CpuGemm.Ours));
        // 1e-4 absolute: the outputs are f32 dot products of length 64 and 300 of values in [-1, 1]; two summation orders
        // differ by about 2^-24·sqrt(Σ partial sums²) ≈ 2^-24·70 ≈ 4e-6 for the longer one (random walk, as in GemmTests),
        // so 1e-4 is a 25× margin that a wrong transpose or bias (errors of order 1) cannot hide in.
        Assert.That(viaBlas, Is.EqualTo(viaOurs).Within(1e-4f));
        Assert.That(viaBlas, Is.Not.EqualTo(new float[viaBlas.Length]), "a zero result would match trivially");
    }

    /// <summary>Auto takes OpenBLAS when it loads, unless it runs a pre-AVX-512 core's kernels where ours runs AVX-512.</summary>
    [Test]
    public void AutoTakesOpenBlasWhenItLoadsUnlessItsCoreIsOlderThanOurKernel()
    {
        string? core = OpenBlas.CoreName;
        bool ours = CpuGemmChoice.Supports(Gemm.Kernel.Avx512) && core is not null &&
            new[] { "haswell", "sandybridge", "nehalem" }.Contains(core.ToLowerInvariant());
        TestContext.Out.WriteLine(
            $"OpenBLAS core {core ?? "(not reported)"}; our AVX-512 kernel {CpuGemmChoice.Supports(Gemm.Kernel.Avx512)}");
        Assert.That(new CpuBackend(CpuGemm.Auto).GemmChoice, Is.EqualTo(ours ? CpuGemm.Ours : CpuGemm.OpenBlas));
    }

    [TestCase(true, "Haswell", true)]
    [TestCase(true, "SANDYBRIDGE", true)]
    [TestCase(false, "Haswell", false)]   // ours without AVX-512 is no faster than OpenBLAS's AVX2 kernels
    [TestCase(true, "SkylakeX", false)]
    [TestCase(true, "Cooperlake", false)]
    [TestCase(true, "SapphireRapids", false)]
    [TestCase(true, "Zen", false)]        // Zen 4 runs AVX-512 kernels in newer OpenBLAS builds
    [TestCase(true, null, false)]
    public void AutoPrefersOursOnlyOverPreAvx512Cores(bool oursHasAvx512, string? core, bool expected) =>
        Assert.That(CpuGemmChoice.PrefersOurs(oursHasAvx512, core), Is.EqualTo(expected));

    [Test]
    public void ThreadCountFollowsTheBackend()
    {
        _ = new CpuBackend(CpuGemm.OpenBlas);
        int threads = OpenBlas.Threads;
        if (threads == 0) Assert.Ignore("this OpenBLAS build does not report its thread count");
        Assert.That(threads, Is.EqualTo(Environment.ProcessorCount));
        TestContext.Out.WriteLine($"{OpenBlas.LoadedPath}: {OpenBlas.Config}, {threads} threads");
    }
}

/// <summary>The GEMM choice's parsing and the library search, which need no OpenBLAS.</summary>
public class CpuGemmChoiceTests
{
    [Test]
    public void ParsesTheThreeChoicesAndRejectsOthers()
    {
        Assert.That(CpuGemmChoice.Parse("ours", "x"), Is.EqualTo(CpuGemm.Ours));
        Assert.That(CpuGemmChoice.Parse(" OpenBLAS ", "x"), Is.EqualTo(CpuGemm.OpenBlas));
        Assert.That(CpuGemmChoice.Parse(null, "x"), Is.EqualTo(CpuGemm.Auto));
        Assert.That(CpuGemmChoice.Parse("auto", "x"), Is.EqualTo(CpuGemm.Auto));
        var ex = Assert.Throws<WhittleException>(() => CpuGemmChoice.Parse("mkl", CpuGemmChoice.Variable));
        Assert.That(ex!.Message, Does.Contain(CpuGemmChoice.Variable).And.Contain("mkl").And.Contain("openblas"));
    }

    [Test]
    public void OursIsAlwaysAvailable() => Assert.That(new CpuBackend(CpuGemm.Ours).GemmChoice, Is.EqualTo(CpuGemm.Ours));

    [Test]
    public void ParsesTheForcedKernelsAndNamesThemBack()
    {
        foreach (var name in CpuGemmChoice.Names)
            Assert.That(CpuGemmChoice.Name(CpuGemmChoice.Parse(name.ToUpperInvariant(), "x")), Is.EqualTo(name));
        var ex = Assert.Throws<WhittleException>(() => CpuGemmChoice.Parse("ours-avx", CpuGemmChoice.Variable));
        Assert.That(ex!.Message, Does.Contain("ours-avx512").And.Contain("ours-scalar"));
    }

    /// <summary>A forced path runs that micro-kernel and nothing else: its MatMul equals Gemm.Sgemm pinned to the same
    /// kernel bit for bit, and every supported kernel equals the scalar one where the CPU has FMA (the same FMA chain per
    /// element, Gemm.cs), so a kernel silently swapped or mis-tiled shows up.</summary>
    [Test]
    public unsafe void EachSupportedForcedPathRunsItsKernel()
    {
        var rng = new Random(3);
        var a = Enumerable.Range(0, 37 * 300).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, 300 * 45).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] Via(CpuBackend backend)
        {
            using var ta = Tensor.FromArray(a, 37, 300); using var tb = Tensor.FromArray(b, 300, 45);
            using var c = backend.Zeros(Whittle.Native.Tensors.DType.F32, 37, 45);
            backend.MatMul(ta, false, tb, false, c);
            return c.ToFloatArray();
        }
        var scalar = Via(new CpuBackend(CpuGemm.OursScalar));
        var paths = CpuGemmChoice.SupportedPaths().Where(p => p.StartsWith("ours-")).ToList();
        Assert.That(paths, Does.Contain("ours-scalar"));
        foreach (var path in paths)
        {
            var backend = new CpuBackend(CpuGemmChoice.Parse(path, "x"));
            Assert.That(backend.Name, Does.Contain(path));
            var got = Via(backend);
            if (System.Runtime.Intrinsics.X86.Fma.IsSupported) Assert.That(got, Is.EqualTo(scalar), path);
            else Assert.That(got, Is.EqualTo(scalar).Within(1e-4f), path);   // no FMA: the scalar loop rounds products separately
        }
    }

    /// <summary>A path the CPU lacks is refused with one line naming it and what the machine has, exit 1. The runtime's
    /// own switch (DOTNET_EnableAVX512=0) makes any AVX-512 machine one that lacks AVX-512, so this runs everywhere.</summary>
    [Test]
    public void AForcedKernelTheCpuLacksIsRefused()
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll"));
        foreach (var arg in new[] { "bench", "train", "--config", "small", "--steps", "1", "--warmup", "0" }) psi.ArgumentList.Add(arg);
        psi.Environment["DOTNET_EnableAVX512"] = "0";
        psi.Environment["DOTNET_EnableAVX512F"] = "0";
        psi.Environment[CpuGemmChoice.Variable] = "ours-avx512";
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        Assert.That(p.WaitForExit(120_000), Is.True);
        Assert.That(p.ExitCode, Is.EqualTo(1), stderr);
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stderr, Does.Contain("ours-avx512").And.Contain("AVX-512F").And.Contain("ours-scalar"));
        Assert.That(stdout.Result, Does.Not.Contain("tok/s"), "refused before any work");
    }

    [Test, NonParallelizable]
    public void OverrideVariableIsTheOnlyCandidateWhenSet()
    {
        var before = Environment.GetEnvironmentVariable(OpenBlas.OverrideVariable);
        try
        {
            Environment.SetEnvironmentVariable(OpenBlas.OverrideVariable, "/nowhere/libopenblas.so.0");
            Assert.That(OpenBlas.Candidates(), Is.EqualTo(new[] { "/nowhere/libopenblas.so.0" }));
            Environment.SetEnvironmentVariable(OpenBlas.OverrideVariable, null);
            Assert.That(
                OpenBlas.Candidates(), Does.Contain("libopenblas.so.0").Or.Contain("libopenblas.dll").Or.Contain("libopenblas.dylib"));
        }
        finally { Environment.SetEnvironmentVariable(OpenBlas.OverrideVariable, before); }
    }
}
