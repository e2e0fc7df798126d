using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Distillation;

/// <summary>
/// DistillationLoss with a Llama-family pair (a GQA Llama teacher, a Qwen3 student with QK-norm and one kv head): the
/// loss it returns is α·CE + β·τ²·KL(teacher‖student) computed independently in float64 from the two models' Forward
/// logits (KdReference), with SALT's weights ((1−ω)·CE + ω·KL for the first n_KD steps, then plain CE), whole and with
/// the chunked LM head. Tolerance 1e-5 relative: the same f32 logits on both sides (same CPU backend and shapes; the
/// chunked head computes each logit as the same dot product on the pinned GEMM), then per-row values in double written
/// as f32 and averaged in f32 over 16 rows (≲ 16·2^-24 ≈ 1e-6).
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class LlamaDistillationLossTests
{
    static readonly IBackend Cpu = TestBackends.PinnedCpu;
    const int B = 2, T = 8, V = 97;

    static LlamaConfig Teacher => new()
    {
        Family = "llama", VocabSize = V, HiddenSize = 32, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2, IntermediateSize = 48,
        MaxPositionEmbeddings = 32,
    };
    static LlamaConfig Student => new()
    {
        Family = "qwen3", VocabSize = V, HiddenSize = 24, NumLayers = 1, NumHeads = 2, NumKeyValueHeads = 1, ExplicitHeadDim = 12,
        IntermediateSize = 40, MaxPositionEmbeddings = 32, TieWordEmbeddings = true,
    };

    /// <summary>A teacher with opinions (head ×50: a KD term worth comparing), a student, and a random batch.</summary>
    static (Llama Teacher, Llama Student, int[] Ids, int[] Targets) Pair(int seed)
    {
        var teacher = Llama.CreateRandom(Teacher, Cpu, (ulong)seed);
        var head = teacher.Parameters.Info(teacher.HeadName);
        foreach (ref float w in teacher.Parameters.Flat.AsSpan<float>().Slice((int)head.Offset, (int)head.Count)) w *= 50f;
        var rng = new Random(seed);
        return (teacher, Llama.CreateRandom(Student, Cpu, (ulong)seed + 1), Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray(),
            Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray());
    }

    [TestCase(0)] [TestCase(5)]
    public void SaltLossOfALlamaPairIsTheFloat64Reference(int chunkRows)
    {
        var (teacher, student, ids, targets) = Pair(2);
        using var _t = teacher; using var _s = student;
        student.LossChunkRows = chunkRows;
        using var x = Tensor.FromArray(ids, B, T);
        using var y = Tensor.FromArray(targets, B * T);

        const float omega = 0.4f;
        var loss = DistillationLoss.Create(student, teacher, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 0f), 0,
            SaltWeights.Create(SaltSchedule.Step, omega, kdSteps: 2, totalSteps: 4));
        var logP = KdReference.LogSoftmax(student, ids, B, T);
        double ce = KdReference.CrossEntropy(logP, targets, V);
        double kl = KdReference.ForwardKl(KdReference.LogSoftmax(teacher, ids, B, T), logP, V);
        Assert.That(kl, Is.GreaterThan(0.1), "a teacher with opinions: a KD term worth comparing");
        double Value(int step)
        {
            using var tape = new Tape(Cpu);
            var (l, parts, _) = loss(tape, x, y, step);
            if (step <= 2)
            {
                Assert.That(parts!["ce"], Is.EqualTo(ce).Within(1e-5 * ce), "CE part");
                Assert.That(parts["kd"], Is.EqualTo(kl).Within(1e-5 * kl), "KL part");
            }
            return l.Data.ToFloatArray()[0];
        }
        double kd = (1 - omega) * ce + omega * kl;
        Assert.That(Value(1), Is.EqualTo(kd).Within(1e-5 * kd), "(1−ω)·CE + ω·KL in the KD phase");
        Assert.That(Value(3), Is.EqualTo(ce).Within(1e-5 * ce), "plain CE after n_KD");
    }

    [Test]
    public void DistillAtATemperatureOfALlamaPairIsTheFloat64Reference()
    {
        var (teacher, student, ids, targets) = Pair(5);
        using var _t = teacher; using var _s = student;
        using var x = Tensor.FromArray(ids, B, T);
        using var y = Tensor.FromArray(targets, B * T);
        const float tau = 2f, alpha = 0.3f, beta = 0.7f;
        var loss = DistillationLoss.Create(student, teacher, new DistillSettings(DistillKind.ForwardKl, tau, alpha, beta), 0,
            _ => (alpha, beta));
        double ce = KdReference.CrossEntropy(KdReference.LogSoftmax(student, ids, B, T), targets, V);
        double kl = KdReference.ForwardKl(
            KdReference.LogSoftmax(teacher, ids, B, T, tau), KdReference.LogSoftmax(student, ids, B, T, tau), V, tau);
        using var tape = new Tape(Cpu);
        double value = loss(tape, x, y, 1).Loss.Data.ToFloatArray()[0];
        double expected = alpha * ce + beta * kl;
        Assert.That(value, Is.EqualTo(expected).Within(1e-5 * expected), "α·CE + β·τ²·KL");
    }

    [Test]
    public void DifferentVocabulariesAreRefusedNamingBoth()
    {
        using var teacher = Llama.CreateRandom(Teacher, Cpu, 2);
        using var student = Llama.CreateRandom(Student with { VocabSize = V + 3 }, Cpu, 3);
        Assert.That(() => DistillationLoss.Create(student, teacher, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 0f), 0, _ => null),
            Throws.InstanceOf<WhittleException>().With.Message.Contains($"teacher's vocab_size is {V}, the student's {V + 3}"));
    }
}
