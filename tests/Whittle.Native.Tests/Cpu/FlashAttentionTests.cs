using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Whittle.Native.Cpu;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cpu;

/// <summary>
/// The CPU backend's tiled attention (CpuBackend.Attention.cs) against a float64 reference written here from the formulas
/// (softmax(scale q k^T) v, causal, query head h reading kv head h / (H / KV), and its gradients), on shapes that cross
/// the tile boundaries (T not a multiple of either tile), the head sizes the models use, GQA with KV = 1 and KV = H / 2,
/// and q, k, v as strided views of one fused buffer with fewer heads than the buffer holds (a sub-network's narrowing).
///
/// Tolerance, per element, a first-order worst-case bound for f32 arithmetic (u = 2^-24, Higham's γ_n ≈ n·u):
/// a score is an f32 dot over D, off by at most D·u·σ with σ the largest scale·Σ|q_i k_i| of the call; a probability
/// exp(s − lse) is then relatively off by at most 2(D + 1)·u·σ + 2·u·ln T plus a few ulp of exp; an output or gradient
/// element is an f32 sum of n terms (n = T, or T·H/KV for dk and dv) of such quantities, off by n·u times the sum of the
/// terms' magnitudes. So |got − reference| ≤ u·(n + 2(D + 1)σ + 2 ln T + 32)·M, where M is that element's sum of term
/// magnitudes, computed in double by the reference (for the gradients M also counts the magnitudes inside dP and
/// delta). The actual errors are far below (about √n·u·M); a wrong mask, a missed tile or a wrong head is off by O(M).
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class FlashAttentionTests
{
    const double U = 1.0 / (1 << 24);

    /// <summary>One case: q (B, T, H, D), k and v (B, T, KV, D) as views into a fused (B, T, width) buffer with
    /// <paramref name="spareHeads"/> unused heads after each group, as a narrowed sub-network leaves them.</summary>
    public sealed record Case(int B, int T, int H, int KV, int D, int SpareHeads = 0);

    static readonly Case[] Cases =
    [
        new(2, 37, 4, 4, 16),
        new(1, 161, 4, 2, 80, SpareHeads: 1),   // T: one full query tile and a partial one, 2.5 key tiles
        new(1, 200, 3, 1, 64),                  // multi-query
        new(2, 97, 2, 1, 128, SpareHeads: 2),
        new(1, 300, 2, 2, 32),
        new(1, 64, 4, 2, 64),                   // exactly one key tile
        // B·KV ≥ FusedBackwardTasks: the one-pass backward (a task per batch and kv head)
        new(4, 161, 4, 2, 80, SpareHeads: 1),
        new(8, 100, 2, 1, 32),                  // multi-query, one tile and a partial one
    ];

    static IEnumerable<TestCaseData> All() => Cases.Select(c => new TestCaseData(c).SetName(
        $"B{c.B} T{c.T} H{c.H} KV{c.KV} D{c.D} spare{c.SpareHeads}"));

    [TestCaseSource(nameof(All))]
    public void ForwardAndBackwardMatchFloat64Reference(Case c) => CheckAgainstReference(c, CpuBackend.Instance);

    /// <summary>Each GEMM micro-kernel this CPU runs (scalar, AVX2, AVX-512) passes the same reference.</summary>
    [TestCase(CpuGemm.OursScalar)]
    [TestCase(CpuGemm.OursAvx2)]
    [TestCase(CpuGemm.OursAvx512)]
    public void EveryKernelPathMatchesFloat64Reference(CpuGemm path)
    {
        if (path == CpuGemm.OursAvx2 && !Avx2.IsSupported) Assert.Ignore("no AVX2 on this CPU");
        if (path == CpuGemm.OursAvx512 && !(Vector512.IsHardwareAccelerated && Avx512F.IsSupported)) Assert.Ignore("no AVX-512");
        CheckAgainstReference(new Case(1, 161, 4, 2, 80, SpareHeads: 1), new CpuBackend(path));
    }

    /// <summary>The same inputs on one thread and on all of them give the same bits (each element is computed by one task
    /// in a fixed order), and the tiled kernel is at least as accurate as the dense one it replaced; B = 2 runs the
    /// two-pass backward, B = 4 (B·KV = 8) the one-pass one.</summary>
    [TestCase(2)]
    [TestCase(4)]
    public void ResultsDoNotDependOnTheThreadCountAndAreAsAccurateAsTheDenseKernel(int batch)
    {
        Assert.That(batch * 2 >= CpuBackend.FusedBackwardTasks, Is.EqualTo(batch == 4), "the two cases cover both backward paths");
        var c = new Case(batch, 161, 4, 2, 80, SpareHeads: 1);
        using var inputs = new Inputs(c, seed: 5);
        var cpu = CpuBackend.Instance;
        var all = inputs.Run(cpu.AttentionForward, cpu.AttentionBackward);
        // A scheduler that runs one task at a time: every Parallel.For inside runs on a single thread.
        var one = Task.Factory.StartNew(() => inputs.Run(cpu.AttentionForward, cpu.AttentionBackward), CancellationToken.None,
            TaskCreationOptions.None, new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, 1).ExclusiveScheduler).Result;
        for (int i = 0; i < all.Length; i++)
            Assert.That(one[i], Is.EqualTo(all[i]).AsCollection, $"output {i} differs between 1 thread and {Environment.ProcessorCount}");
        // The backward pass adds to dq, dk, dv: starting from 1 gives 1 + the gradient (to f32 rounding of values near 1).
        var onto1 = inputs.Run(cpu.AttentionForward, cpu.AttentionBackward, initial: 1f);
        for (int i = 1; i <= 3; i++)
            for (int j = 0; j < all[i].Length; j++)
                Assert.That(onto1[i][j] - 1f, Is.EqualTo(all[i][j]).Within(1e-5 * (1 + Math.Abs(all[i][j]))), $"accumulated {i}");

        var reference = Reference.Of(inputs);
        var dense = inputs.Run((q, k, v, s, o, l, _) => cpu.DenseAttentionForward(q, k, v, s, o, l),
            (g, q, k, v, o, l, s, dq, dk, dv, _) => cpu.DenseAttentionBackward(g, q, k, v, o, l, s, dq, dk, dv));
        string[] names = ["output", "dq", "dk", "dv"];
        for (int i = 0; i < names.Length; i++)
        {
            double tiled = reference.WorstRatio(i, all[i]), old = reference.WorstRatio(i, dense[i]);
            TestContext.Out.WriteLine($"{names[i]}: worst |error| / bound tiled {tiled:G3}, dense {old:G3}");
            // "At least as accurate" up to rounding noise: both are f32 with errors ~√n·u, far below the bound (ratio 1).
            Assert.That(tiled, Is.LessThanOrEqualTo(Math.Max(2 * old, 0.01)), names[i]);
        }
    }

    static void CheckAgainstReference(Case c, CpuBackend cpu)
    {
        using var inputs = new Inputs(c, seed: c.T * 31 + c.D);
        var got = inputs.Run(cpu.AttentionForward, cpu.AttentionBackward);
        var reference = Reference.Of(inputs);
        string[] names = ["output", "dq", "dk", "dv"];
        for (int i = 0; i < names.Length; i++)
            Assert.That(reference.WorstRatio(i, got[i]), Is.LessThanOrEqualTo(1.0), $"{names[i]}: |error| / bound");
        var lse = got[4];
        for (int r = 0; r < lse.Length; r++)
            Assert.That(lse[r], Is.EqualTo(reference.Lse[r]).Within(U * (Math.Abs(reference.Lse[r]) + reference.Bound) * 4),
                $"lse row {r}");
    }

    delegate void Forward(Tensor q, Tensor k, Tensor v, float scale, Tensor o, Tensor lse, AttentionPrecision p);
    delegate void Backward(Tensor g, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, float scale, Tensor dq, Tensor dk,
        Tensor dv, AttentionPrecision p);

    /// <summary>Random q, k, v in one fused buffer, and a random output gradient.</summary>
    sealed class Inputs : IDisposable
    {
        public readonly Case C;
        public readonly float Scale;
        public readonly Tensor Fused, DOut;   // (B, T, width), (B, T, H, D)
        public readonly Tensor Q, K, V;       // strided views into Fused
        readonly int _width;

        public Inputs(Case c, int seed)
        {
            C = c;
            Scale = 1f / MathF.Sqrt(c.D);
            // Row layout: [H q heads, spare | KV k heads, spare | KV v heads, spare], each head D floats.
            _width = (c.H + 2 * c.KV + 3 * c.SpareHeads) * c.D;
            var rng = new Rng((ulong)seed);
            Fused = Tensor.Zeros(c.B, c.T, _width);
            rng.FillNormal(Fused.AsSpan<float>(), 0, 1);
            DOut = Tensor.Zeros(c.B, c.T, c.H, c.D);
            rng.FillNormal(DOut.AsSpan<float>(), 0, 1);
            Q = View(0, c.H); K = View(c.H + c.SpareHeads, c.KV); V = View(c.H + c.KV + 2 * c.SpareHeads, c.KV);
        }

        Tensor View(int firstHead, int heads) =>
            Fused.AsStrided([C.B, C.T, heads, C.D], [(long)C.T * _width, _width, C.D, 1], (long)firstHead * C.D);

        /// <summary>[output, dq, dk, dv, lse] of one forward and backward pass; dq, dk, dv start at
        /// <paramref name="initial"/> (the backward pass adds to them).</summary>
        public float[][] Run(Forward forward, Backward backward, float initial = 0f)
        {
            using var o = Tensor.Zeros(C.B, C.T, C.H, C.D);
            using var lse = Tensor.Zeros(C.B, C.H, C.T);
            forward(Q, K, V, Scale, o, lse, AttentionPrecision.F32);
            using var dq = Tensor.Zeros(C.B, C.T, C.H, C.D);
            using var dk = Tensor.Zeros(C.B, C.T, C.KV, C.D);
            using var dv = Tensor.Zeros(C.B, C.T, C.KV, C.D);
            foreach (var g in new[] { dq, dk, dv }) g.AsSpan<float>().Fill(initial);
            backward(DOut, Q, K, V, o, lse, Scale, dq, dk, dv, AttentionPrecision.F32);
            return [o.ToFloatArray(), dq.ToFloatArray(), dk.ToFloatArray(), dv.ToFloatArray(), lse.ToFloatArray()];
        }

        public double At(Tensor view, int b, int t, int h, int e) =>
            Fused.AsSpan<float>()[(int)(view.Offset + b * view.Stride(0) + t * view.Stride(1) + h * view.Stride(2) + e)];

        public void Dispose() { Fused.Dispose(); DOut.Dispose(); }
    }

    /// <summary>Attention and its gradients in float64 by the textbook formulas, with each element's magnitude M.</summary>
    sealed class Reference
    {
        public double[][] Values = new double[4][], Magnitudes = new double[4][];   // output, dq, dk, dv
        public double[] Lse = [];
        public double Bound;   // u·(…) without the n term: 2(D + 1)σ + 2 ln T + 32
        int _t, _group;

        public static Reference Of(Inputs x)
        {
            var c = x.C;
            int group = c.H / c.KV;
            var r = new Reference { _t = c.T, _group = group };
            long qn = (long)c.B * c.T * c.H * c.D, kn = (long)c.B * c.T * c.KV * c.D;
            foreach (int i in new[] { 0, 1 }) { r.Values[i] = new double[qn]; r.Magnitudes[i] = new double[qn]; }
            foreach (int i in new[] { 2, 3 }) { r.Values[i] = new double[kn]; r.Magnitudes[i] = new double[kn]; }
            r.Lse = new double[c.B * c.H * c.T];
            long Qi(int b, int t, int h, int e) => (((long)b * c.T + t) * c.H + h) * c.D + e;
            long Ki(int b, int t, int h, int e) => (((long)b * c.T + t) * c.KV + h) * c.D + e;
            var dout = x.DOut.ToFloatArray();
            double sigma = 0;
            var p = new double[c.T]; var dp = new double[c.T]; var dpAbs = new double[c.T];
            for (int b = 0; b < c.B; b++)
                for (int h = 0; h < c.H; h++)
                {
                    int kh = h / group;
                    for (int t = 0; t < c.T; t++)
                    {
                        double max = double.NegativeInfinity;
                        for (int s = 0; s <= t; s++)
                        {
                            double dot = 0, abs = 0;
                            for (int e = 0; e < c.D; e++)
                            {
                                double term = x.At(x.Q, b, t, h, e) * x.At(x.K, b, s, kh, e);
                                dot += term; abs += Math.Abs(term);
                            }
                            p[s] = x.Scale * dot; sigma = Math.Max(sigma, x.Scale * abs); max = Math.Max(max, p[s]);
                        }
                        double sum = 0;
                        for (int s = 0; s <= t; s++) sum += Math.Exp(p[s] - max);
                        r.Lse[((long)b * c.H + h) * c.T + t] = max + Math.Log(sum);
                        for (int s = 0; s <= t; s++) p[s] = Math.Exp(p[s] - max) / sum;
                        // output and delta = Σ_e dO·O = Σ_s p_s dP_s
                        double delta = 0, deltaAbs = 0;
                        for (int e = 0; e < c.D; e++)
                        {
                            double o = 0, m = 0;
                            for (int s = 0; s <= t; s++) { double vv = x.At(x.V, b, s, kh, e); o += p[s] * vv; m += p[s] * Math.Abs(vv); }
                            r.Values[0][Qi(b, t, h, e)] = o; r.Magnitudes[0][Qi(b, t, h, e)] = m;
                            double g = dout[Qi(b, t, h, e)];
                            delta += g * o; deltaAbs += Math.Abs(g) * m;
                        }
                        for (int s = 0; s <= t; s++)
                        {
                            double d = 0, a = 0;
                            for (int e = 0; e < c.D; e++)
                            {
                                double term = dout[Qi(b, t, h, e)] * x.At(x.V, b, s, kh, e);
                                d += term; a += Math.Abs(term);
                            }
                            dp[s] = d; dpAbs[s] = a + Math.Abs(d) + deltaAbs + Math.Abs(delta);
                        }
                        for (int s = 0; s <= t; s++)
                        {
                            double ds = p[s] * (dp[s] - delta), dsAbs = p[s] * dpAbs[s];
                            for (int e = 0; e < c.D; e++)
                            {
                                double ke = x.At(x.K, b, s, kh, e), qe = x.At(x.Q, b, t, h, e), ge = dout[Qi(b, t, h, e)];
                                r.Values[1][Qi(b, t, h, e)] += x.Scale * ds * ke;
                                r.Magnitudes[1][Qi(b, t, h, e)] += x.Scale * dsAbs * Math.Abs(ke);
                                r.Values[2][Ki(b, s, kh, e)] += x.Scale * ds * qe;
                                r.Magnitudes[2][Ki(b, s, kh, e)] += x.Scale * dsAbs * Math.Abs(qe);
                                r.Values[3][Ki(b, s, kh, e)] += p[s] * ge;
                                r.Magnitudes[3][Ki(b, s, kh, e)] += p[s] * Math.Abs(ge);
                            }
                        }
                    }
                }
            r.Bound = 2 * (c.D + 1) * sigma + 2 * Math.Log(c.T) + 32;
            return r;
        }

        /// <summary>max over elements of |got − reference| / (u·(n + Bound)·M + tiny): at most 1 within the bound.</summary>
        public double WorstRatio(int which, float[] got)
        {
            int n = which >= 2 ? _t * _group : _t;
            double worst = 0;
            for (int i = 0; i < got.Length; i++)
            {
                double bound = U * (n + Bound) * Magnitudes[which][i] + 1e-30;
                worst = Math.Max(worst, Math.Abs(got[i] - Values[which][i]) / bound);
            }
            return worst;
        }
    }
}
