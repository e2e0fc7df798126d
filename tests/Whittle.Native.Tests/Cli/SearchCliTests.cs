using System.Text.Json.Nodes;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// importance → search → extract through the built `whittle` command on the tiny PyTorch fixture, each output checked
/// against the library computed independently here (same-function permutation, perplexities recomputed, budget window,
/// Pareto dominance, extracted logits), plus resume and bad input.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class SearchCliTests
{
    string _tmp = "";

    [SetUp] public void SetUp() { _tmp = Path.Combine(Path.GetTempPath(), "whittle-search-cli-" + Guid.NewGuid().ToString("N"));
    Directory.CreateDirectory(_tmp); }
    [TearDown] public void TearDown() { if (Directory.Exists(_tmp)) Directory.Delete(_tmp, true); }

    /// <summary>A token dataset directory written by hand in the documented format (meta.json + uint16 shards).</summary>
    internal static string WriteDataset(string dir, int vocab, int trainTokens, int valTokens, ulong seed)
    {
        Directory.CreateDirectory(dir);
        var rng = new Rng(seed);
        // A learnable-ish stream: mostly a fixed cycle with noise, so sub-networks differ in perplexity.
        ushort Next(int i) => (ushort)(rng.NextInt(4) == 0 ? rng.NextInt(vocab) : (i * 7) % vocab);
        JsonObject Split(string name, int n)
        {
            var bytes = new byte[n * 2];
            for (int i = 0; i < n; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), Next(i));
            File.WriteAllBytes(Path.Combine(dir, $"{name}-0000.bin"), bytes);
            return new JsonObject { ["documents"] = 1, ["tokens"] = n,
                ["shards"] = new JsonArray(new JsonObject { ["file"] = $"{name}-0000.bin", ["tokens"] = n }) };
        }
        var meta = new JsonObject
        {
            ["format"] = "whittle-tokens", ["version"] = 1, ["tokenizer_sha256"] = new string('0', 64), ["tokenizer_file"] = "none",
            ["vocab_size"] = vocab, ["eos_id"] = 0, ["dtype"] = "uint16", ["val_fraction"] = 0.1, ["seed"] = 0, ["doc_start"] = null,
            ["train"] = Split("train", trainTokens), ["val"] = Split("val", valTokens),
        };
        File.WriteAllText(Path.Combine(dir, "meta.json"), meta.ToJsonString());
        return dir;
    }

    /// <summary>One writer per run directory (issue 14): while this process holds --out's lock, `search` on it exits 1
    /// naming this pid and leaves the directory as it was.</summary>
    [Test]
    public void SearchRefusesARunDirectoryAnotherProcessHolds()
    {
        var data = WriteDataset(Path.Combine(_tmp, "data"), 96, 2000, 600, 1);
        var outDir = Path.Combine(_tmp, "search");
        using var held = RunDirectoryLock.Acquire(outDir, "search");
        var r = CliRunner.Run("search", "--model", CliRunner.Fixture("tiny-neox"), "--data", data, "--budget-ratio", "0.7",
            "--space", "uniform",
            "--evaluations", "2", "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "120", "--out", outDir);
        Assert.That(r.Exit, Is.EqualTo(1), r.Stdout + r.Stderr);
        Assert.That(r.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain(outDir).And.Contain($"process {Environment.ProcessId}"));
        Assert.That(Directory.EnumerateFileSystemEntries(outDir).Select(Path.GetFileName), Is.EqualTo(new[] { RunDirectoryLock.FileName }));
    }

    [Test]
    public void ImportanceSearchExtractEndToEnd()
    {
        var fixture = CliRunner.Fixture("tiny-neox");   // hidden 64, 2 layers, 4 heads × 16, intermediate 72, vocab 96
        var data = WriteDataset(Path.Combine(_tmp, "data"), 96, 2000, 600, 1);
        var idsFile = Path.Combine(_tmp, "calib.txt");
        var rng = new Rng(3);
        File.WriteAllText(idsFile, string.Join(" ", Enumerable.Range(0, 400).Select(_ => rng.NextInt(96))));

        // importance: the permuted parent computes the same function as the fixture.
        var ranked = Path.Combine(_tmp, "ranked");
        var imp = CliRunner.Run("importance", "--model", fixture, "--ids", idsFile, "--seq-len", "32", "--batches", "2", "--batch-size",
            "4", "--out", ranked);
        Assert.That(imp.Exit, Is.EqualTo(0), imp.Stderr);
        Assert.That(File.Exists(Path.Combine(ranked, "importance.json")));
        var ids = RandomIds(96, 2, 9, 5);
        using (var original = GptNeoXCheckpoint.Load(fixture, Host))
        using (var permuted = GptNeoXCheckpoint.Load(ranked, Host))
            Assert.That(ScaledError(Logits(permuted, ids), Logits(original, ids)), Is.LessThanOrEqualTo(1e-5));

        // search: every candidate inside the window, perplexities reproducible, Pareto front non-dominated.
        var outDir = Path.Combine(_tmp, "search");
        string[] common = ["search", "--model", ranked, "--data", data, "--budget-ratio", "0.7", "--tolerance", "0.15", "--space",
            "per-layer",
            "--population", "4", "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "120", "--out", outDir, "--json"];
        Assert.That(common.Count(a => a == "120"), Is.EqualTo(1));
        var run = CliRunner.Run([.. common, "--evaluations", "6"]);
        Assert.That(run.Exit, Is.EqualTo(0), run.Stderr);
        var summary = JsonNode.Parse(run.Stdout)!.AsObject();
        Assert.That(summary["strategies"]!.AsObject().Select(kv => kv.Key), Is.EquivalentTo(new[] { "evolution", "random", "importance" }));
        long low = summary["budget"]!["low"]!.GetValue<long>(), high = summary["budget"]!["high"]!.GetValue<long>();
        var config = GptNeoXConfig.Load(ranked);
        Assert.That(high, Is.EqualTo((long)Math.Floor(0.7 * ParameterCount.Of(config).Total)));
        var history = File.ReadAllLines(Path.Combine(outDir, "history.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.That(
            history.Select(h => h["spec"]!.ToJsonString()).Distinct().Count(), Is.EqualTo(history.Count), "each candidate evaluated once");
        using var parent = GptNeoXCheckpoint.Load(ranked, Host);
        using var val = TokenDatasetFor(data);
        foreach (var h in history)
        {
            var a = SubnetSpec.FromJson(h["spec"]!.AsObject(), config);
            Assert.That(ParameterCount.Of(config, a).Total, Is.InRange(low, high).And.EqualTo(h["params"]!["total"]!.GetValue<long>()));
        }
        var best = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "best.json")))!.AsObject();
        Assert.That(best["perplexity"]!.GetValue<double>(), Is.EqualTo(history.Min(h => h["perplexity"]!.GetValue<double>())));
        var bestArch = SubnetSpec.Load(Path.Combine(outDir, "best.json"), config);
        var recomputed = Perplexity.Evaluate(parent, val.Val, 16, 4, 120, bestArch).Perplexity;
        // The same evaluation (same GEMM path, shapes and thread count in the CLI process and here, so the same bits)
        // printed as a round-trip double: 1e-9 only absorbs the JSON text, not any numerical difference.
        Assert.That(best["perplexity"]!.GetValue<double>(), Is.EqualTo(recomputed).Within(1e-9));
        var front = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "pareto.json")))!.AsArray();
        foreach (var f in front)
            Assert.That(history.Any(h => h["params"]!["total"]!.GetValue<long>() <= f!["params"]!["total"]!.GetValue<long>()
                && h["perplexity"]!.GetValue<double>() < f["perplexity"]!.GetValue<double>()), Is.False, "a front member is dominated");

        // resume: the same seed re-proposes the first candidates, which come from history, not a second evaluation.
        var again = CliRunner.Run([.. common, "--evaluations", "8", "--resume"]);
        Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
        var summary2 = JsonNode.Parse(again.Stdout)!.AsObject();
        Assert.That(summary2["from_history"]!.GetValue<int>(), Is.GreaterThanOrEqualTo(6));
        var history2 = File.ReadAllLines(Path.Combine(outDir, "history.jsonl"));
        Assert.That(history2.Length, Is.EqualTo(history.Count + summary2["evaluated"]!.GetValue<int>()));
        Assert.That(history2.Select(l => JsonNode.Parse(l)!["spec"]!.ToJsonString()).Distinct().Count(), Is.EqualTo(history2.Length));
        var rerun = CliRunner.Run([.. common, "--evaluations", "6"]);
        Assert.That(rerun.Exit, Is.EqualTo(1));
        Assert.That(rerun.Stderr, Does.Contain("--resume"));
        var otherFitness = CliRunner.Run([.. common.Select(a => a == "120" ? "60" : a), "--evaluations", "6", "--resume"]);
        Assert.That(otherFitness.Exit, Is.EqualTo(1));
        Assert.That(otherFitness.Stderr, Does.Contain("different fitness"));

        // extract the best: its logits are the in-place sub-network's; the tokenizer-less parent is reported.
        var small = Path.Combine(_tmp, "small");
        var ext = CliRunner.Run("extract", "--model", ranked, "--subnet", Path.Combine(outDir, "best.json"), "--out", small);
        Assert.That(ext.Exit, Is.EqualTo(0), ext.Stderr);
        using var child = GptNeoXCheckpoint.Load(small, Host);
        Assert.That(ScaledError(Logits(child, ids), Logits(parent, ids, bestArch)), Is.LessThanOrEqualTo(1e-5));
        Assert.That(ext.Stdout, Does.Contain(child.Config.IsHuggingFaceCompatible ? "transformers can load it" : "transformers cannot"));
    }

    static Whittle.Native.Data.TokenDataset TokenDatasetFor(string dir) => Whittle.Native.Data.TokenDataset.Open(dir);

    [Test]
    public void BadInputFailsBeforeAnyWork()
    {
        var fixture = CliRunner.Fixture("tiny-neox");
        var data = WriteDataset(Path.Combine(_tmp, "data"), 96, 200, 100, 2);
        var outDir = Path.Combine(_tmp, "never");
        var tiny = CliRunner.Run("search", "--model", fixture, "--data", data, "--budget-params", "100", "--out", outDir);
        Assert.That(tiny.Exit, Is.EqualTo(1), tiny.Stderr);
        Assert.That(tiny.Stderr, Does.Contain("impossible budget"));
        Assert.That(Directory.Exists(outDir), Is.False, "nothing written for an impossible budget");
        var both = CliRunner.Run("search", "--model", fixture, "--data", data, "--budget-params", "1000", "--budget-ratio", "0.5",
            "--out", outDir);
        Assert.That(both.Stderr, Does.Contain("exactly one of --budget-params"));

        var spec = Path.Combine(_tmp, "big.json");
        File.WriteAllText(spec, """{"embed_dim": 64, "layers": [0, 0], "heads": 4}""");
        var rep = CliRunner.Run("extract", "--model", fixture, "--subnet", spec, "--out", outDir);
        Assert.That((rep.Exit, rep.Stderr.Trim()), Is.EqualTo((1, $"error: {spec}: 'layers': index 0 is repeated")));
        File.WriteAllText(spec, """{"embed_dim": 65}""");
        var big = CliRunner.Run("extract", "--model", fixture, "--subnet", spec, "--out", outDir);
        Assert.That(big.Stderr, Does.Contain("'embed_dim': 65 must be in [1, 64]"));
        Assert.That(Directory.Exists(outDir), Is.False);
    }
}
