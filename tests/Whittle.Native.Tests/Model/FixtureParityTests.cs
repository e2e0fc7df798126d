using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// The CPU engine against PyTorch: tools/fixtures/make_tiny_neox.py computes Hugging Face's GPT-NeoX, and
/// tools/fixtures/make_llama_reference.py its Llama, Qwen2, Qwen3 and Mistral models, in float64 on the fixtures' stored
/// weights (logits, loss, every gradient, one AdamW step; what each Llama fixture covers: LlamaFixtureTests). Errors are
/// measured per tensor as
/// max |ours − expected| / max |expected|, because some gradient entries are exactly zero in exact arithmetic (the key
/// bias outside the rotary dims) and an element-wise relative error would compare round-off with round-off.
/// Tolerances, from float32 rounding against a float64 reference, for any f32 GEMM (no summation order is assumed, so the
/// tests run under every GEMM path: TestBackends.GemmSensitive). A logit passes through 2 layers of about six f32 dot
/// products each (QKV, scores, mixing, dense, MLP up/down; length k ≤ 72) plus layernorms (double sums); one dot
/// product's error is ~sqrt(k)·2^-24 ≈ 5e-7 of Σ|terms| (random walk, GemmTests' derivation), and about a dozen such
/// stages add up to ~6e-6 of the logits' scale: 1e-5 for logits and losses. Gradients chain about twice as many products
/// and sum over the B·T rows, where cancellation makes the scaled error up to ~10× larger: 1e-4. One AdamW step is
/// element-wise (m̂/(√v̂ + ε) in a few f32 operations, each ≤ 2^-24 relative, on top of a parameter of scale ≥ 1e-2):
/// 1e-6 is about ten roundings.
/// </summary>
[TestFixture("tiny-neox")]
[TestFixture("tiny-neox-seq")]
[TestFixture("tiny-llama")]
[TestFixture("tiny-qwen2")]
[TestFixture("tiny-qwen3")]
[TestFixture("tiny-mistral")]
[Category(TestBackends.GemmSensitive)]
public class FixtureParityTests(string fixture)
{
    static readonly CpuBackend Cpu = CpuBackend.Instance;

    (LanguageModel Model, SafeTensorsFile Expected, Tensor Inputs, Tensor Targets) Load() => Load(fixture);

    /// <summary>A reference fixture's model, expected values, and its batch split into inputs (B, T) and targets (B·T).</summary>
    internal static (LanguageModel Model, SafeTensorsFile Expected, Tensor Inputs, Tensor Targets) Load(string fixture)
    {
        string dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        var model = ModelCheckpoint.Load(dir, Cpu);
        var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        var tokens = expected.ReadTensor("tokens");                 // (B, T+1)
        int b = tokens.Size(0), t = tokens.Size(1) - 1;
        var all = tokens.ToIntArray();
        var inputs = new int[b * t]; var targets = new int[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) { inputs[i * t + j] = all[i * (t + 1) + j]; targets[i * t + j] = all[i * (t + 1) + j + 1]; }
        return (model, expected, Tensor.FromArray(inputs, b, t), Tensor.FromArray(targets, b * t));
    }

    [Test]
    public void LogitsAndLossMatchPyTorch()
    {
        var (model, expected, inputs, targets) = Load();
        using var _ = model; using var __ = expected;
        using var tape = new Tape(Cpu, recording: false);
        var logits = model.Forward(tape, inputs);
        Assert.That(Errors.Scaled(logits.Data.ToFloatArray(), expected.ReadFloats("logits")), Is.LessThan(1e-5), "logits");
        var loss = tape.CrossEntropy(logits, targets).Data.ToFloatArray()[0];
        Assert.That(Math.Abs(loss / expected.ReadFloats("loss")[0] - 1), Is.LessThan(1e-5), "loss, relative");
        using var ignoreTargets = expected.ReadTensor("targets_ignore");
        var lossIgnore = tape.CrossEntropy(logits, ignoreTargets.Reshape(-1), ignoreIndex: -100).Data.ToFloatArray()[0];
        Assert.That(Math.Abs(lossIgnore / expected.ReadFloats("loss_ignore")[0] - 1), Is.LessThan(1e-5), "loss with ignored targets");
    }

    [Test]
    public void EveryParameterGradientMatchesPyTorch()
    {
        var (model, expected, inputs, targets) = Load();
        using var _ = model; using var __ = expected;
        model.Parameters.EnsureGrad();
        using (var tape = new Tape(Cpu)) tape.Backward(model.Loss(tape, inputs, targets));
        foreach (var p in model.Parameters.Entries)
        {
            double e = Errors.Scaled(model.Parameters.Grad(p.Name).ToFloatArray(), expected.ReadFloats("grad." + p.Name));
            Assert.That(e, Is.LessThan(1e-4), $"gradient of {p.Name}");
        }
    }

    [Test]
    public void OneAdamWStepMatchesTorchOptimAdamW()
    {
        var (model, expected, _, _) = Load();
        using var m0 = model; using var __ = expected;
        var md = expected.Metadata;
        var settings = new AdamWSettings(float.Parse(md["adamw.lr"]), float.Parse(md["adamw.beta1"]), float.Parse(md["adamw.beta2"]),
            float.Parse(md["adamw.eps"]), float.Parse(md["adamw.weight_decay"]));
        // PyTorch's gradients, so the comparison isolates the optimizer (see tools/fixtures/README.md).
        var grad = model.Parameters.EnsureGrad();
        foreach (var p in model.Parameters.Entries)
            expected.ReadFloats("grad." + p.Name, grad.AsSpan<float>().Slice((int)p.Offset, (int)p.Count));
        using var m = Tensor.Zeros((int)model.Parameters.Count);
        using var v = Tensor.Zeros((int)model.Parameters.Count);
        Cpu.AdamW(model.Parameters.Flat, grad, m, v, model.Parameters.DecayCount, settings, step: 1, gradScale: 1f);
        foreach (var p in model.Parameters.Entries)
        {
            double e = Errors.Scaled(model.Parameters[p.Name].ToFloatArray(), expected.ReadFloats("adamw." + p.Name));
            Assert.That(e, Is.LessThan(1e-6), $"{p.Name} after one AdamW step (decay {(p.Decay ? "on" : "off")})");
        }
    }
}
