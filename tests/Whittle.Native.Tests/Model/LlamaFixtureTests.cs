using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// The CPU engine's Llama family against PyTorch: tools/fixtures/make_llama_reference.py computes Hugging Face's
/// LlamaForCausalLM / Qwen2 / Qwen3 / Mistral in float64 on the fixtures' stored weights (logits, loss, every gradient).
/// The four fixtures cover GQA with KV = H/2 and KV = 1, QK-norm, head_dim ≠ hidden / heads, tied and untied heads,
/// q/k/v, o and MLP biases, llama3 and linear rope scaling, and weights stored as f32, bf16 (qwen2), f16 (mistral) and
/// in two shards (qwen3). Errors are max |ours − expected| / max |expected| per tensor (Errors.Scaled). Tolerances as
/// for GPT-NeoX (FixtureParityTests, which derives them): a logit goes through 2 layers of about seven f32 dot products
/// (q/k/v, scores, mixing, o, gate/up, down; length ≤ 48) plus RMSNorms (double sums), ~5e-7 of Σ|terms| each: 1e-5 for
/// logits and the loss; gradients chain about twice as many products and sum over the B·T rows: 1e-4.
/// </summary>
[TestFixture("tiny-llama")]
[TestFixture("tiny-qwen2")]
[TestFixture("tiny-qwen3")]
[TestFixture("tiny-mistral")]
[Category(TestBackends.GemmSensitive)]
public class LlamaFixtureTests(string fixture)
{
    static readonly CpuBackend Cpu = CpuBackend.Instance;
    string Dir => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);

    (Llama Model, SafeTensorsFile Expected, Tensor Inputs, Tensor Targets) Load()
    {
        var model = (Llama)ModelCheckpoint.Load(Dir, Cpu);
        var expected = new SafeTensorsFile(Path.Combine(Dir, "expected.safetensors"));
        var tokens = expected.ReadTensor("tokens");                 // (B, T+1)
        int b = tokens.Size(0), t = tokens.Size(1) - 1;
        var all = tokens.ToIntArray();
        var inputs = new int[b * t]; var targets = new int[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) { inputs[i * t + j] = all[i * (t + 1) + j]; targets[i * t + j] = all[i * (t + 1) + j + 1]; }
        return (model, expected, Tensor.FromArray(inputs, b, t), Tensor.FromArray(targets, b * t));
    }

    [Test]
    public void TheFixtureIsWhatItsNameSays()
    {
        using var reader = new CheckpointReader(Dir);
        var dtypes = reader.Names.Select(n => reader.Find(n).DTypeName).Distinct().ToArray();
        var c = (LlamaConfig)ModelConfig.Load(Dir);
        switch (fixture)
        {
            case "tiny-llama":
                Assert.That(c is { NumKeyValueHeads: 2, NumHeads: 4, TieWordEmbeddings: true, QkvBias: true, OutputBias: true, GatedMlpBias: true });
                Assert.That(c.RopeScaling?.Kind, Is.EqualTo(RopeScalingKind.Llama3));
                Assert.That(reader.Contains(Llama.LmHead), Is.False, "a tied head is stored once, as the embedding");
                break;
            case "tiny-qwen2":
                Assert.That(c is { NumKeyValueHeads: 1, QkvBias: true, OutputBias: false, TieWordEmbeddings: false });
                Assert.That(c.RopeScaling?.Kind, Is.EqualTo(RopeScalingKind.Linear));
                Assert.That(dtypes, Is.EqualTo(new[] { "BF16" }));
                break;
            case "tiny-qwen3":
                Assert.That(c is { NumKeyValueHeads: 2, QkNorm: true, HeadSize: 12, HiddenSize: 32, NumHeads: 4 });
                Assert.That(reader.IsSharded, "two shards and an index");
                break;
            case "tiny-mistral":
                Assert.That(c is { NumKeyValueHeads: 2, QkvBias: false, OutputBias: false });
                Assert.That(dtypes, Is.EqualTo(new[] { "F16" }));
                break;
        }
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
    }

    [Test]
    public void EveryParameterGradientMatchesPyTorch()
    {
        var (model, expected, inputs, targets) = Load();
        using var _ = model; using var __ = expected;
        model.Parameters.EnsureGrad();
        using (var tape = new Tape(Cpu)) tape.Backward(model.Loss(tape, inputs, targets));
        Assert.That(model.Parameters.Entries.Select(p => p.Name), Is.EquivalentTo(expected.Tensors.Keys.Where(k => k.StartsWith("grad.")).Select(k => k[5..])),
            "one gradient per parameter, named as in Hugging Face");
        foreach (var p in model.Parameters.Entries)
        {
            double e = Errors.Scaled(model.Parameters.Grad(p.Name).ToFloatArray(), expected.ReadFloats("grad." + p.Name));
            Assert.That(e, Is.LessThan(1e-4), $"gradient of {p.Name}");
        }
    }

    [Test]
    public void TheChunkedHeadGivesTheSameLossAndGradients()
    {
        var (model, expected, inputs, targets) = Load();
        using var _ = model; using var __ = expected;
        model.Parameters.EnsureGrad();
        model.LossChunkRows = 5;   // 32 rows in chunks of 5: the tied head's two gradients meet in the chunked op too
        float loss;
        using (var tape = new Tape(Cpu)) { var l = model.Loss(tape, inputs, targets); loss = l.Data.ToFloatArray()[0]; tape.Backward(l); }
        Assert.That(Math.Abs(loss / expected.ReadFloats("loss")[0] - 1), Is.LessThan(1e-5), "loss, relative");
        foreach (var p in model.Parameters.Entries)
            Assert.That(Errors.Scaled(model.Parameters.Grad(p.Name).ToFloatArray(), expected.ReadFloats("grad." + p.Name)), Is.LessThan(1e-4), p.Name);
    }
}
