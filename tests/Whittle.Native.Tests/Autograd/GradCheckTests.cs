using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Autograd;

/// <summary>
/// Every op's hand-written backward against central finite differences of its forward, on random inputs.
///
/// Tolerance: we compare the scalar f = Σ w ⊙ op(x) for random w. Central differences have truncation error O(h²·f''')
/// and, because the forward runs in f32, rounding error about ε_f32·|f|/h. With h = 1e-2 and |f| = O(1..10) both are
/// about 1e-4..1e-5 relative, so ‖g − g_fd‖ / ‖g_fd‖ ≤ 1e-3 has a safe margin yet catches any real mistake (a wrong
/// factor, a missed term or a transposed index gives errors of order 1). Every input element is perturbed.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class GradCheckTests
{
    static readonly CpuBackend Cpu = CpuBackend.Instance;
    const float H = 1e-2f;
    const double Tol = 1e-3;

    static Tensor Rand(Rng rng, double std, params int[] shape)
    {
        var t = Tensor.Zeros(shape);
        rng.FillNormal(t.AsSpan<float>(), 0, std);
        return t;
    }

    /// <summary>Checks d(Σ w ⊙ build(inputs)) / d input for each input against finite differences.</summary>
    static void Check(string op, Func<Tape, Var[], Var> build, params Tensor[] inputs)
    {
        var rng = new Rng(99);
        // Analytic gradients.
        var grads = inputs.Select(t => Tensor.Zeros(t.ShapeArray)).ToArray();
        Tensor w;
        using (var tape = new Tape(Cpu))
        {
            var vars = inputs.Select((t, i) => Var.Parameter(t, grads[i])).ToArray();
            var y = build(tape, vars);
            w = Rand(rng, 1.0, y.Data.ShapeArray);
            tape.Backward(y, w);
        }
        double F()
        {
            using var tape = new Tape(Cpu, recording: false);
            var y = build(tape, inputs.Select(Var.Constant).ToArray());
            var a = y.Data.ToFloatArray(); var b = w.ToFloatArray();
            double s = 0; for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
            return s;
        }
        for (int i = 0; i < inputs.Length; i++)
        {
            var x = inputs[i].AsSpan<float>();
            var fd = new double[x.Length];
            for (int j = 0; j < x.Length; j++)
            {
                float orig = x[j];
                x[j] = orig + H; double fp = F();
                x[j] = orig - H; double fm = F();
                x[j] = orig;
                fd[j] = (fp - fm) / (2 * H);
            }
            var g = grads[i].ToFloatArray();
            double num = 0, den = 0;
            for (int j = 0; j < fd.Length; j++) { num += (g[j] - fd[j]) * (g[j] - fd[j]); den += fd[j] * fd[j]; }
            double rel = Math.Sqrt(num / Math.Max(den, 1e-30));
            Assert.That(rel, Is.LessThan(Tol), $"{op}: input {i} {inputs[i].Describe()}: relative gradient error {rel:E2}");
        }
    }

    [Test]
    public void Embedding()
    {
        var rng = new Rng(1);
        using var ids = Tensor.FromArray(new[] { 3, 0, 3, 5, 1 }, 5);   // a repeated id must accumulate
        Check("embedding", (t, v) => t.Embedding(ids, v[0]), Rand(rng, 1, 7, 4));
    }

    [Test]
    public void LayerNorm()
    {
        var rng = new Rng(2);
        var w = Rand(rng, 0.3, 9); foreach (ref var f in w.AsSpan<float>()) f += 1;
        Check("layernorm", (t, v) => t.LayerNorm(v[0], v[1], v[2], 1e-5f), Rand(rng, 2, 6, 9), w, Rand(rng, 0.5, 9));
    }

    [Test]
    public void LinearWithBias()
    {
        var rng = new Rng(3);
        Check("linear", (t, v) => t.Linear(v[0], v[1], v[2]), Rand(rng, 1, 5, 7), Rand(rng, 0.5, 6, 7), Rand(rng, 0.5, 6));
    }

    [Test]
    public void LinearThroughASubMatrixView()
    {
        // W[:4, :5] of a (6, 7) weight: the gradient must land in exactly that block of the parent's gradient.
        var rng = new Rng(4);
        Check("linear (sub-network view)", (t, v) => t.Linear(v[0], t.View(v[1], w => w.Narrow(0, 0, 4).Narrow(1, 0, 5)), null),
            Rand(rng, 1, 3, 5), Rand(rng, 0.5, 6, 7));
    }

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void MatMul(bool transA, bool transB)
    {
        var rng = new Rng(5);
        int m = 4, k = 6, n = 3;
        var a = transA ? Rand(rng, 1, k, m) : Rand(rng, 1, m, k);
        var b = transB ? Rand(rng, 1, n, k) : Rand(rng, 1, k, n);
        Check($"matmul {transA}/{transB}", (t, v) => t.MatMul(v[0], transA, v[1], transB), a, b);
    }

    [Test]
    public void Rotary()
    {
        var rng = new Rng(6);
        int T = 5, half = 3;
        var cos = new float[T * half]; var sin = new float[T * half];
        for (int i = 0; i < cos.Length; i++)
        {
            double ang = rng.NextDouble() * 6;
            cos[i] = (float)Math.Cos(ang);
            sin[i] = (float)Math.Sin(ang);
        }
        using var c = Tensor.FromArray(cos, T, half); using var s = Tensor.FromArray(sin, T, half);
        // Rotary works in place, so the check feeds it a copy (an Add with zero keeps the tape honest).
        Check("rotary", (t, v) => t.Rotary(t.Add(v[0], v[1]), c, s), Rand(rng, 1, 2, T, 2, 8), Tensor.Zeros(2, T, 2, 8));
    }

    [Test]
    public void AttentionOnStridedViews()
    {
        var rng = new Rng(7);
        int B = 2, T = 5, Hh = 2, D = 4;
        // q, k, v as the model takes them: strided views of one fused (B, T, H, 3, D) buffer.
        long[] strides = [(long)T * Hh * 3 * D, Hh * 3 * D, 3 * D, 1];
        int[] shape = [B, T, Hh, D];
        Check("attention", (t, v) =>
        {
            var q = t.View(v[0], x => x.AsStrided(shape, strides, 0));
            var k = t.View(v[0], x => x.AsStrided(shape, strides, D));
            var vv = t.View(v[0], x => x.AsStrided(shape, strides, 2 * D));
            return t.Attention(q, k, vv, 1f / MathF.Sqrt(D));
        }, Rand(rng, 1, B, T, Hh * 3 * D));
    }

    [TestCase(1)]   // multi-query: every query head reads the one kv head
    [TestCase(2)]   // grouped: query heads 0, 1 read kv head 0; 2, 3 read kv head 1
    [TestCase(4)]   // multi-head
    public void GroupedQueryAttention(int kvHeads)
    {
        var rng = new Rng(17);
        int B = 2, T = 5, Hq = 4, D = 4;
        // q (B, T, 4, D) and k, v (B, T, KV, D) as strided views of one buffer per row: [q heads | k heads | v heads].
        int width = (Hq + 2 * kvHeads) * D;
        long[] strides = [(long)T * width, width, D, 1];
        Check($"attention, {kvHeads} kv heads", (t, v) =>
        {
            var q = t.View(v[0], x => x.AsStrided([B, T, Hq, D], strides, 0));
            var k = t.View(v[0], x => x.AsStrided([B, T, kvHeads, D], strides, Hq * D));
            var vv = t.View(v[0], x => x.AsStrided([B, T, kvHeads, D], strides, (Hq + kvHeads) * D));
            return t.Attention(q, k, vv, 1f / MathF.Sqrt(D));
        }, Rand(rng, 1, B, T, width));
    }

    /// <summary>T = 100 crosses the CPU kernel's tiles (96 queries, 64 keys: a partial query tile, a partial key tile,
    /// a diagonal tile with fully masked rows), with two query heads sharing one kv head.</summary>
    [Test]
    public void AttentionAcrossTiles()
    {
        var rng = new Rng(21);
        int B = 1, T = CpuBackend.AttentionQueryTile + 4, Hq = 2, D = 3, width = (Hq + 2) * D;
        long[] strides = [(long)T * width, width, D, 1];
        Check("attention across tiles", (t, v) =>
        {
            var q = t.View(v[0], x => x.AsStrided([B, T, Hq, D], strides, 0));
            var k = t.View(v[0], x => x.AsStrided([B, T, 1, D], strides, Hq * D));
            var vv = t.View(v[0], x => x.AsStrided([B, T, 1, D], strides, (Hq + 1) * D));
            return t.Attention(q, k, vv, 1f / MathF.Sqrt(D));
        }, Rand(rng, 1, B, T, width));
    }

    [Test]
    public void RmsNormRows()
    {
        var rng = new Rng(18);
        var w = Rand(rng, 0.3, 7);
        foreach (ref var e in w.AsSpan<float>()) e += 1f;   // weights around 1, as a trained norm's
        Check("rmsnorm", (t, v) => t.RmsNorm(v[0], v[1], 1e-6f), Rand(rng, 1.5, 6, 7), w);
    }

    [Test]
    public void RmsNormPerHeadOnAStridedView()
    {
        var rng = new Rng(19);
        int B = 2, T = 3, Hh = 2, D = 6;
        // QK-norm on k inside a fused row [q heads | k heads]: a (B, T, H, D) view whose heads are not contiguous rows.
        long[] strides = [(long)T * 2 * Hh * D, 2 * Hh * D, D, 1];
        Check("rmsnorm per head", (t, v) => t.RmsNorm(t.View(v[0], x => x.AsStrided([B, T, Hh, D], strides, Hh * D)), v[1], 1e-6f),
            Rand(rng, 1, B, T, 2 * Hh * D), Rand(rng, 0.5, D));
    }

    [Test]
    public void SwiGlu()
    {
        var rng = new Rng(20);
        Check("swiglu", (t, v) => t.SwiGlu(v[0], v[1]), Rand(rng, 2, 5, 9), Rand(rng, 1, 5, 9));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Gelu(bool tanh)
    {
        var rng = new Rng(8);
        Check($"gelu tanh={tanh}", (t, v) => t.Gelu(v[0], tanh), Rand(rng, 2, 4, 9));
    }

    [Test]
    public void Add()
    {
        var rng = new Rng(9);
        Check("add", (t, v) => t.Add(v[0], v[1]), Rand(rng, 1, 3, 4), Rand(rng, 1, 3, 4));
    }

    [Test]
    public void CrossEntropyWithIgnoredTargets()
    {
        var rng = new Rng(10);
        using var targets = Tensor.FromArray(new[] { 2, -100, 0, 6, -100, 1 }, 6);
        Check("cross-entropy", (t, v) => t.CrossEntropy(v[0], targets), Rand(rng, 2, 6, 7));
    }

    [TestCase(true, "gelu")]
    [TestCase(false, "gelu_new")]
    public void WholeModelWithPartialRotary(bool parallel, string act)
    {
        var config = new GptNeoXConfig
        {
            VocabSize = 11, HiddenSize = 8, NumLayers = 2, NumHeads = 2, IntermediateSize = 12, RotaryPct = 0.5f,
            UseParallelResidual = parallel, HiddenAct = act, MaxPositionEmbeddings = 16,
        };
        using var model = GptNeoX.CreateRandom(config, Cpu, 5);
        // Larger weights than the 0.02 init so every path carries signal.
        var rng = new Rng(11);
        var flat = model.Parameters.Flat.AsSpan<float>();
        for (int i = 0; i < flat.Length; i++) flat[i] += (float)(0.3 * rng.NextNormal());
        using var ids = Tensor.FromArray(new[] { 1, 4, 9, 2, 3, 3, 10, 0 }, 2, 4);
        using var targets = Tensor.FromArray(new[] { 4, 9, 2, 5, 3, 10, 0, 7 }, 8);
        var grad = model.Parameters.EnsureGrad();
        using (var tape = new Tape(Cpu))
            tape.Backward(model.Loss(tape, ids, targets));
        var analytic = grad.ToFloatArray();
        double Loss()
        {
            using var tape = new Tape(Cpu, recording: false);
            return model.Loss(tape, ids, targets).Data.ToFloatArray()[0];
        }
        double num = 0, den = 0;
        // Every parameter element of the tiny model.
        for (int j = 0; j < flat.Length; j++)
        {
            float orig = flat[j];
            flat[j] = orig + H; double fp = Loss();
            flat[j] = orig - H; double fm = Loss();
            flat[j] = orig;
            double fd = (fp - fm) / (2 * H);
            num += (analytic[j] - fd) * (analytic[j] - fd); den += fd * fd;
        }
        Assert.That(Math.Sqrt(num / den), Is.LessThan(Tol));
    }
}
