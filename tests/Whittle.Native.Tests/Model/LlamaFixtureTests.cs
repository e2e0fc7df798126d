using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// What the Llama-family reference fixtures cover, checked (FixtureParityTests compares the engine with them: logits,
/// losses, every gradient, one AdamW step), and the chunked LM head on them. tools/fixtures/make_llama_reference.py
/// computes Hugging Face's LlamaForCausalLM / Qwen2 / Qwen3 / Mistral in float64; the four fixtures cover GQA with
/// KV = H/2 and KV = 1, QK-norm, head_dim ≠ hidden / heads, tied and untied heads, q/k/v, o and MLP biases, llama3 and
/// linear rope scaling, and weights stored as f32, bf16 (qwen2), f16 (mistral) and in two shards (qwen3). Tolerances as
/// in FixtureParityTests, which derives them (a Llama layer has about as many f32 dot products as a GPT-NeoX one, of
/// length ≤ 48).
/// </summary>
[TestFixture("tiny-llama")]
[TestFixture("tiny-qwen2")]
[TestFixture("tiny-qwen3")]
[TestFixture("tiny-mistral")]
[Category(TestBackends.GemmSensitive)]
public class LlamaFixtureTests(string fixture)
{
    string Dir => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);

    [Test]
    public void TheFixtureIsWhatItsNameSays()
    {
        using var reader = new CheckpointReader(Dir);
        var dtypes = reader.Names.Select(n => reader.Find(n).DTypeName).Distinct().ToArray();
        var c = (LlamaConfig)ModelConfig.Load(Dir);
        switch (fixture)
        {
            case "tiny-llama":
                Assert.That(c is { NumKeyValueHeads: 2, NumHeads: 4, TieWordEmbeddings: true, QkvBias: true, OutputBias: true,
                    GatedMlpBias: true });
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

    /// <summary>
    /// bf16 mixed precision on a Llama-family model (seven GEMMs a layer, a tied head's bf16 copy being the embedding's):
    /// every gradient is that of the f32 engine whose GEMM operands are rounded to bf16 first (Bf16Tests' emulation), up
    /// to f32 round-off, and differs from the f32 gradients (the bf16 path is in use).
    /// </summary>
    [Test]
    public void Bf16GradientsAreTheRoundedGemmEmulation()
    {
        var (f32, expected, inputs, targets) = FixtureParityTests.Load(fixture);
        using var _ = f32; using var __ = expected;
        var backend = Bf16Tests.Emulable;   // the AVX512-BF16 kernel's pairwise sums are Bf16Tests' budget checks, not this one
        using var bf16 = ModelCheckpoint.Load(Dir, backend);
        bf16.Precision = Precision.Bf16;
        using var emulated = ModelCheckpoint.Load(Dir, Bf16Tests.EmulatingBackend.Create(backend));
        var g16 = Bf16Tests.Gradients(bf16, inputs, targets);
        Assert.That(Errors.Scaled(g16, Bf16Tests.Gradients(emulated, inputs, targets)), Is.LessThanOrEqualTo(1e-6));
        Assert.That(Errors.Scaled(g16, Bf16Tests.Gradients(f32, inputs, targets)), Is.GreaterThan(1e-4), "the bf16 path is in use");
    }

    [Test]
    public void TheChunkedHeadGivesTheSameLossAndGradients()
    {
        var (model, expected, inputs, targets) = FixtureParityTests.Load(fixture);
        using var _ = model; using var __ = expected;
        model.Parameters.EnsureGrad();
        model.LossChunkRows = 5;   // 32 rows in chunks of 5: the tied head's two gradients meet in the chunked op too
        float loss;
        using (var tape = new Tape(model.Backend))
        {
            var l = model.Loss(tape, inputs, targets);
            loss = l.Data.ToFloatArray()[0];
            tape.Backward(l);
        }
        Assert.That(Math.Abs(loss / expected.ReadFloats("loss")[0] - 1), Is.LessThan(1e-5), "loss, relative");
        foreach (var p in model.Parameters.Entries)
            Assert.That(Errors.Scaled(model.Parameters.Grad(p.Name).ToFloatArray(), expected.ReadFloats("grad." + p.Name)),
                Is.LessThan(1e-4), p.Name);
    }
}
