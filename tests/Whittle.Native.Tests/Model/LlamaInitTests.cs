using Whittle.Native.Cpu;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// A new Llama-family model is initialised as Hugging Face's _init_weights does it, with the config's initializer_range
/// σ: every Linear weight and the embedding ~ N(0, σ) (o_proj and down_proj unscaled), biases 0, RMSNorm weights 1.
/// Statistical bounds from the count n of each tensor: for n draws of N(0, σ²), nŝ²/σ² ~ χ²_n, so ŝ/σ − 1 has standard
/// deviation ≈ 1/sqrt(2n), and the mean has standard deviation σ/sqrt(n); 6 of each (a two-sided miss probability of
/// 2e-9 per tensor; the seed is fixed, so the test is deterministic anyway). The f32 rounding of the draws is ~1e-7
/// relative, far below either bound. A residual projection drawn at σ/sqrt(2·layers) (the previous rule) misses by a
/// factor 2, which every bound here excludes.
/// </summary>
public class LlamaInitTests
{
    [TestCase("llama", """ "attention_bias": true, "mlp_bias": true, "initializer_range": 0.05 """)]
    [TestCase("qwen2", """ "initializer_range": 0.01 """)]
    [TestCase("qwen3", """ "head_dim": 16, "tie_word_embeddings": true, "initializer_range": 0.03 """)]
    [TestCase("mistral", """ "sliding_window": null """)]
    public void EveryTensorIsDrawnWithTheConfigsInitializerRange(string family, string extra)
    {
        var json = $$"""
            { "model_type": "{{family}}", "vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "max_position_embeddings": 64, {{extra}} }
            """;
        var config = (LlamaConfig)ModelConfig.FromJson(JsonField.Parse("config.json", json), "config.json");
        double sigma = extra.Contains("initializer_range") ? config.InitializerRange : 0.02;
        Assert.That(config.InitializerRange, Is.EqualTo(sigma), "read from config.json, HF's default 0.02 when absent");
        Assert.That(config.ToJson()["initializer_range"]!.GetValue<double>(), Is.EqualTo(sigma), "written back");

        using var model = Llama.CreateRandom(config, CpuBackend.Instance, 11);
        var flat = model.Parameters.Flat.ToFloatArray();
        int matrices = 0;
        foreach (var p in model.Parameters.Entries)
        {
            var x = flat.AsSpan((int)p.Offset, (int)p.Count).ToArray();
            if (p.Name.EndsWith("norm.weight")) { Assert.That(x, Is.All.EqualTo(1f), p.Name); continue; }
            if (p.Shape.Length == 1) { Assert.That(x, Is.All.EqualTo(0f), p.Name); continue; }
            matrices++;
            int n = x.Length;
            double mean = x.Average(v => (double)v), std = Math.Sqrt(x.Average(v => (double)v * v));
            Assert.That(Math.Abs(mean), Is.LessThanOrEqualTo(6 * sigma / Math.Sqrt(n)), $"{p.Name}: mean");
            Assert.That(Math.Abs(std / sigma - 1), Is.LessThanOrEqualTo(6 / Math.Sqrt(2.0 * n)), $"{p.Name}: std {std} for σ {sigma}");
        }
        // embedding, (lm_head), and per layer q, k, v, o, gate, up, down
        Assert.That(matrices, Is.EqualTo(1 + (config.TieWordEmbeddings ? 0 : 1) + 2 * 7));
    }

    [Test]
    public void ANonPositiveInitializerRangeIsRefusedByName()
    {
        var json = """
            { "model_type": "llama", "vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 96, "initializer_range": -0.02 }
            """;
        Assert.That(() => ModelConfig.FromJson(JsonField.Parse("config.json", json), "config.json"),
            Throws.InstanceOf<WhittleException>().With.Message.Contains("initializer_range"));
    }
}
