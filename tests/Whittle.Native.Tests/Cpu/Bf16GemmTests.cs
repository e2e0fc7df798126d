using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Tests.Model;

namespace Whittle.Native.Tests.Cpu;

/// <summary>
/// The CPU's bf16 GEMM (Gemm.Bf16Gemm: bf16 A and B packed straight into f32 panels, f32 accumulation), per micro-kernel
/// the machine runs (the others are ignored with the reason).
///  - Against our f32 GEMM of the widened operands: bit for bit, because packing widens exactly and the panels, hence
///    every FMA chain, are the same. Padding inside the leading dimensions holds bf16 NaN, so a read outside the
///    logical matrix shows as NaN; shapes cross the KC, MC and tile boundaries.
///  - Against the f32 GEMM of the unrounded operands, a bound derived from bf16 rounding, element by element. With
///    u = 2^-8 (bf16 keeps 8 significant bits; round to nearest), a' = a(1+δ), b' = b(1+ε), |δ|, |ε| ≤ u, so each exact
///    product a'b' is within (2u + u²)|ab| of ab, and the sum of K of them within (2u + u²)·S, S = Σ_p |a_p b_p|. Each
///    f32 accumulation (K fused multiply-adds of exact products) adds at most γ_K = K·2^-24/(1 − K·2^-24) times the sum
///    of the magnitudes of its terms, (1+u)²·S on the bf16 side and S on the f32 side. Hence
///    |C_bf16 − C_f32| ≤ (2u + u² + γ_K((1+u)² + 1))·S. A lower bound (relative RMS over C above u/16; random-sign
///    errors give about sqrt(2/3)·u) shows that the operands really were rounded.
/// The model-level checks (bf16 logits and gradients against an emulation and against f32) are Model/Bf16Tests, which
/// run on whatever GEMM the backend resolves; the eval test here pins each bf16 GEMM path.
/// </summary>
public unsafe class Bf16GemmTests
{
    const double U = 1.0 / 256;
    const ushort Bf16NaN = 0x7FC0;

    /// <summary>The micro-kernel a forced path pins, or Assert.Ignore when this CPU (or the runtime's settings) lacks it.</summary>
    static Gemm.Kernel RequireKernel(CpuGemm path)
    {
        var kernel = CpuGemmChoice.KernelOf(path)!.Value;
        if (!CpuGemmChoice.Supports(kernel))
            Assert.Ignore($"this CPU (or the .NET runtime's settings) does not run the {kernel} micro-kernel ({CpuGemmChoice.Name(path)})");
        return kernel;
    }

    /// <summary>(rows, cols) bf16 bits in a buffer with row stride ld; the padding holds NaN.</summary>
    static ushort[] RandomBf16(Random rng, int rows, int cols, int ld)
    {
        var data = new ushort[(rows - 1) * ld + cols];
        Array.Fill(data, Bf16NaN);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                data[i * ld + j] = Bf16Tests.ReferenceRne((float)(rng.NextDouble() * 2 - 1));
        return data;
    }

    static float[] Widened(ushort[] bits) => bits.Select(b => BitConverter.UInt32BitsToSingle((uint)b << 16)).ToArray();

    [TestCase(CpuGemm.OursScalar)]
    [TestCase(CpuGemm.OursAvx2)]
    [TestCase(CpuGemm.OursAvx512)]
    public void Bf16GemmIsBitForBitTheF32GemmOfTheWidenedOperands(CpuGemm path)
    {
        var kernel = RequireKernel(path);
        var rng = new Random(11);
        // (m, n, k): edge tiles, k across a KC = 256 block, m across an MC = 144 block, n across several NR panels
        foreach (var (m, n, k) in new[] { (1, 1, 1), (13, 37, 70), (150, 70, 300), (29, 200, 513) })
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                {
                    int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
                    int lda = aCols + 3, ldb = bCols + 5, ldc = n + 2;
                    var a = RandomBf16(rng, aRows, aCols, lda);
                    var b = RandomBf16(rng, bRows, bCols, ldb);
                    var c0 = Enumerable.Range(0, m * ldc).Select(_ => (float)rng.NextDouble()).ToArray();
                    float alpha = 0.75f, beta = k % 2 == 0 ? 0.5f : 0f;
                    var want = (float[])c0.Clone();
                    var got = (float[])c0.Clone();
                    var a32 = Widened(a); var b32 = Widened(b);
                    fixed (float* pa = a32, pb = b32, pw = want, pg = got)
                    fixed (ushort* qa = a, qb = b)
                    {
                        Gemm.Sgemm(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pw, ldc, kernel: kernel);
                        Gemm.Bf16Gemm(ta, tb, m, n, k, alpha, qa, lda, qb, ldb, beta, pg, ldc, kernel: kernel);
                    }
                    string what = $"{kernel} m={m} n={n} k={k} ta={ta} tb={tb}";
                    Assert.That(want.Take(m * ldc).Where((_, i) => i % ldc < n).All(float.IsFinite), $"{what}: a NaN was read");
                    for (int i = 0; i < want.Length; i++)
                        if (BitConverter.SingleToInt32Bits(got[i]) != BitConverter.SingleToInt32Bits(want[i]))
                            Assert.Fail($"{what}: c[{i / ldc}, {i % ldc}] = {got[i]:R}, the f32 GEMM of the widened operands gives " +
                                $"{want[i]:R}");
                }
    }

    [TestCase(CpuGemm.OursScalar, 70)]
    [TestCase(CpuGemm.OursAvx2, 1024)]
    [TestCase(CpuGemm.OursAvx512, 1024)]
    [TestCase(CpuGemm.OursAvx512, 4096)]
    public void Bf16GemmIsWithinTheBf16RoundingBoundOfTheF32Gemm(CpuGemm path, int k)
    {
        var kernel = RequireKernel(path);
        const int m = 37, n = 45;
        var rng = new Random(k);
        // x Wᵀ as a Linear layer runs it: activations of mixed signs, a weight with a smaller scale
        var x = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var w = Enumerable.Range(0, n * k).Select(_ => (float)(rng.NextDouble() * 0.2 - 0.1)).ToArray();
        var x16 = x.Select(Bf16Tests.ReferenceRne).ToArray();
        var w16 = w.Select(Bf16Tests.ReferenceRne).ToArray();
        var c32 = new float[m * n]; var c16 = new float[m * n];
        fixed (float* px = x, pw = w, p32 = c32, p16 = c16)
        fixed (ushort* qx = x16, qw = w16)
        {
            Gemm.Sgemm(false, true, m, n, k, 1f, px, k, pw, k, 0f, p32, n, kernel: kernel);
            Gemm.Bf16Gemm(false, true, m, n, k, 1f, qx, k, qw, k, 0f, p16, n, kernel: kernel);
        }
        double gamma = k * Math.Pow(2, -24) / (1 - k * Math.Pow(2, -24));
        double factor = 2 * U + U * U + gamma * ((1 + U) * (1 + U) + 1);
        double diff2 = 0, ref2 = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += Math.Abs((double)x[i * k + p] * w[j * k + p]);
                double d = Math.Abs((double)c16[i * n + j] - c32[i * n + j]);
                Assert.That(d, Is.LessThanOrEqualTo(factor * s), $"c[{i}, {j}]: |bf16 − f32| against (2u + u² + γ_K((1+u)² + 1))·S");
                diff2 += d * d; ref2 += (double)c32[i * n + j] * c32[i * n + j];
            }
        double relativeRms = Math.Sqrt(diff2 / ref2);
        TestContext.Out.WriteLine(
            $"{kernel} k={k}: relative RMS bf16 vs f32 {relativeRms:0.00e+00} (sqrt(2/3)·u = {Math.Sqrt(2.0 / 3) * U:0.00e+00})");
        Assert.That(relativeRms, Is.GreaterThan(U / 16), "the operands were rounded to bf16");
    }

    /// <summary>bf16 operands run ours (packed, or the AVX512-BF16 kernel where it runs: Avx512Bf16KernelTests) unless
    /// OpenBLAS is asked for by name (a forced path runs what it names).</summary>
    [Test]
    public void TheBf16GemmIsOursUnlessOpenBlasIsRequestedByName()
    {
        var ours = Avx512Bf16Kernel.IsAvailable ? CpuBf16Gemm.OursAvx512Bf16 : CpuBf16Gemm.OursPacked;
        Assert.That(new CpuBackend(CpuGemm.Ours).Bf16Gemm, Is.EqualTo(ours));
        Assert.That(new CpuBackend(CpuGemm.OursScalar).Bf16Gemm, Is.EqualTo(CpuBf16Gemm.OursPacked));
        var auto = new CpuBackend(CpuGemm.Auto);
        Assert.That(auto.Bf16Gemm, Is.EqualTo(ours), $"auto resolved to {CpuGemmChoice.Name(auto.GemmChoice)}");
        Assert.That(auto.Name, Does.Contain($"bf16 gemm {CpuGemmChoice.Name(ours)}"));
        if (!OpenBlas.IsAvailable) Assert.Ignore("OpenBLAS is not installed (tools/install-openblas.sh): its bf16 path is not checked");
        var blas = new CpuBackend(CpuGemm.OpenBlas);
        Assert.That(blas.Bf16Gemm, Is.EqualTo(CpuBf16Gemm.OpenBlasWidened));
        Assert.That(blas.Name, Does.Contain("bf16 gemm openblas-widened"));
    }

    /// <summary>
    /// Evaluation (Perplexity.Evaluate, the `eval` command's loop) of the tiny fixture in f32 and in bf16, on each bf16
    /// GEMM: ours packed (--gemm ours), and OpenBLAS on widened copies (--gemm openblas) when it loads.
    /// Tolerances. bf16 against the emulation of bf16 mode on the same f32 GEMM (every GEMM operand rounded by the
    /// reference, then the f32 engine: Bf16Tests.EmulatingBackend): the same products summed in the same order up to the
    /// bias add, f32 round-off of ~12 dot-product stages, 1e-5 relative on the mean loss (as the fixture-parity tests).
    /// On the AVX512-BF16 kernel (ours where the CPU has it) the sums are associated in pairs, which the f32 engine does
    /// not reproduce: there the emulation (on our widened-panel GEMM) is held to the bf16 budget below instead.
    /// bf16 against f32: per token, ΔCE = Σ_v (p_v − y_v)·Δz_v to first order, with ‖p − y‖₂ ≤ √2 and logit errors Δz of
    /// relative RMS at most 2·G·sqrt(2/3)·u after G = 4L + 1 GEMMs (the budget of Bf16Tests), so
    /// |ΔCE| ≲ √2 · 2G·sqrt(2/3)·u · RMS(z); the mean over tokens can only be smaller. The two bf16 paths are not
    /// compared with each other more tightly than that: bf16 mode rounds every GEMM input, so their last-bit f32
    /// differences can cross bf16 rounding boundaries.
    /// </summary>
    [TestCase(CpuGemm.Ours)]
    [TestCase(CpuGemm.OpenBlas)]
    public void Bf16EvalLossIsTheEmulationsAndWithinTheBf16BudgetOfF32(CpuGemm gemm)
    {
        if (gemm == CpuGemm.OpenBlas && !OpenBlas.IsAvailable)
            Assert.Ignore("OpenBLAS is not installed (tools/install-openblas.sh): its bf16 path is not checked");
        var dir = CliRunner.Fixture("tiny-neox");
        const int T = 16;
        var backend = new CpuBackend(gemm);
        using var f32 = ModelCheckpoint.Load(dir, backend);
        using var bf16 = ModelCheckpoint.Load(dir, backend);
        bf16.Precision = Precision.Bf16;
        bool dot = backend.Bf16Gemm == CpuBf16Gemm.OursAvx512Bf16;
        using var emulated = ModelCheckpoint.Load(dir, Bf16Tests.EmulatingBackend.Create(dot ? Bf16Tests.Emulable : backend));
        var rng = new Random(5);
        var tokens = Enumerable.Range(0, 6 * T).Select(_ => rng.Next(f32.Config.VocabSize)).ToArray();
        double Loss(LanguageModel model) => Perplexity.Evaluate(model, new ArrayTokenSource(tokens), T, 3).Loss;

        double l32 = Loss(f32), l16 = Loss(bf16), emu = Loss(emulated);
        double rmsLogits;
        using (var ids = Tensor.FromArray(tokens[..T], 1, T))
        using (var tape = new Tape(backend, recording: false))
        {
            var z = f32.Forward(tape, ids).Data.ToFloatArray();
            rmsLogits = Math.Sqrt(z.Average(v => (double)v * v));
        }
        int gemms = 4 * f32.Config.NumLayers + 1;
        double budget = Math.Sqrt(2) * 2 * gemms * Math.Sqrt(2.0 / 3) * U * rmsLogits;
        TestContext.Out.WriteLine($"{CpuGemmChoice.Name(backend.Bf16Gemm)}: eval loss f32 {l32:R}, bf16 {l16:R}, emulation {emu:R}; " +
            $"|bf16 − f32| {Math.Abs(l16 - l32):0.0e+00} (budget {budget:0.0e+00})");
        Assert.That(Math.Abs(l16 - emu), Is.LessThanOrEqualTo(dot ? budget : 1e-5 * Math.Abs(emu)),
            dot ? "bf16 eval on vdpbf16ps within the bf16 budget of the emulation" : "bf16 eval = the bf16 emulation up to f32 round-off");
        Assert.That(Math.Abs(l16 - l32), Is.LessThanOrEqualTo(budget), "bf16 eval within the bf16 budget of f32");
        Assert.That(l16, Is.Not.EqualTo(l32), "the bf16 path is in use");
    }
}
