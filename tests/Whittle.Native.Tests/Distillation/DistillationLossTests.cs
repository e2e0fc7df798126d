using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Distillation;

/// <summary>
/// The fused distillation loss (CpuBackend.Distillation and the Ops.Distillation tape op) against independent references:
/// PyTorch float64 values and autograd gradients (fixtures/kd, tools/fixtures/make_kd_fixture.py), central finite
/// differences, and invariants (KD = 0 with zero gradient when teacher == student; a top-k teacher with k = V is the full loss).
/// No GEMM is involved (the loss reads given logits), so these do not depend on WHITTLE_CPU_GEMM. Tolerances: the fused
/// loss is a softmax over V ≤ 41 f32 logits with sums in double, each output a handful of f32 exp/log roundings (TensorPrimitives,
/// ~1 ulp = 2^-23 relative): 1e-6 scaled error is ~10 such roundings. Exact-zero checks (teacher = student) hold to 1e-12
/// because p − q is computed from identical f32 values; through a top-k summary the teacher's log-probs are rounded to f32
/// once (log-softmax of values ≲ 10: absolute rounding ≲ 10·2^-24 ≈ 6e-7 per term), hence 1e-5 there.
/// </summary>
public class DistillationLossTests
{
    static readonly CpuBackend Cpu = CpuBackend.Instance;
    static string FixturePath => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "kd", "expected.safetensors");
    const float Alpha = 0.3f, Beta = 0.7f;

    static readonly (string Name, DistillKind Kind)[] Kinds = { ("fwd", DistillKind.ForwardKl), ("rev", DistillKind.ReverseKl),
        ("sym", DistillKind.Symmetric), ("js", DistillKind.JensenShannon) };

    /// <summary>max |ours - expected| / max |expected|.</summary>
    static double ScaledError(float[] ours, float[] expected)
    {
        Assert.That(ours.Length, Is.EqualTo(expected.Length));
        double err = 0, scale = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            err = Math.Max(err, Math.Abs(ours[i] - (double)expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        return err / scale;
    }

    static (Tensor Losses, Tensor D) Run(Tensor student, DistillTeacher teacher, Tensor targets, DistillSettings s)
    {
        var losses = Tensor.Zeros(DType.F32, student.Size(0), 2);
        var d = Tensor.Zeros(DType.F32, student.ShapeArray);
        Cpu.Distillation(student, teacher, targets, s, losses, d);
        return (losses, d);
    }

    static Tensor Randn(Rng rng, double std, params int[] shape)
    {
        var t = Tensor.Zeros(shape);
        rng.FillNormal(t.AsSpan<float>(), 0, std);
        return t;
    }

    // ---------------------------------------------------------------- PyTorch

    [Test]
    public void FullTeacherMatchesPyTorch([Values(0, 1, 2, 3)] int kind, [Values(1f, 2f, 0.5f)] float tau)
    {
        using var f = new SafeTensorsFile(FixturePath);
        using var student = f.ReadTensor("student"); using var teacher = f.ReadTensor("teacher");
        using var targets = f.ReadTensor("targets");
        var (name, k) = Kinds[kind];
        var (losses, d) = Run(student, DistillTeacher.Full(teacher), targets, new DistillSettings(k, tau, Alpha, Beta));
        string key = $"{name}.{tau:g}";
        // double accumulation, f32 storage: errors are a few f32 ulps
        Assert.That(ScaledError(losses.ToFloatArray(), f.ReadFloats($"losses.{key}")), Is.LessThan(1e-6), $"losses {key}");
        Assert.That(ScaledError(d.ToFloatArray(), f.ReadFloats($"dlogits.{key}")), Is.LessThan(1e-6), $"dlogits {key}");
        losses.Dispose(); d.Dispose();
    }

    [Test]
    public void TopKTeacherMatchesPyTorch([Values(0, 1, 2, 3)] int kind)
    {
        using var f = new SafeTensorsFile(FixturePath);
        using var student = f.ReadTensor("student"); using var targets = f.ReadTensor("targets");
        using var lp = f.ReadTensor("topk.logprobs"); using var ids = f.ReadTensor("topk.ids"); using var tail = f.ReadTensor("topk.tail");
        var (name, k) = Kinds[kind];
        var (losses, d) = Run(student, DistillTeacher.TopK(lp, ids, tail), targets, new DistillSettings(k, 2f, Alpha, Beta));
        Assert.That(ScaledError(losses.ToFloatArray(), f.ReadFloats($"losses.topk.{name}")), Is.LessThan(1e-6));
        Assert.That(ScaledError(d.ToFloatArray(), f.ReadFloats($"dlogits.topk.{name}")), Is.LessThan(1e-6));
        losses.Dispose(); d.Dispose();
    }

    [Test]
    public void TheIgnoredRowHasNoLossAndNoGradient()
    {
        using var f = new SafeTensorsFile(FixturePath);
        using var student = f.ReadTensor("student"); using var teacher = f.ReadTensor("teacher");
        using var targets = f.ReadTensor("targets");
        Assert.That(targets.ToIntArray()[2], Is.EqualTo(-100));
        var (losses, d) = Run(student, DistillTeacher.Full(teacher), targets, new DistillSettings(DistillKind.ForwardKl, 2f, 1f, 1f));
        Assert.That(losses.ToFloatArray().Skip(4).Take(2), Is.All.EqualTo(0f));
        Assert.That(d.ToFloatArray().Skip(2 * 11).Take(11), Is.All.EqualTo(0f));
        Assert.That(losses.ToFloatArray()[3], Is.GreaterThan(0f), "other rows do get a KD loss");
        losses.Dispose(); d.Dispose();
    }

    // ---------------------------------------------------------------- invariants

    [Test]
    public void TeacherEqualToStudentGivesZeroKdAndZeroKdGradient([Values(0, 1, 2, 3)] int kind, [Values(0.5f, 1f, 4f)] float tau)
    {
        var rng = new Rng(3);
        using var s = Randn(rng, 3, 5, 37);
        using var targets = Tensor.FromArray(new[] { 1, 0, 36, 5, 9 }, 5);
        var (losses, d) = Run(s, DistillTeacher.Full(s), targets, new DistillSettings(Kinds[kind].Kind, tau, Alpha: 0f, Beta: 1f));
        var l = losses.ToFloatArray();
        for (int i = 0; i < 5; i++) Assert.That(Math.Abs(l[2 * i + 1]), Is.LessThan(1e-12), $"KD of row {i}");
        Assert.That(d.ToFloatArray().Max(Math.Abs), Is.LessThan(1e-12));
        // and the same through a top-k summary with k = V of the student itself
        var (tlp, tid, ttail) = TeacherTopK.FromLogits(s, 37, tau);
        var (losses2, d2) = Run(s, DistillTeacher.TopK(tlp, tid, ttail), targets, new DistillSettings(Kinds[kind].Kind, tau, 0f, 1f));
        var l2 = losses2.ToFloatArray();
        // the log-probs went through f32
        for (int i = 0; i < 5; i++) Assert.That(Math.Abs(l2[2 * i + 1]), Is.LessThan(1e-5), $"top-k KD of row {i}");
        Assert.That(d2.ToFloatArray().Max(Math.Abs), Is.LessThan(1e-5));
        foreach (var t in new[] { losses, d, tlp, tid, ttail, losses2, d2 }) t.Dispose();
    }

    [Test]
    public void TopKWithKEqualToVIsTheFullLoss([Values(0, 1, 2, 3)] int kind, [Values(0.7f, 2f)] float tau)
    {
        var rng = new Rng(5);
        int n = 4, v = 29;
        using var s = Randn(rng, 2, n, v); using var t = Randn(rng, 2, n, v);
        using var targets = Tensor.FromArray(new[] { 3, -100, 28, 0 }, n);
        var settings = new DistillSettings(Kinds[kind].Kind, tau, Alpha, Beta);
        var (lf, df) = Run(s, DistillTeacher.Full(t), targets, settings);
        var (lp, ids, tail) = TeacherTopK.FromLogits(t, v, tau);
        Assert.That(tail.ToFloatArray(), Is.All.EqualTo(0f), "nothing is left out when k = V");
        var (lk, dk) = Run(s, DistillTeacher.TopK(lp, ids, tail), targets, settings);
        Assert.That(ScaledError(lk.ToFloatArray(), lf.ToFloatArray()), Is.LessThan(1e-6), "losses");
        Assert.That(ScaledError(dk.ToFloatArray(), df.ToFloatArray()), Is.LessThan(1e-6), "gradients");
        foreach (var x in new[] { lf, df, lp, ids, tail, lk, dk }) x.Dispose();
    }

    /// <summary>JS is symmetric in p and q: swapping student and teacher logits leaves every row's KD value unchanged.</summary>
    [Test]
    public void JensenShannonIsSymmetricInStudentAndTeacher([Values(0.5f, 1f, 3f)] float tau)
    {
        var rng = new Rng(21);
        using var s = Randn(rng, 3, 6, 41); using var t = Randn(rng, 3, 6, 41);
        using var targets = Tensor.FromArray(new[] { 0, 1, 2, 3, 4, 5 }, 6);
        var settings = new DistillSettings(DistillKind.JensenShannon, tau, Alpha, Beta);
        var (a, da) = Run(s, DistillTeacher.Full(t), targets, settings);
        var (b, db) = Run(t, DistillTeacher.Full(s), targets, settings);
        var la = a.ToFloatArray(); var lb = b.ToFloatArray();
        for (int i = 0; i < 6; i++)
        {
            Assert.That(la[2 * i + 1], Is.GreaterThan(1e-3f), $"row {i}: a real divergence");
            Assert.That(lb[2 * i + 1], Is.EqualTo(la[2 * i + 1]).Within(1e-4).Percent, $"row {i}: JS(p, q) = JS(q, p)");
        }
        foreach (var x in new[] { a, da, b, db }) x.Dispose();
    }

    /// <summary>
    /// 0 ≤ JS ≤ ln 2, so KD ≤ τ² ln 2, reached as the supports separate: here each row's student and teacher put nearly all
    /// mass on different ids (logit gap 60/τ'), so KD comes within 1e-6 of the bound; random rows stay strictly inside it.
    /// </summary>
    [Test]
    public void JensenShannonIsBoundedByLn2TimesTauSquared([Values(0.5f, 1f, 2f)] float tau)
    {
        int n = 5, v = 23;
        var sv = new float[n * v]; var tv = new float[n * v];
        for (int i = 0; i < n; i++) { sv[i * v + i] = 60f * tau; tv[i * v + (i + 7) % v] = 60f * tau; }
        using var s = Tensor.FromArray(sv, n, v); using var t = Tensor.FromArray(tv, n, v);
        using var targets = Tensor.FromArray(new[] { 0, 1, 2, 3, 4 }, n);
        var settings = new DistillSettings(DistillKind.JensenShannon, tau, 0f, 1f);
        var (l, d) = Run(s, DistillTeacher.Full(t), targets, settings);
        double bound = tau * tau * Math.Log(2);
        for (int i = 0; i < n; i++)
            Assert.That(
            l.ToFloatArray()[2 * i + 1], Is.LessThanOrEqualTo(bound * (1 + 1e-6)).And.GreaterThan(bound * (1 - 1e-6)), $"row {i}");
        Assert.That(d.ToFloatArray().All(float.IsFinite), "saturated rows have finite gradients");
        var rng = new Rng(22);
        using var rs = Randn(rng, 5, n, v); using var rt = Randn(rng, 5, n, v);
        var (lr, dr) = Run(rs, DistillTeacher.Full(rt), targets, settings);
        for (int i = 0; i < n; i++) Assert.That(lr.ToFloatArray()[2 * i + 1], Is.InRange(0.0, bound), $"random row {i}");
        foreach (var x in new[] { l, d, lr, dr }) x.Dispose();
    }

    /// <summary>A top-k teacher with no mass left for the tail while the student has some: KL(q‖p)'s sides differ, JS stays finite and
    /// exact.</summary>
    [Test]
    public void JensenShannonWithAnEmptyTeacherTailIsFiniteAndMatchesFiniteDifferences()
    {
        var rng = new Rng(23);
        using var s = Randn(rng, 1.5, 2, 9);
        using var lp = Tensor.FromArray(new[] { MathF.Log(0.75f), MathF.Log(0.25f), MathF.Log(0.5f), MathF.Log(0.5f) }, 2, 2);
        using var ids = Tensor.FromArray(new[] { 3, 0, 8, 1 }, 2, 2);
        using var tail = Tensor.Zeros(DType.F32, 2);
        using var targets = Tensor.FromArray(new[] { 1, 2 }, 2);
        var settings = new DistillSettings(DistillKind.JensenShannon, 1.5f, 0f, 1f);
        var (l, d) = Run(s, DistillTeacher.TopK(lp, ids, tail), targets, settings);
        Assert.That(l.ToFloatArray().Concat(d.ToFloatArray()).All(float.IsFinite));
        CheckGradient(s, () => DistillTeacher.TopK(lp, ids, tail), targets, settings);
        l.Dispose(); d.Dispose();
    }

    [Test]
    public void GradientsAccumulate()
    {
        var rng = new Rng(8);
        using var s = Randn(rng, 2, 3, 10); using var t = Randn(rng, 2, 3, 10);
        using var targets = Tensor.FromArray(new[] { 1, 2, 3 }, 3);
        var settings = new DistillSettings(DistillKind.ReverseKl, 2f, Alpha, Beta);
        var (_, once) = Run(s, DistillTeacher.Full(t), targets, settings);
        using var losses = Tensor.Zeros(DType.F32, 3, 2);
        using var twice = Tensor.Zeros(DType.F32, 3, 10);
        Cpu.Distillation(s, DistillTeacher.Full(t), targets, settings, losses, twice);
        Cpu.Distillation(s, DistillTeacher.Full(t), targets, settings, losses, twice);
        var a = once.ToFloatArray(); var b = twice.ToFloatArray();
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(2 * a[i]).Within(1e-6));
        once.Dispose();
    }

    // ---------------------------------------------------------------- finite differences

    /// <summary>
    /// d loss / d student of the tape op against central differences (h = 1e-2, f32 forward): as in GradCheckTests,
    /// ‖g − g_fd‖ / ‖g_fd‖ below 1e-3 leaves a wide margin over rounding and truncation yet catches any wrong factor.
    /// </summary>
    static void CheckGradient(Tensor student, Func<DistillTeacher> teacher, Tensor targets, DistillSettings settings)
    {
        const float h = 1e-2f;
        using var grad = Tensor.Zeros(student.ShapeArray);
        using (var tape = new Tape(Cpu))
        {
            var loss = tape.Distillation(Var.Parameter(student, grad), teacher(), targets, settings, out _);
            tape.Backward(loss);
        }
        double F()
        {
            using var tape = new Tape(Cpu, recording: false);
            return tape.Distillation(Var.Constant(student), teacher(), targets, settings, out _).Data.ToFloatArray()[0];
        }
        var x = student.AsSpan<float>();
        var g = grad.ToFloatArray();
        double num = 0, den = 0;
        for (int j = 0; j < x.Length; j++)
        {
            float orig = x[j];
            x[j] = orig + h; double fp = F();
            x[j] = orig - h; double fm = F();
            x[j] = orig;
            double fd = (fp - fm) / (2 * h);
            num += (g[j] - fd) * (g[j] - fd); den += fd * fd;
        }
        Assert.That(Math.Sqrt(num / den), Is.LessThan(1e-3), $"{settings}");
    }

    [Test]
    public void FullTeacherGradientMatchesFiniteDifferences([Values(0, 1, 2, 3)] int kind, [Values(0.5f, 1f, 3f)] float tau)
    {
        var rng = new Rng(11);
        using var s = Randn(rng, 1.5, 4, 13); using var t = Randn(rng, 1.5, 4, 13);
        using var targets = Tensor.FromArray(new[] { 2, 12, -100, 0 }, 4);
        CheckGradient(s, () => DistillTeacher.Full(t), targets, new DistillSettings(Kinds[kind].Kind, tau, Alpha, Beta));
    }

    [Test]
    public void TopKTeacherGradientMatchesFiniteDifferences([Values(0, 1, 2, 3)] int kind, [Values(1, 5)] int k)
    {
        var rng = new Rng(12);
        using var s = Randn(rng, 1.5, 3, 11); using var t = Randn(rng, 1.5, 3, 11);
        using var targets = Tensor.FromArray(new[] { 4, 0, 10 }, 3);
        var (lp, ids, tail) = TeacherTopK.FromLogits(t, k, 2f);
        CheckGradient(s, () => DistillTeacher.TopK(lp, ids, tail), targets, new DistillSettings(Kinds[kind].Kind, 2f, 0f, 1f));
        lp.Dispose(); ids.Dispose(); tail.Dispose();
    }

    [Test]
    public void TapeOpIsTheWeightedMeanOfItsParts()
    {
        using var f = new SafeTensorsFile(FixturePath);
        using var student = f.ReadTensor("student"); using var teacher = f.ReadTensor("teacher");
        using var targets = f.ReadTensor("targets");
        using var tape = new Tape(Cpu, recording: false);
        var loss = tape.Distillation(
            Var.Constant(student), DistillTeacher.Full(teacher), targets, new DistillSettings(DistillKind.ForwardKl, 2f, Alpha, Beta),
            out var parts);
        var expected = f.ReadFloats("losses.fwd.2");   // (N, 2) from PyTorch, ignored row 0
        double ce = 0, kd = 0;
        for (int i = 0; i < 6; i++) { ce += expected[2 * i]; kd += expected[2 * i + 1]; }
        Assert.That(parts.Rows, Is.EqualTo(5));
        Assert.That(parts.CrossEntropy, Is.EqualTo(ce / 5).Within(1e-5));
        Assert.That(parts.Distillation, Is.EqualTo(kd / 5).Within(1e-5));
        Assert.That(loss.Data.ToFloatArray()[0], Is.EqualTo(Alpha * ce / 5 + Beta * kd / 5).Within(1e-5));
    }

    // ---------------------------------------------------------------- bad input

    [Test]
    public void BadInputIsRejectedBeforeAnyWork()
    {
        using var s = Tensor.Zeros(DType.F32, 2, 5); using var t = Tensor.Zeros(DType.F32, 2, 6);
        using var targets = Tensor.FromArray(new[] { 1, 2 }, 2);
        using var losses = Tensor.Zeros(DType.F32, 2, 2);
        Assert.That(
            () => Cpu.Distillation(
            s, DistillTeacher.Full(t), targets, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 1f), losses, null),
            Throws.ArgumentException.With.Message.Contains("vocabulary 6").And.Message.Contains("student has 5"));
        foreach (var tau in new[] { 0f, -1f, float.NaN, float.PositiveInfinity })
            Assert.That(
                () => Cpu.Distillation(
                s, DistillTeacher.Full(s), targets, new DistillSettings(DistillKind.ForwardKl, tau, 1f, 1f), losses, null),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("temperature"));
        using var lp6 = Tensor.Zeros(DType.F32, 2, 6); using var ids6 = Tensor.FromArray(new int[12], 2, 6);
        using var tail = Tensor.Zeros(DType.F32, 2);
        Assert.That(
            () => Cpu.Distillation(
            s, DistillTeacher.TopK(lp6, ids6, tail), targets, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 1f), losses, null),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("k must be in [1, 5]"));
        using var lp2 = Tensor.Zeros(DType.F32, 2, 2); using var dup = Tensor.FromArray(new[] { 0, 1, 3, 3 }, 2, 2);
        Assert.That(
            () => Cpu.Distillation(
            s, DistillTeacher.TopK(lp2, dup, tail), targets, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 1f), losses, null),
            Throws.ArgumentException.With.Message.Contains("repeat 3 at row 1"));
        using var badTargets = Tensor.FromArray(new[] { 1, 5 }, 2);
        Assert.That(
            () => Cpu.Distillation(
            s, DistillTeacher.Full(s), badTargets, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 1f), losses, null),
            Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("target 5 at row 1"));
        Assert.That(() => TeacherTopK.FromLogits(s, 0, 1f), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
