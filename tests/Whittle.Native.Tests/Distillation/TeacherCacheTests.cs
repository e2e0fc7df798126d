using Whittle.Native.Cpu;
using Whittle.Native.Distillation;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Distillation;

/// <summary>
/// The teacher cache: what is read back is the written summary with log-probs rounded to f16 (checked against .NET's
/// own Half rounding, element by element), and every mismatch (token hash, temperature, vocabulary, truncation) is refused.
/// </summary>
public class TeacherCacheTests
{
    string _dir = "";
    [SetUp] public void SetUp() => _dir = Path.Combine(Path.GetTempPath(), $"whittle-kdc-{Guid.NewGuid():N}");
    [TearDown] public void TearDown() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static Tensor Randn(int seed, params int[] shape)
    {
        var t = Tensor.Zeros(shape);
        new Rng((ulong)seed).FillNormal(t.AsSpan<float>(), 0, 2);
        return t;
    }

    [Test]
    public void RoundTripsAndRefusesAnyMismatch()
    {
        using var teacher = Randn(1, 6, 50);
        var (lp, ids, tail) = TeacherTopK.FromLogits(teacher, 8, 2f);
        int[] tokens = { 5, 9, 1, 0, 44, 3, 7 };
        TeacherCache.Write(_dir, 3, tokens, lp, ids, tail, 2f, 50);
        var (rlp, rids, rtail) = TeacherCache.Read(_dir, 3, tokens, 2f, 50);
        Assert.That(rids.ToIntArray(), Is.EqualTo(ids.ToIntArray()));
        Assert.That(rtail.ToFloatArray(), Is.EqualTo(tail.ToFloatArray()));
        Assert.That(rlp.ToFloatArray(), Is.EqualTo(lp.ToFloatArray().Select(x => (float)(Half)x).ToArray()));

        // the cached summary drives the loss to within f16 rounding of the exact summary
        using var student = Randn(2, 6, 50);
        using var targets = Tensor.FromArray(new[] { 1, 2, 3, 4, 5, 6 }, 6);
        using var exact = Tensor.Zeros(DType.F32, 6, 2); using var cached = Tensor.Zeros(DType.F32, 6, 2);
        var s = new DistillSettings(DistillKind.ForwardKl, 2f, 0f, 1f);
        CpuBackend.Instance.Distillation(student, DistillTeacher.TopK(lp, ids, tail), targets, s, exact, null);
        CpuBackend.Instance.Distillation(student, DistillTeacher.TopK(rlp, rids, rtail), targets, s, cached, null);
        var e = exact.ToFloatArray(); var c = cached.ToFloatArray();
        // f16 keeps 11 significant bits: each cached log-prob ℓ is off by ≤ 2^-11·|ℓ|, |ℓ| ≲ ln 50 + logit spread ≈ 10, so
        // KD = τ²·Σ p·(ℓ_t − ℓ_s) moves by ≤ τ²·2^-11·10 ≈ 0.02 absolute at τ = 2 — about 2% of these rows' KD, plus an
        // absolute floor for rows whose KD is small.
        for (int i = 0; i < 6; i++) Assert.That(c[2 * i + 1], Is.EqualTo(e[2 * i + 1]).Within(0.02 * Math.Abs(e[2 * i + 1]) + 1e-3));

        int[] other = { 5, 9, 1, 0, 44, 3, 8 };
        Assert.That(
            () => TeacherCache.Read(_dir, 3, other, 2f, 50),
            Throws.InstanceOf<InvalidFileException>().With.Message.Contains("batch 3 was cached for tokens with sha256"));
        Assert.That(
            () => TeacherCache.Read(_dir, 3, tokens, 1f, 50),
            Throws.InstanceOf<InvalidFileException>().With.Message.Contains("temperature 2"));
        Assert.That(
            () => TeacherCache.Read(_dir, 3, tokens, 2f, 51),
            Throws.InstanceOf<InvalidFileException>().With.Message.Contains("vocabulary of 50"));
        Assert.That(
            () => TeacherCache.Read(_dir, 4, tokens, 2f, 50), Throws.InstanceOf<WhittleException>().With.Message.Contains("no batch 4"));
        var path = TeacherCache.BatchPath(_dir, 3);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^3]);
        Assert.That(
            () => TeacherCache.Read(_dir, 3, tokens, 2f, 50),
            Throws.InstanceOf<InvalidFileException>().With.Message.Contains("bytes, expected"));
        foreach (var t in new[] { lp, ids, tail, rlp, rids, rtail }) t.Dispose();
    }
}
