using System.Diagnostics;
using Whittle.Native.Cpu;
using Whittle.Native.Tests.Model;

namespace Whittle.Native.Tests.Cpu;

/// <summary>
/// The AVX512-BF16 bf16 GEMM (Gemm.Bf16DotGemm on Avx512Bf16Kernel's vdpbf16ps machine code), where this CPU has it
/// (elsewhere the kernel tests are ignored with the reason; the detection and byte checks run everywhere they can).
///  - Detection against an independent source: /proc/cpuinfo's avx512_bf16 flag (the kernel's test is CPUID).
///  - The embedded bytes against the assembled source (Avx512Bf16Kernel.S, through GNU as when it is installed).
///  - Every C element against the exact sum in float64 of the products of the bf16 values (exact themselves in f32 and
///    f64). The GEMM adds k exact products to an f32 accumulator and then, per KC block, writes alpha·acc + beta·C (or
///    alpha·acc + C for later blocks): a recursive f32 sum of at most k + 2·blocks + 2 rounded operations over terms of
///    total magnitude S = |alpha|·Σ_p |a_p b_p| + |beta·c0|, hence |C − exact| ≤ γ_n·S with n that count and
///    γ_n = n·2^-24 / (1 − n·2^-24) (Higham, recursive summation), plus k·2^-126 for results that vdpbf16ps flushes to
///    zero (denormals). Whatever association a CPU uses inside a pair (Intel's manual: two roundings; one fused rounding
///    would be tighter), the bound holds. Padding inside the leading dimensions is bf16 NaN, so a read outside the
///    logical matrix shows as NaN; shapes cross KC, MC and tile edges, odd k (a half pair) and odd leading dimensions.
///  - Reproducibility: bit-identical for any thread count, like the f32 GEMM.
/// </summary>
[NonParallelizable] // Gemm.ThreadCountOverride is a process-wide switch.
public unsafe class Avx512Bf16KernelTests
{
    const ushort Bf16NaN = 0x7FC0;

    static void RequireKernel()
    {
        if (!Avx512Bf16Kernel.TryGet(out var problem)) Assert.Ignore($"the AVX512-BF16 kernel cannot run here: {problem}");
    }

    static float Widen(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>(rows, cols) bf16 bits with row stride ld, values in (-1, 1); the padding holds NaN.</summary>
    static ushort[] RandomBf16(Random rng, int rows, int cols, int ld)
    {
        var data = new ushort[(rows - 1) * ld + cols];
        Array.Fill(data, Bf16NaN);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                data[i * ld + j] = Bf16Tests.ReferenceRne((float)(rng.NextDouble() * 2 - 1));
        return data;
    }

    [Test]
    public void DetectionAgreesWithProcCpuinfo()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) Assert.Ignore("no /proc/cpuinfo to compare with");
        if (!CpuGemmChoice.Supports(Gemm.Kernel.Avx512))
            Assert.Ignore("the runtime does not run AVX-512 here (CPU, or DOTNET_EnableAVX512F=0): the kernel is off by design");
        var flags = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("flags")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(Avx512Bf16Kernel.CpuSupports, Is.EqualTo(flags.Contains("avx512_bf16")), "CPUID leaf 7.1 EAX bit 5 vs avx512_bf16");
        if (Avx512Bf16Kernel.CpuSupports)
            Assert.That(Avx512Bf16Kernel.TryGet(out var problem), Is.True, $"the code maps and runs: {problem}");
    }

    [Test]
    public void TheEmbeddedMachineCodeIsTheAssembledSource()
    {
        static bool OnPath(string tool) => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Any(d => File.Exists(Path.Combine(d, tool)));
        if (!OperatingSystem.IsLinux() || !OnPath("as") || !OnPath("objcopy"))
            Assert.Ignore("GNU as and objcopy (binutils) are needed to assemble Avx512Bf16Kernel.S");
        var psi = new ProcessStartInfo("bash", [Path.Combine(TestData.RepoRoot, "tools", "avx512bf16-kernel.sh"), "--print"])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string hex = p.StandardOutput.ReadToEnd().Trim(), err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), err);
        Assert.That(Convert.ToHexStringLower(Avx512Bf16Kernel.Code), Is.EqualTo(hex),
            "Avx512Bf16Kernel.cs's bytes are not Avx512Bf16Kernel.S assembled: run tools/avx512bf16-kernel.sh");
    }

    [Test]
    public void DotGemmIsWithinTheF32SummationBoundOfTheExactSums()
    {
        RequireKernel();
        var rng = new Random(23);
        // (m, n, k): one element, edge tiles with odd k, k across a KC = 256 block (odd tail), m across MC = 144, n across
        // several 32-column panels; leading dimensions odd and even.
        foreach (var (m, n, k) in new[] { (1, 1, 1), (13, 37, 70), (150, 70, 301), (29, 200, 513), (24, 64, 256) })
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    foreach (int pad in new[] { 0, 3 })
                    {
                        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
                        int lda = aCols + pad, ldb = bCols + pad + 2, ldc = n + 2;
                        var a = RandomBf16(rng, aRows, aCols, lda);
                        var b = RandomBf16(rng, bRows, bCols, ldb);
                        var c0 = Enumerable.Range(0, m * ldc).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                        float alpha = 0.75f, beta = k % 2 == 0 ? 0.5f : 0f;
                        var got = (float[])c0.Clone();
                        fixed (ushort* qa = a, qb = b)
                        fixed (float* pg = got)
                            Gemm.Bf16DotGemm(ta, tb, m, n, k, alpha, qa, lda, qb, ldb, beta, pg, ldc);
                        int blocks = (k + Gemm.KC - 1) / Gemm.KC, roundings = k + 2 * blocks + 2;
                        double u = Math.Pow(2, -24), gamma = roundings * u / (1 - roundings * u);
                        string what = $"m={m} n={n} k={k} ta={ta} tb={tb} lda={lda} ldb={ldb}";
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < ldc; j++)
                            {
                                float c = got[i * ldc + j];
                                if (j >= n)
                                {
                                    Assert.That(c, Is.EqualTo(c0[i * ldc + j]), $"{what}: C's padding [{i}, {j}] was written");
                                    continue;
                                }
                                double exact = beta * (double)c0[i * ldc + j], magnitude = Math.Abs(exact);
                                for (int p = 0; p < k; p++)
                                {
                                    double x = Widen(ta ? a[p * lda + i] : a[i * lda + p])
                                        * (double)Widen(tb ? b[j * ldb + p] : b[p * ldb + j]);
                                    exact += alpha * x; magnitude += Math.Abs(alpha * x);
                                }
                                double bound = gamma * magnitude + k * Math.Pow(2, -126);
                                Assert.That(Math.Abs(c - exact), Is.LessThanOrEqualTo(bound),
                                    $"{what}: c[{i}, {j}] = {c:R}, exact {exact:R} (a NaN means a read outside the operands)");
                            }
                    }
    }

    [Test]
    public void DotGemmIsBitIdenticalAcrossCallsAndThreadCounts()
    {
        RequireKernel();
        // Parallel (m·n·k ≥ 2^18), split into chunks along m, then along n.
        foreach (var (m, n, k) in new[] { (517, 70, 300), (40, 613, 290) })
        {
            var rng = new Random(m);
            var a = RandomBf16(rng, m, k, k + 1);
            var b = RandomBf16(rng, n, k, k);
            float[] Once(int threads)
            {
                Gemm.ThreadCountOverride = threads;
                try
                {
                    var c = new float[m * n];
                    fixed (ushort* qa = a, qb = b)
                    fixed (float* pc = c)
                        Gemm.Bf16DotGemm(false, true, m, n, k, 1f, qa, k + 1, qb, k, 0f, pc, n);
                    return c;
                }
                finally { Gemm.ThreadCountOverride = 0; }
            }
            var first = Once(0);
            Assert.That(first.All(float.IsFinite), Is.True);
            Assert.That(Once(0), Is.EqualTo(first), "two calls with the same inputs");
            Assert.That(Once(1), Is.EqualTo(first), "single-threaded");
            Assert.That(Once(3), Is.EqualTo(first), "three threads");
        }
    }

    /// <summary>auto and ours take the dot kernel where it runs; forced f32 paths keep their widened panels.</summary>
    [Test]
    public void AutoAndOursChooseTheDotKernelWhereItRuns()
    {
        var expected = Avx512Bf16Kernel.IsAvailable ? CpuBf16Gemm.OursAvx512Bf16 : CpuBf16Gemm.OursPacked;
        Assert.That(new CpuBackend(CpuGemm.Ours).Bf16Gemm, Is.EqualTo(expected));
        Assert.That(new CpuBackend(CpuGemm.Auto).Bf16Gemm, Is.EqualTo(expected));
        Assert.That(new CpuBackend(CpuGemm.Ours).Name, Does.Contain($"bf16 gemm {CpuGemmChoice.Name(expected)}"));
        Assert.That(new CpuBackend(CpuGemm.OursScalar).Bf16Gemm, Is.EqualTo(CpuBf16Gemm.OursPacked));
        if (CpuGemmChoice.Supports(Gemm.Kernel.Avx512))
            Assert.That(new CpuBackend(CpuGemm.OursAvx512).Bf16Gemm, Is.EqualTo(CpuBf16Gemm.OursPacked));
    }
}
