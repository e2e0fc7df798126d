using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Model;

[Category(TestBackends.GemmSensitive)]
public class ModelTests
{
    static GptNeoXConfig Small =>
        new() { VocabSize = 50, HiddenSize = 32, NumLayers = 3, NumHeads = 4, IntermediateSize = 48, MaxPositionEmbeddings = 32 };

    [Test]
    public void NoGradModeRecordsNothingAndKeepsOnlyTheOutput()
    {
        using var model = GptNeoX.CreateRandom(Small, CpuBackend.Instance, 1);
        using var ids = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => i % 50).ToArray(), 2, 8);
        using (var tape = new Tape(CpuBackend.Instance, recording: false))
        {
            var logits = model.Forward(tape, ids);
            Assert.That(tape.RecordedOps, Is.Zero);
            Assert.That(tape.OwnedTensors, Is.EqualTo(1), "every activation but the logits was freed layer by layer");
            Assert.That(logits.RequiresGrad, Is.False);
        }
        model.Parameters.EnsureGrad();
        using (var tape = new Tape(CpuBackend.Instance))
        {
            model.Forward(tape, ids);
            Assert.That(tape.RecordedOps, Is.GreaterThan(3 * 10), "a recording tape keeps a closure per op");
            using (tape.NoGrad())
            {
                int before = tape.RecordedOps;
                model.Forward(tape, ids);
                Assert.That(tape.RecordedOps, Is.EqualTo(before));
            }
        }
    }

    [Test]
    public void BothHuggingFaceSpellingsOfRotaryFieldsAreRead()
    {
        var o = new JsonObject
        {
            ["model_type"] = "gpt_neox", ["vocab_size"] = 10, ["hidden_size"] = 16, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 2,
            ["intermediate_size"] = 8, ["partial_rotary_factor"] = 0.5, ["rope_theta"] = 500.0, ["use_parallel_residual"] = false,
                ["hidden_act"] = "gelu_new",
        };
        var c = GptNeoXConfig.FromJson(o, "test");
        Assert.That((c.RotaryPct, c.RotaryBase, c.RotaryDims, c.UseParallelResidual, c.GeluTanh), Is.EqualTo((0.5f, 500f, 4, false, true)));
        var back = GptNeoXConfig.FromJson(c.ToJson(), "round trip");
        Assert.That(back, Is.EqualTo(c).Using<GptNeoXConfig>((a, b) => a.ToJson().ToJsonString() == b.ToJson().ToJsonString()));
    }

    [TestCase("hidden_act", "relu", "unsupported hidden_act 'relu'")]
    [TestCase("num_attention_heads", 5, "not divisible by num_attention_heads 5")]
    [TestCase("tie_word_embeddings", true, "tie_word_embeddings = true is not supported")]
    public void ConfigErrorsNameTheField(string key, object value, string message)
    {
        var o = new JsonObject { ["model_type"] = "gpt_neox", ["vocab_size"] = 10, ["hidden_size"] = 16, ["num_hidden_layers"] = 1,
            ["num_attention_heads"] = 2, ["intermediate_size"] = 8 };
        o[key] = JsonValue.Create(value);
        Assert.That(() => GptNeoXConfig.FromJson(o, "cfg.json"), Throws.InstanceOf<WhittleException>().With.Message.Contains(message));
    }

    [Test]
    public void InitialisationIsTheDocumentedOne()
    {
        var c = Small with { VocabSize = 4000, HiddenSize = 64, NumLayers = 8, IntermediateSize = 256 };
        using var model = GptNeoX.CreateRandom(c, CpuBackend.Instance, 3);
        static double Std(float[] x) { double m = x.Average(v => (double)v); return Math.Sqrt(x.Average(v => (v - m) * (v - m))); }
        // A statistical tolerance, not a rounding one: the sample std of n normal draws has relative standard error
        // 1/sqrt(2n); the smallest tensor here has n = 64·256 = 16,384, so 1/sqrt(2n) ≈ 0.55% and 3% is > 5 standard errors.
        Assert.That(Std(model.Parameters[GptNeoX.EmbedIn].ToFloatArray()), Is.EqualTo(0.02).Within(3).Percent);
        Assert.That(Std(model.Parameters["gpt_neox.layers.3.mlp.dense_h_to_4h.weight"].ToFloatArray()), Is.EqualTo(0.02).Within(3).Percent);
        Assert.That(
            Std(model.Parameters["gpt_neox.layers.3.mlp.dense_4h_to_h.weight"].ToFloatArray()),
            Is.EqualTo(0.02 / Math.Sqrt(16)).Within(3).Percent, "output projections scaled by 1/sqrt(2·layers)");
        Assert.That(model.Parameters["gpt_neox.layers.0.input_layernorm.weight"].ToFloatArray(), Is.All.EqualTo(1f));
        Assert.That(model.Parameters["gpt_neox.layers.0.attention.query_key_value.bias"].ToFloatArray(), Is.All.EqualTo(0f));
    }
}
