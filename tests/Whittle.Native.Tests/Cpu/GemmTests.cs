using Whittle.Native.Cpu;

namespace Whittle.Native.Tests.Cpu;

// Policy: Gemm.Sgemm is checked against an independent naive triple loop in double precision.
// Tolerance: each element's error is measured relative to sum_p |alpha * op(A)[i,p] * op(B)[p,j]| + |beta * C[i,j]|,
// the scale that bounds fp32 rounding of a dot product (a catastrophically cancelling sum may have a tiny result but
// cannot be more accurate than its terms). Rounding errors of a length-k fp32 accumulation behave like a random walk,
// ~ sqrt(k) * eps (eps = 6e-8): ~1e-6 for k = 300, ~4e-6 for k = 4096; the worst case k * eps is reached only by
// adversarial data. 1e-5 is therefore loose enough to be stable and tight enough to catch any wrong index, missed
// k block, or wrongly applied alpha/beta (each of those gives errors of order 1).
// Padding inside leading dimensions is filled with NaN (A, B) or a sentinel (C): reading or writing outside the
// logical matrix shows up as NaN in the result or a changed sentinel.
[NonParallelizable] // Gemm.ForceKernel and Gemm.ThreadCountOverride are process-wide switches.
public unsafe class GemmTests
{
    const double Tolerance = 1e-5;
    const float Sentinel = -12345.5f;

    /// <summary>A row-major (rows, cols) matrix in a buffer with row stride ld &gt;= cols; padding columns hold pad.</summary>
    sealed class Strided
    {
        public readonly float[] Data;
        public readonly int Rows, Cols;
        public readonly long Ld;
        public Strided(int rows, int cols, long ld, Random rng, float pad)
        {
            Rows = rows; Cols = cols; Ld = ld;
            // The buffer ends right after the last logical element: no slack to read into past the final row.
            Data = new float[(rows - 1) * ld + cols];
            Array.Fill(Data, pad);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                    Data[i * ld + j] = (float)(rng.NextDouble() * 2 - 1);
        }
        public float this[int i, int j] => Data[i * Ld + j];
    }

    static void Run(bool transA, bool transB, int m, int n, int k, float alpha, Strided a, Strided b, float beta, Strided c)
    {
        fixed (float* pa = a.Data, pb = b.Data, pc = c.Data)
            Gemm.Sgemm(transA, transB, m, n, k, alpha, pa, a.Ld, pb, b.Ld, beta, pc, c.Ld);
    }

    /// <summary>Runs one case and compares with the double-precision triple loop; returns the worst scaled error.</summary>
    static double CheckCase(
        Random rng, bool transA, bool transB, int m, int n, int k, float alpha, float beta, int padA, int padB, int padC)
    {
        var a = transA ? new Strided(k, m, m + padA, rng, float.NaN) : new Strided(m, k, k + padA, rng, float.NaN);
        var b = transB ? new Strided(n, k, k + padB, rng, float.NaN) : new Strided(k, n, n + padB, rng, float.NaN);
        var c = new Strided(m, n, n + padC, rng, Sentinel);
        if (beta == 0f)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    c.Data[i * c.Ld + j] = float.NaN; // beta == 0: C must not be read
        var c0 = (float[])c.Data.Clone();

        Run(transA, transB, m, n, k, alpha, a, b, beta, c);

        double worst = 0;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, scale = 0;
                for (int p = 0; p < k; p++)
                {
                    double t = (double)(transA ? a[p, i] : a[i, p]) * (transB ? b[j, p] : b[p, j]);
                    sum += t;
                    scale += Math.Abs(t);
                }
                double cOld = beta == 0f ? 0 : c0[i * c.Ld + j];
                double expected = alpha * sum + beta * cOld;
                scale = Math.Abs(alpha) * scale + Math.Abs(beta * cOld);
                double got = c[i, j];
                Assert.That(double.IsFinite(got), $"C[{i},{j}] = {got} (NaN leaked) for {Describe(transA, transB, m, n, k, alpha, beta)}");
                worst = Math.Max(worst, Math.Abs(got - expected) / Math.Max(scale, 1e-30));
            }
            for (long j = n; j < c.Ld && i < m - 1; j++)
                Assert.That(c.Data[i * c.Ld + j], Is.EqualTo(Sentinel), $"padding of C row {i} column {j} was written");
        }
        Assert.That(worst, Is.LessThanOrEqualTo(Tolerance), Describe(transA, transB, m, n, k, alpha, beta));
        return worst;
    }

    static string Describe(bool transA, bool transB, int m, int n, int k, float alpha, float beta) =>
        $"{(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} m={m} n={n} k={k} alpha={alpha} beta={beta}";

    static readonly int[] OddSizes = [1, 3, 17, 33, 129];

    [Test]
    public void OddSizesAllTransposesMatchDoubleReference(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        var rng = new Random(1234);
        foreach (int m in OddSizes)
            foreach (int n in OddSizes)
                foreach (int k in OddSizes)
                    CheckCase(rng, transA, transB, m, n, k, 1f, 0f, 0, 0, 0);
    }

    [Test]
    public void RandomShapesStridesAndScalarsMatchDoubleReference(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        var rng = new Random(20240 + (transA ? 2 : 0) + (transB ? 1 : 0));
        float[] alphas = [1f, -0.5f, 2.25f];
        float[] betas = [0f, 1f, 0.5f, -1.5f];
        for (int trial = 0; trial < 24; trial++)
        {
            // Mostly small/odd, sometimes past one kc (256) or mc (144) block so block boundaries are crossed.
            int Size() => rng.Next(4) == 0 ? rng.Next(1, 301) : rng.Next(1, 40);
            int m = Size(), n = Size(), k = Size();
            CheckCase(rng, transA, transB, m, n, k, alphas[rng.Next(alphas.Length)], betas[rng.Next(betas.Length)],
                rng.Next(0, 9), rng.Next(0, 9), rng.Next(0, 9));
        }
    }

    [Test]
    public void LargeShapesCrossEveryBlockBoundary(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        // k = 700 spans three kc blocks with a ragged last one; m = 300 spans three mc blocks; goes through Parallel.For.
        CheckCase(new Random(7), transA, transB, 300, 211, 700, 1f, 1f, 5, 3, 2);
    }

    [Test]
    public void LinearLayerOnASubNetworkWeightView()
    {
        // A sub-network uses W[:48, :40] of a (64, 96) weight in place: row stride 96, 56 padding columns per row.
        var rng = new Random(8);
        const int tokens = 203, outAct = 48, inAct = 40, ld = 96;
        CheckCase(rng, false, true, tokens, outAct, inAct, 1f, 0f, 0, ld - inAct, 0);  // y (N, 48) = x (N, 40) @ W^T
        CheckCase(rng, false, false, tokens, inAct, outAct, 1f, 1f, 0, ld - inAct, 0); // dx (N, 40) += dy (N, 48) @ W
        CheckCase(rng, true, false, outAct, inAct, tokens, 1f, 1f, 0, 0, ld - inAct);  // dW view (48, 40) += dy^T @ x
    }

    [Test]
    public void LongReductionStaysWithinTolerance()
    {
        // The error grows with k. Reductions in the engine reach k = 3072 (MLP down-projection) and k = tokens = 2048
        // (dW = dy^T x); check k = 4096, which also spans 16 kc blocks.
        double worst = CheckCase(new Random(11), true, false, 20, 37, 4096, 1f, 1f, 0, 0, 0);
        TestContext.Out.WriteLine($"worst scaled error at k = 4096: {worst:E2}");
    }

    static IEnumerable<Gemm.Kernel> SupportedKernels()
    {
        yield return Gemm.Kernel.Scalar;
        if (Gemm.Best >= Gemm.Kernel.Avx256) yield return Gemm.Kernel.Avx256;
        if (Gemm.Best >= Gemm.Kernel.Avx512) yield return Gemm.Kernel.Avx512;
    }

    [Test]
    public void EveryKernelMatchesDoubleReference(
        [Values(false, true)] bool transA, [Values(false, true)] bool transB)
    {
        foreach (var kernel in SupportedKernels())
        {
            Gemm.ForceKernel = kernel;
            try
            {
                var rng = new Random(99);
                CheckCase(rng, transA, transB, 17, 33, 129, 1f, 0f, 1, 2, 3);
                CheckCase(rng, transA, transB, 150, 70, 300, -0.5f, 0.5f, 0, 4, 0);
            }
            finally { Gemm.ForceKernel = null; }
        }
        TestContext.Out.WriteLine($"kernels checked: {string.Join(", ", SupportedKernels())}");
    }

    [Test]
    public void KernelsAgreeBitForBitWhereHardwareFmaExists()
    {
        // Each C element is the same chain of fused multiply-adds in every kernel (a vector lane is one element), so
        // tile shape and vector width must not change a single bit. Without FMA the scalar and vector paths differ legitimately.
        Assume.That(System.Runtime.Intrinsics.X86.Fma.IsSupported, "needs hardware FMA");
        var rng = new Random(3);
        int m = 77, n = 91, k = 600;
        var a = new Strided(k, m, m + 3, rng, float.NaN);
        var b = new Strided(k, n, n, rng, float.NaN);
        float[]? reference = null;
        foreach (var kernel in SupportedKernels())
        {
            Gemm.ForceKernel = kernel;
            try
            {
                var c = new Strided(m, n, n + 1, new Random(4), Sentinel);
                Run(true, false, m, n, k, 1.5f, a, b, -0.25f, c);
                if (reference is null) reference = c.Data;
                else Assert.That(c.Data, Is.EqualTo(reference), $"{kernel} differs from the scalar kernel");
            }
            finally { Gemm.ForceKernel = null; }
        }
    }

    [Test]
    public void BetaZeroIgnoresNaNInCAndBetaOneAccumulates()
    {
        var rng = new Random(5);
        var a = new Strided(9, 7, 7, rng, 0);
        var b = new Strided(5, 7, 7, rng, 0);
        var c = new Strided(9, 5, 5, rng, 0);
        Array.Fill(c.Data, float.NaN);
        Run(false, true, 9, 5, 7, 1f, a, b, 0f, c);
        var once = (float[])c.Data.Clone();
        Assert.That(once.All(float.IsFinite), "beta = 0 must overwrite NaN");
        Run(false, true, 9, 5, 7, 1f, a, b, 1f, c); // the dW += pattern: C = AB + C = 2 AB
        for (int i = 0; i < once.Length; i++)
            Assert.That(c.Data[i], Is.EqualTo(2 * once[i]).Within(1e-5).Percent);
    }

    [Test]
    public void ZeroKOrZeroAlphaOnlyScalesC()
    {
        var rng = new Random(6);
        var a = new Strided(4, 3, 3, rng, 0);
        a.Data[0] = float.PositiveInfinity; // alpha = 0 must not touch A (0 * inf would be NaN)
        var b = new Strided(3, 5, 5, rng, 0);
        var c = new Strided(4, 5, 6, rng, Sentinel);
        var c0 = (float[])c.Data.Clone();
        Run(false, false, 4, 5, 3, 0f, a, b, 0.5f, c);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 5; j++)
                Assert.That(c[i, j], Is.EqualTo(0.5f * c0[i * 6 + j]));
        Run(false, false, 4, 5, 0, 1f, a, b, 0f, c);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 5; j++)
                Assert.That(c[i, j], Is.EqualTo(0f));
        Assert.That(c.Data[5], Is.EqualTo(Sentinel), "padding of C untouched");
    }

    [Test]
    public void ResultsAreBitIdenticalAcrossCallsAndThreadCounts()
    {
        // Large enough to run in parallel (m*n*k >= 2^18) and to be split into several chunks along m, then along n.
        foreach (var (m, n, k) in new[] { (517, 70, 300), (40, 613, 290) })
        {
            var rng = new Random(m);
            var a = new Strided(m, k, k + 1, rng, float.NaN);
            var b = new Strided(n, k, k, rng, float.NaN);
            float[] Once(int threads)
            {
                Gemm.ThreadCountOverride = threads;
                try
                {
                    var c = new Strided(m, n, n, new Random(1), 0);
                    Run(false, true, m, n, k, 1f, a, b, 0.75f, c);
                    return c.Data;
                }
                finally { Gemm.ThreadCountOverride = 0; }
            }
            var first = Once(0);
            Assert.That(Once(0), Is.EqualTo(first), "two calls with the same inputs");
            Assert.That(Once(1), Is.EqualTo(first), "single-threaded");
            Assert.That(Once(3), Is.EqualTo(first), "three threads");
            Assert.That(Once(8), Is.EqualTo(first), "eight threads");
        }
    }

    [Test]
    public void LeadingDimensionSmallerThanRowIsRejected()
    {
        var data = new float[64];
        fixed (float* p = data)
        {
            nint pp = (nint)p;
            var ex = Assert.Throws<ArgumentOutOfRangeException>(
                () => Gemm.Sgemm(false, true, 4, 4, 4, 1f, (float*)pp, 3, (float*)pp, 4, 0f, (float*)pp, 4));
            Assert.That(ex!.Message, Does.Contain("lda"));
            Assert.Throws<ArgumentOutOfRangeException>(
                () => Gemm.Sgemm(false, false, 4, 5, 4, 1f, (float*)pp, 4, (float*)pp, 4, 0f, (float*)pp, 5));
            Assert.Throws<ArgumentOutOfRangeException>(
                () => Gemm.Sgemm(false, false, 4, 4, 4, 1f, (float*)pp, 4, (float*)pp, 4, 0f, (float*)pp, 3));
        }
    }
}
