using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// The Llama family through the commands: `eval` against the float64 reference of tools/fixtures/make_llama_reference.py,
/// `info`, config keys the engine does not compute refused by name (exit 1, one line), `pretrain --family` from scratch,
/// and the Hugging Face layout written back (names, tied head, shards) and read again unchanged.
/// </summary>
[NonParallelizable]   // InProcessCli captures the console
public class LlamaCommandTests
{
    static readonly string[] Fixtures = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"];

    string _root = "";

    [OneTimeSetUp] public void Setup() => _root = Directory.CreateTempSubdirectory("whittle-llama-").FullName;
    [OneTimeTearDown] public void Teardown() => Directory.Delete(_root, true);

    /// <summary>
    /// `eval --ids` over the fixture's two rows of 17 tokens with --seq-len 17: two windows, 16 predictions each, the very
    /// predictions whose mean the reference computed in float64 (metadata loss_f64). 1e-4 relative: the engine's loss is
    /// f32 logits into a double log-sum-exp (FixtureParityTests: 1e-5 scaled on the logits).
    /// </summary>
    [TestCaseSource(nameof(Fixtures))]
    public void EvalLossEqualsTheFloat64Reference(string fixture)
    {
        string dir = CliRunner.Fixture(fixture);
        using var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        var ids = Path.Combine(_root, fixture + "-ids.json");
        File.WriteAllText(ids, "[" + string.Join(",", expected.ReadTensor("tokens").ToIntArray()) + "]");
        var (exit, stdout, stderr) = InProcessCli.Run("eval", "--model", dir, "--ids", ids, "--seq-len", "17", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var o = JsonNode.Parse(stdout)!;
        Assert.That(o["tokens"]!.GetValue<long>(), Is.EqualTo(32));
        double reference = double.Parse(expected.Metadata["loss_f64"], System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(Math.Abs(o["loss"]!.GetValue<double>() / reference - 1), Is.LessThan(1e-4));
    }

    [Test]
    public void InfoDescribesTheFamily()
    {
        var (exit, stdout, stderr) = InProcessCli.Run("info", CliRunner.Fixture("tiny-qwen3"));
        Assert.That(exit, Is.EqualTo(0), stderr);
        Assert.That(stdout,
            Does.Contain("qwen3, 2 layers, hidden 32, 4 query heads and 2 kv heads × 12").And.Contain("per head on q and k"));
        var (e2, json, err2) = InProcessCli.Run("info", CliRunner.Fixture("tiny-llama"), "--json");
        Assert.That(e2, Is.EqualTo(0), err2);
        var o = JsonNode.Parse(json)!;
        Assert.That(o["architecture"]!.GetValue<string>(), Is.EqualTo("llama"));
        Assert.That(o["kv_heads"]!.GetValue<int>(), Is.EqualTo(2));
        // Tied: the embedding (V × d = 64 × 32) once; every tensor of the layout, counted independently from the file.
        Assert.That(o["parameters"]!["embedding"]!.GetValue<long>(), Is.EqualTo(64 * 32));
        using var reader = new CheckpointReader(CliRunner.Fixture("tiny-llama"));
        long inFile = reader.Names.Sum(n => Tensor.Numel(reader.Find(n).Shape));
        Assert.That(o["parameters"]!["total"]!.GetValue<long>(), Is.EqualTo(inFile));
    }

    /// <summary>Each key that asks for something the engine does not compute: exit 1, one line naming the key.</summary>
    [TestCase("mistral", """{"sliding_window": 16}""", "sliding_window")]
    [TestCase("mistral", """{"sliding_window": "absent", "max_position_embeddings": 8192}""", "sliding_window")]   // HF's default, 4096
    [TestCase("qwen2", """{"use_sliding_window": true}""", "use_sliding_window")]
    [TestCase("llama", """{"layer_types": ["full_attention", "sliding_attention"]}""", "layer_types[1]")]
    [TestCase("llama", """{"num_experts": 8}""", "num_experts")]
    [TestCase("mistral", """{"num_local_experts": 8, "sliding_window": null}""", "num_local_experts")]
    [TestCase("qwen3", """{"moe_intermediate_size": 64}""", "moe_intermediate_size")]
    [TestCase("llama", """{"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}""", "rope_scaling.rope_type")]
    [TestCase("llama", """{"rope_scaling": {"type": "dynamic", "factor": 2.0}}""", "rope_scaling.type")]
    [TestCase("llama", """{"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0, """ +
        """ "original_max_position_embeddings": 64}}""", "high_freq_factor")]
    [TestCase("llama", """{"final_logit_softcapping": 30.0}""", "final_logit_softcapping")]
    [TestCase("llama", """{"attn_logit_softcapping": 50.0}""", "attn_logit_softcapping")]
    [TestCase("llama", """{"hidden_act": "gelu"}""", "hidden_act")]
    [TestCase("llama", """{"partial_rotary_factor": 0.5}""", "partial_rotary_factor")]
    [TestCase("llama", """{"num_key_value_heads": 3}""", "num_key_value_heads")]
    [TestCase("llama", """{"head_dim": 7}""", "head_dim")]
    [TestCase("llama", """{"vocab_size": "64"}""", "vocab_size")]
    [TestCase("llama", """{"model_type": "gemma", "architectures": ["GemmaForCausalLM"]}""", "gemma")]
    public void AnUnsupportedKeyIsRefusedByName(string family, string overrides, string key)
    {
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(CliRunner.Fixture("tiny-mistral"), "config.json")))!.AsObject();
        cfg["model_type"] = family;
        cfg["sliding_window"] = null;
        foreach (var (k, v) in JsonNode.Parse(overrides)!.AsObject().ToList())
            if (v is JsonValue s && s.TryGetValue(out string? text) && text == "absent") cfg.Remove(k);
            else cfg[k] = v?.DeepClone();
        var dir = Path.Combine(_root, "refuse-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        foreach (var command in new[] { new[] { "info", dir }, new[] { "eval", "--model", dir, "--ids", dir } })
        {
            var line = InProcessCli.UserError(InProcessCli.Run(command));
            Assert.That(line, Does.Contain(key).And.Contain("config.json"), string.Join(' ', command));
        }
    }

    /// <summary>
    /// pretrain --family qwen3 --kv-heads 1: a GQA model with QK-norm from scratch; the loss falls, final/ is a Hugging Face
    /// directory `info` and `eval` read, and a bad --kv-heads or a flag of the other family is refused before any work.
    /// </summary>
    [Test]
    public void PretrainAQwen3FromScratch()
    {
        var run = Path.Combine(_root, "pretrain-qwen3");
        string[] common = ["--data", TestData.AustenSlice, "--layers", "2", "--hidden", "32", "--heads", "4", "--seq-len", "32",
            "--batch-size", "4", "--steps", "30", "--lr", "0.01", "--eval-tokens", "256", "--json"];
        var (exit, stdout, stderr) = InProcessCli.Run(["pretrain", "--family", "qwen3", "--kv-heads", "1", "--out", run, .. common]);
        Assert.That(exit, Is.EqualTo(0), stderr);
        var metrics = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(o => o["loss"] is not null)
            .Select(o => o["loss"]!.GetValue<double>()).ToList();
        Assert.That(metrics[^1], Is.LessThan(metrics[0] - 1), "the training loss falls by more than 1 nat in 30 steps");
        var final = JsonNode.Parse(stdout)!["final_model"]!.GetValue<string>();
        var config = (LlamaConfig)ModelConfig.Load(final);
        Assert.That(config is { Family: "qwen3", NumKeyValueHeads: 1, NumHeads: 4, HeadSize: 8, IntermediateSize: 88 });
        var (e2, info, err2) = InProcessCli.Run("info", final, "--json");
        Assert.That(e2, Is.EqualTo(0), err2);
        Assert.That(JsonNode.Parse(info)!["parameters"]!["total"]!.GetValue<long>(),
            Is.EqualTo(JsonNode.Parse(stdout)!["parameters"]!.GetValue<long>()));
        var (e3, _, err3) = InProcessCli.Run("eval", "--model", final, "--data", TestData.AustenSlice, "--seq-len", "32",
            "--max-tokens", "256");
        Assert.That(e3, Is.EqualTo(0), err3);

        Assert.That(InProcessCli.UserError(InProcessCli.Run(["pretrain", "--family", "llama", "--kv-heads", "3", "--out", run + "-bad",
            .. common])),
            Does.Contain("num_key_value_heads 3"));
        Assert.That(InProcessCli.UserError(InProcessCli.Run(["pretrain", "--family", "llama", "--rotary-pct", "0.5", "--out", run + "-bad",
            .. common])),
            Does.Contain("--rotary-pct"));
        Assert.That(InProcessCli.UserError(InProcessCli.Run(["pretrain", "--kv-heads", "2", "--out", run + "-bad", .. common])),
            Does.Contain("--kv-heads"));
        Assert.That(InProcessCli.UserError(InProcessCli.Run(["pretrain", "--family", "gemma", "--out", run + "-bad", .. common])),
            Does.Contain("--family"));
        string[] huge = ["--data", TestData.AustenSlice, "--layers", "4096", "--hidden", "4096", "--heads", "32", "--steps", "1"];
        Assert.That(InProcessCli.UserError(InProcessCli.Run(["pretrain", "--family", "llama", "--out", run + "-bad", .. huge])),
            Does.Contain("parameters"));
        Assert.That(Directory.Exists(run + "-bad"), Is.False, "refused before anything was written");
    }

    /// <summary>Saved with Hugging Face names (one file, and sharded), read back: the same config and bit-identical weights.</summary>
    [TestCase("tiny-llama", long.MaxValue)]
    [TestCase("tiny-llama", 4096L)]
    [TestCase("tiny-qwen3", 4096L)]
    public void SafetensorsRoundTripWithHuggingFaceNames(string fixture, long shardBytes)
    {
        var cpu = CpuBackend.Instance;
        using var model = (Llama)ModelCheckpoint.Load(CliRunner.Fixture(fixture), cpu);
        var dir = Path.Combine(_root, $"roundtrip-{fixture}-{shardBytes}");
        ModelCheckpoint.Save(model, dir, maxShardBytes: shardBytes);
        using (var reader = new CheckpointReader(dir))
        {
            Assert.That(reader.IsSharded, Is.EqualTo(shardBytes != long.MaxValue));
            Assert.That(reader.Names, Is.EquivalentTo(Llama.Layout(model.Config).Select(p => p.Name)));
            Assert.That(reader.Names, Has.Member("model.layers.1.self_attn.k_proj.weight").And.Member("model.norm.weight"));
            Assert.That(reader.Contains(Llama.LmHead), Is.EqualTo(!model.Config.TieWordEmbeddings));
        }
        using var back = (Llama)ModelCheckpoint.Load(dir, cpu);
        Assert.That(back.Config, Is.EqualTo(model.Config));
        Assert.That(back.Parameters.Flat.ToFloatArray(), Is.EqualTo(model.Parameters.Flat.ToFloatArray()));
    }
}
