using System.Text.Json.Nodes;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// importance → search → extract → eval --subnet on Llama-family model directories (the tiny float64-checked fixtures: llama
/// with GQA, a tied head and every bias; qwen3 with QK-norm and head_dim ≠ hidden/heads), each output checked against the
/// library computed here: the ranked parent is the same function, every searched candidate keeps whole query groups and
/// lies in the budget window with its recorded perplexity reproducible, the extracted child computes the in-place
/// sub-network (and `eval` of the two agrees), and bad specs are one-line errors naming the field.
/// </summary>
[NonParallelizable]   // InProcessCli captures the console
[Category(TestBackends.GemmSensitive)]
public class LlamaWhittleCommandTests
{
    string _tmp = "";

    [SetUp] public void SetUp() => _tmp = Directory.CreateTempSubdirectory("whittle-llama-whittle-").FullName;
    [TearDown] public void TearDown() { if (Directory.Exists(_tmp)) Directory.Delete(_tmp, true); }

    [Test]
    public void ImportanceSearchExtractAndEvalOnALlama()
    {
        var fixture = CliRunner.Fixture("tiny-llama");   // hidden 32, 2 layers, 4 heads in 2 groups × 8, 40 neurons, vocab 64, tied
        var data = SearchCliTests.WriteDataset(Path.Combine(_tmp, "data"), 64, 2000, 600, 1);
        var calib = Path.Combine(_tmp, "calib.txt");
        var rng = new Rng(3);
        File.WriteAllText(calib, string.Join(" ", Enumerable.Range(0, 400).Select(_ => rng.NextInt(64))));

        var ranked = Path.Combine(_tmp, "ranked");
        var imp = InProcessCli.Run("importance", "--model", fixture, "--ids", calib, "--seq-len", "16", "--batches", "2", "--batch-size",
            "4", "--out", ranked, "--json");
        Assert.That(imp.Exit, Is.EqualTo(0), imp.Stderr);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(ranked, "importance.json")))!;
        Assert.That(report["query_groups"]!.AsArray(), Has.Count.EqualTo(2));
        var ids = RandomIds(64, 2, 9, 5);
        using (var original = ModelCheckpoint.Load(fixture, Host))
        using (var permuted = ModelCheckpoint.Load(ranked, Host))
        {
            Assert.That(permuted.Config.ToJson().ToJsonString(), Is.EqualTo(original.Config.ToJson().ToJsonString()));
            Assert.That(ScaledError(Logits(permuted, ids), Logits(original, ids)), Is.LessThanOrEqualTo(1e-5));
        }

        var outDir = Path.Combine(_tmp, "search");
        var run = InProcessCli.Run("search", "--model", ranked, "--data", data, "--budget-ratio", "0.8", "--tolerance", "0.2",
            "--space", "per-layer", "--population", "4", "--evaluations", "5", "--seq-len", "16", "--batch-size", "4",
            "--eval-tokens", "120", "--out", outDir, "--json");
        Assert.That(run.Exit, Is.EqualTo(0), run.Stderr);
        var summary = JsonNode.Parse(run.Stdout)!;
        long low = summary["budget"]!["low"]!.GetValue<long>(), high = summary["budget"]!["high"]!.GetValue<long>();
        var config = (LlamaConfig)ModelConfig.Load(ranked);
        var history = File.ReadAllLines(Path.Combine(outDir, "history.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.That(history, Has.Count.GreaterThanOrEqualTo(5));
        foreach (var h in history)
        {
            var spec = h["spec"]!.AsObject();
            Assert.That(spec.ContainsKey("kv_heads"), spec.ToJsonString());
            var a = SubnetSpec.FromJson(spec, config);
            for (int i = 0; i < a.Layers.Length; i++) Assert.That(a.Heads[i], Is.EqualTo(2 * a.KvHeads[i]));
            long count = ParameterCount.Of(config, a).Total;
            Assert.That(count, Is.EqualTo(h["params"]!["total"]!.GetValue<long>()));
            // The importance baseline falls back to the largest uniform shrink under the budget when none lands in the window
            // (two query groups make a coarse grid); the searched candidates are always inside it.
            if (h["strategy"]!.GetValue<string>() == "importance") Assert.That(count, Is.LessThanOrEqualTo(high));
            else Assert.That(count, Is.InRange(low, high), h.ToJsonString());
        }
        var bestFile = Path.Combine(outDir, "best.json");
        var best = SubnetSpec.Load(bestFile, config);
        using var parent = ModelCheckpoint.Load(ranked, Host);
        using (var val = Whittle.Native.Data.TokenDataset.Open(data))
            // The same evaluation in the same process: 1e-9 only absorbs the JSON round trip of the double.
            Assert.That(JsonNode.Parse(File.ReadAllText(bestFile))!["perplexity"]!.GetValue<double>(),
                Is.EqualTo(Perplexity.Evaluate(parent, val.Val, 16, 4, 120, best).Perplexity).Within(1e-9));

        var small = Path.Combine(_tmp, "small");
        var ext = InProcessCli.Run("extract", "--model", ranked, "--subnet", bestFile, "--out", small, "--json");
        Assert.That(ext.Exit, Is.EqualTo(0), ext.Stderr);
        using var child = ModelCheckpoint.Load(small, Host);
        Assert.That(child, Is.TypeOf<Llama>());
        Assert.That(ScaledError(Logits(child, ids), Logits(parent, ids, best)), Is.LessThanOrEqualTo(1e-5));
        Assert.That(JsonNode.Parse(ext.Stdout)!["huggingface_compatible"]!.GetValue<bool>(), Is.EqualTo(child.Config.IsHuggingFaceCompatible));
        Assert.That(JsonNode.Parse(ext.Stdout)!["parameters"]!["total"]!.GetValue<long>(), Is.EqualTo(child.Parameters.Count));

        // eval --subnet in place and eval of the extracted child: the same predictions, the same loss. The two differ only in
        // f32 arrangement (strided views vs dense copies): 1e-5 relative, as the logits.
        var evalIds = Path.Combine(_tmp, "eval.txt");
        File.WriteAllText(evalIds, string.Join(" ", Enumerable.Range(0, 200).Select(_ => rng.NextInt(64))));
        var inPlace = InProcessCli.Run("eval", "--model", ranked, "--subnet", bestFile, "--ids", evalIds, "--seq-len", "16", "--json");
        var dense = InProcessCli.Run("eval", "--model", small, "--ids", evalIds, "--seq-len", "16", "--json");
        Assert.That((inPlace.Exit, dense.Exit), Is.EqualTo((0, 0)), inPlace.Stderr + dense.Stderr);
        double l1 = JsonNode.Parse(inPlace.Stdout)!["loss"]!.GetValue<double>(), l2 = JsonNode.Parse(dense.Stdout)!["loss"]!.GetValue<double>();
        Assert.That(Math.Abs(l1 / l2 - 1), Is.LessThan(1e-5));
    }

    /// <summary>qwen3 (QK-norm, head_dim 12 ≠ 32/4): a uniform sub-network is a plain HF qwen3 checkpoint with head_dim; a
    /// per-layer one carries whittle_layer_kv_heads; both load and compute the in-place sub-network.</summary>
    [TestCase("""{"embed_dim": 24, "kv_heads": 1, "intermediate_size": 16}""", true)]
    [TestCase("""{"layers": [1, 0], "kv_heads": [2, 1], "intermediate_size": [40, 8]}""", false)]
    public void ExtractWritesAHuggingFaceQwen3WhenUniform(string spec, bool hf)
    {
        var fixture = CliRunner.Fixture("tiny-qwen3");
        var specFile = Path.Combine(_tmp, "spec.json");
        File.WriteAllText(specFile, spec);
        var outDir = Path.Combine(_tmp, "child");
        var ext = InProcessCli.Run("extract", "--model", fixture, "--subnet", specFile, "--out", outDir);
        Assert.That(ext.Exit, Is.EqualTo(0), ext.Stderr);
        Assert.That(ext.Stdout, Does.Contain(hf ? "standard Hugging Face qwen3 checkpoint" : "transformers cannot"));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!.AsObject();
        Assert.That(json["head_dim"]!.GetValue<int>(), Is.EqualTo(12));
        Assert.That(json.ContainsKey("whittle_layer_kv_heads"), Is.EqualTo(!hf), json.ToJsonString());
        using var parent = ModelCheckpoint.Load(fixture, Host);
        using var child = ModelCheckpoint.Load(outDir, Host);
        var ids = RandomIds(64, 2, 7, 1);
        Assert.That(ScaledError(Logits(child, ids), Logits(parent, ids, SubnetSpec.Parse(spec, parent.Config))), Is.LessThanOrEqualTo(1e-5));
    }

    [TestCase("""{"heads": 3}""", "'heads': 3 heads in layer 0 is not a multiple of the parent's 2 query heads per kv head")]
    [TestCase("""{"kv_heads": 1, "heads": 4}""", "'heads': 4 heads in layer 0 disagree with kv_heads 1")]
    [TestCase("""{"kv_heads": 3}""", "'kv_heads': 3 kv heads in layer 0, must be in [1, 2]")]
    public void BadSpecsAreOneLineErrorsNamingTheField(string spec, string message)
    {
        var specFile = Path.Combine(_tmp, "bad.json");
        File.WriteAllText(specFile, spec);
        var fixture = CliRunner.Fixture("tiny-llama");
        var outDir = Path.Combine(_tmp, "never");
        Assert.That(InProcessCli.UserError(InProcessCli.Run("extract", "--model", fixture, "--subnet", specFile, "--out", outDir)),
            Does.Contain(specFile).And.Contain(message));
        Assert.That(InProcessCli.UserError(InProcessCli.Run("eval", "--model", fixture, "--subnet", specFile, "--ids", specFile)),
            Does.Contain(message));
        Assert.That(Directory.Exists(outDir), Is.False);
    }
}
