using System.Text.Json.Nodes;
using Whittle.Cli;
using Whittle.Native.Demo;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Cli;

/// <summary>`whittle demo`: the README's first command end to end on the bundled corpus, with seeds; its options.</summary>
[NonParallelizable]
public class DemoCommandTests
{
    /// <summary>The README's first command, end to end, with two seeds of the stochastic arms (`whittle demo --preset quick
    /// --seeds 2`): one teacher, each seed's arms, the claims across seeds; then reruns that resume from finished stages,
    /// with two seeds and with the quick preset's one.</summary>
    [Test]
    public void QuickDemoWithTwoSeedsReportsTheSpreadAndResumesFromFinishedStages()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-demo-").FullName;
        try
        {
            var (exit, stdout, stderr) =
                CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--seeds", "2", "--out", dir);
            Assert.That(exit, Is.EqualTo(0), stderr);
            foreach (var f in new[] { "report.md", "report.html", "results.json" })
            {
                Assert.That(File.Exists(Path.Combine(dir, f)), f);
                Assert.That(File.Exists(Path.Combine(dir, "seed-1", f)), "seed 1 has a report of its own: " + f);
            }
            Assert.That(Directory.Exists(Path.Combine(dir, "seed-1", "teacher")), Is.False, "the teacher is trained once");
            Assert.That(stdout.Split('\n').Count(l => l.StartsWith("$ whittle pretrain --out") && l.Contains("teacher")), Is.EqualTo(1));
            var r = DemoReport.Load(Path.Combine(dir, "results.json"));
            var r1 = DemoReport.Load(Path.Combine(dir, "seed-1", "results.json"));
            Assert.That(r.Students.Select(a => a.Name), Is.EqualTo(new[] { "random-init", "subnet-init", "subnet-init+kd" }));
            Assert.That(
                r.Students.Select(a => a.Curve[^1].Tokens).Distinct().Count(), Is.EqualTo(1),
                "every student trained on the same number of tokens");
            Assert.That(
                r.Salt.Select(a => a.Curve.Select(p => p.Step)), Has.All.EquivalentTo(r.Salt[0].Curve.Select(p => p.Step)),
                "SALT and its baseline are evaluated at the same steps");
            Assert.That(r.Search.Select(p => p.Strategy).Distinct(), Is.EquivalentTo(new[] { "evolution", "random", "importance" }));
            // Both seeds compare SALT with the one baseline (the teacher's run); their students differ.
            Assert.That(r1.Salt.Single(a => a.Name == "baseline").Curve, Is.EqualTo(r.Salt.Single(a => a.Name == "baseline").Curve));
            Assert.That(r1.Students[0].Curve.Select(p => p.ValLoss), Is.Not.EqualTo(r.Students[0].Curve.Select(p => p.ValLoss)));
            Assert.That(stdout, Does.Contain("$ whittle pretrain"), "the demo shows the commands it runs");
            // SALT's small model is trained longer than the students (ahead of the large model early, as in the paper) and is the one
            // SALT uses, per seed.
            foreach (var seedDir in new[] { dir, Path.Combine(dir, "seed-1") })
            {
                Assert.That(stdout, Does.Contain($"--out {Path.Combine(seedDir, "salt-small")} "));
                Assert.That(stdout, Does.Contain($"$ whittle salt --small {Path.Combine(seedDir, "salt-small", "final")} "));
            }
            Assert.That(SaltSmallSteps(dir), Is.GreaterThan(r.Students[0].Curve[^1].Step));
            // The teacher's validation curve in the report is the one in its metrics file.
            var teacherMetrics = File.ReadAllLines(Path.Combine(dir, "teacher", "metrics.jsonl")).Count(l => l.Contains("val_loss"));
            Assert.That(r.Salt.Single(a => a.Name == "baseline").Curve, Has.Count.EqualTo(teacherMetrics));
            // The claims across the two seeds: every effect's per-seed numbers are each seed's own.
            var across = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "results.json")))!["across_seeds"]!;
            Assert.That(across["seeds"]!.AsArray().Select(s => s!.GetValue<int>()), Is.EqualTo(new[] { 0, 1 }));
            var salt = across["effects"]!.AsArray().Single(e => e!["key"]!.GetValue<string>() == "salt_steps")!["values"]!.AsArray();
            Assert.That(salt.Select(v => v!["value"]?.GetValue<double>()),
                Is.EqualTo(new[] { DemoFindings.Of(r).SaltFraction, DemoFindings.Of(r1).SaltFraction }));
            Assert.That(File.ReadAllText(Path.Combine(dir, "report.md")), Does.Contain("## Claims across 2 seeds"));
            SupernetStageAndParetoPlotAreInTheReport(dir, stdout, r, across);

            var again = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--seeds", "2", "--out", dir);
            Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
            // Three shared stages and eleven per seed (the quick preset trains SALT's small model in a stage of its own; the
            // supernet stage trains two parents and searches each).
            Assert.That(
                again.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(3 + 2 * 11),
                "every stage is skipped on a rerun");
            Assert.That(again.Stdout, Does.Not.Contain("$ whittle"));
            var one = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(one.Exit, Is.EqualTo(0), one.Stderr);
            Assert.That(one.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(3 + 11));
            Assert.That(File.ReadAllText(Path.Combine(dir, "report.md")), Does.Contain("## Claims across one seed"));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// `whittle demo --family llama --preset quick`: every stage on a grouped-query Llama teacher (4 query heads, 2 kv heads),
    /// the models each stage made of the Llama family, the report naming the family, the teacher's kv heads and the
    /// sub-networks' kv_heads; then the run directory refused to the GPT-NeoX demo, in one line, nothing changed.
    /// </summary>
    [Test]
    public void QuickLlamaDemoRunsEveryStageOnAGroupedQueryTeacherAndItsRunDirectoryIsRefusedToAnotherFamily()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-demo-llama-").FullName;
        try
        {
            var (exit, stdout, stderr) =
                CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--family", "llama", "--preset", "quick", "--out", dir);
            Assert.That(exit, Is.EqualTo(0), stderr);
            Assert.That(stdout, Does.Contain("--family llama --kv-heads 2"), "the teacher's and SALT's commands name the family");
            // Every model the stages wrote is a Llama-family checkpoint; the sub-network keeps whole query groups (2 query heads
            // a kv head, as the teacher), and the students, SALT's small model and the extracted sub-network share it.
            var teacher = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "teacher", "final", "config.json")))!;
            Assert.That(teacher["model_type"]!.GetValue<string>(), Is.EqualTo("llama"));
            Assert.That(teacher["num_attention_heads"]!.GetValue<int>(), Is.EqualTo(4));
            Assert.That(teacher["num_key_value_heads"]!.GetValue<int>(), Is.EqualTo(2));
            var subnet = ModelConfig.Load(Path.Combine(dir, "subnet"));
            foreach (var model in new[] { "importance", "subnet", "students/random-init/final", "students/subnet-init/final",
                "students/subnet-init-kd/final", "salt-small/final", "salt/final" })
            {
                var c = ModelConfig.Load(Path.Combine(dir, model));
                Assert.That(c.ModelType, Is.EqualTo("llama"), model);
                var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, model, "config.json")))!;
                Assert.That(json["num_key_value_heads"], Is.Not.Null, model);
                for (int layer = 0; layer < c.NumLayers; layer++)
                {
                    Assert.That(c.QueryHeadsPerGroup(layer), Is.EqualTo(2), $"{model} layer {layer}");
                    if (model.StartsWith("students") || model.StartsWith("salt-small"))
                        Assert.That(c.KvHeadsOf(layer), Is.EqualTo(subnet.KvHeadsOf(layer)), $"{model} layer {layer}");
                }
            }
            Assert.That(ModelConfig.Load(Path.Combine(dir, "salt", "final")).KvHeadsOf(0), Is.EqualTo(2),
                "SALT trains the teacher's shape");
            var r = DemoReport.Load(Path.Combine(dir, "results.json"));
            Assert.That(r.TeacherArchitecture, Does.StartWith("Llama, 2 layers, hidden 64, 4 heads, 2 kv heads (grouped-query attention)"));
            var report = File.ReadAllText(Path.Combine(dir, "report.md"));
            Assert.That(report, Does.Contain(r.TeacherArchitecture), "the report names the family and the teacher's kv heads");
            Assert.That(report, Does.Contain("\"kv_heads\""), "the report's sub-networks name their kv heads");
            Assert.That(File.ReadAllText(Path.Combine(dir, "preset.txt")).Trim(), Is.EqualTo("quick --family llama"));

            // The run directory's lock (pid of its last holder) is taken before the check; every other file is left as it was.
            Dictionary<string, DateTime> Files() => Directory.GetFiles(dir, "*", SearchOption.AllDirectories)
                .Where(f => Path.GetFileName(f) != RunDirectoryLock.FileName).ToDictionary(f => f, File.GetLastWriteTimeUtc);
            var before = Files();
            var neox = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(neox.Exit, Is.EqualTo(1), neox.Stderr);
            Assert.That(neox.Stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(neox.Stderr, Does.Contain($"{dir} holds a 'quick --family llama' demo; use another --out for 'quick'"));
            Assert.That(Files(), Is.EquivalentTo(before), "nothing in the run directory changed");
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// The Llama presets' teacher has the GPT-NeoX one's non-embedding parameters (so its FLOPs per token), as their
    /// comment says, counted by ParameterCount's formulas, with grouped-query attention (half the kv heads).
    /// </summary>
    [TestCase("quick")]
    [TestCase("default")]
    [TestCase("large")]
    public void LlamaPresetMatchesTheGptNeoXTeachersNonEmbeddingParameters(string name)
    {
        var neox = DemoPreset.Get(name, "gpt-neox");
        var llama = DemoPreset.Get(name, "llama");
        Assert.That(llama with { Family = neox.Family, KvHeads = neox.KvHeads, Intermediate = neox.Intermediate }, Is.EqualTo(neox),
            "only the family, kv heads and MLP width differ");
        Assert.That(llama.KvHeads, Is.LessThan(llama.Heads).And.GreaterThan(0));
        Assert.That(llama.Intermediate % llama.IntermediateStep, Is.Zero, "the MLP width is on the search's grid");
        long n = ParameterCount.Of(new GptNeoXConfig
        {
            VocabSize = 4096, HiddenSize = neox.Hidden, NumLayers = neox.Layers, NumHeads = neox.Heads,
            IntermediateSize = neox.Intermediate,
        }).NonEmbedding;
        long l = ParameterCount.Of(new LlamaConfig
        {
            Family = "llama", VocabSize = 4096, HiddenSize = llama.Hidden, NumLayers = llama.Layers, NumHeads = llama.Heads,
            NumKeyValueHeads = llama.KvHeads, IntermediateSize = llama.Intermediate,
        }).NonEmbedding;
        // GPT-NeoX's biases and second layernorm per layer are what the Llama teacher lacks: about 1% at the quick preset.
        Assert.That((double)l / n, Is.InRange(0.97, 1.0), $"Llama {l:N0} against GPT-NeoX {n:N0} non-embedding parameters");
    }

    /// <summary>
    /// The supernet stage of a finished two-seed quick demo: per seed a sandwich and a standard parent trained from the
    /// importance-permuted teacher and searched like it; the report's section and its per-seed claims; and the search's
    /// (ppl, params, FLOPs) figure, whose rings are exactly the members of the search's pareto.json, in both panels.
    /// </summary>
    static void SupernetStageAndParetoPlotAreInTheReport(string dir, string stdout, DemoResults r, JsonNode across)
    {
        foreach (var seedDir in new[] { dir, Path.Combine(dir, "seed-1") })
            foreach (var arm in new[] { "sandwich", "standard" })
            {
                Assert.That(stdout, Does.Contain($"$ whittle train-supernet --model {Path.Combine(dir, "importance")} "));
                Assert.That(stdout, Does.Contain($"--out {Path.Combine(seedDir, "supernet", arm)} --strategy {arm} "));
                Assert.That(stdout, Does.Contain($"--model {Path.Combine(seedDir, "supernet", arm, "final")} "));
                var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(seedDir, "supernet", arm + "-search", "summary.json")))!;
                Assert.That(summary["strategies"]!.AsObject().Select(kv => kv.Key), Is.EqualTo(new[] { "evolution" }));
            }
        Assert.That(r.Supernet!.Arms.Select(a => a.Name), Is.EqualTo(new[] { "sandwich", "standard" }));
        // The plain teacher's search and the supernet searches start from the same candidates (same space and seed).
        string First(string searchDir) => File.ReadLines(Path.Combine(searchDir, "history.jsonl")).First();
        string Spec(string line) => JsonNode.Parse(line)!["spec"]!.ToJsonString();
        Assert.That(Spec(First(Path.Combine(dir, "supernet", "sandwich-search"))), Is.EqualTo(Spec(First(Path.Combine(dir, "search")))));
        var effects = across["effects"]!.AsArray().Select(e => e!["key"]!.GetValue<string>()).ToList();
        Assert.That(effects, Does.Contain("supernet_vs_plain").And.Contain("supernet_vs_standard"));
        var plain = across["effects"]!.AsArray().Single(e => e!["key"]!.GetValue<string>() == "supernet_vs_plain")!["values"]!.AsArray();
        Assert.That(plain.Select(v => v!["value"]?.GetValue<double>()), Is.EqualTo(new[]
        {
            DemoFindings.Of(r).Supernet!.GainOverPlain,
            DemoFindings.Of(DemoReport.Load(Path.Combine(dir, "seed-1", "results.json"))).Supernet!.GainOverPlain,
        }));
        string md = File.ReadAllText(Path.Combine(dir, "report.md"));
        Assert.That(md, Does.Contain("## Supernet training (whittle's first stage)").And.Contain("| supernet: sandwich |"));

        var pareto = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "search", "pareto.json")))!.AsArray();
        Assert.That(pareto[0]!["objectives"]!.AsObject().Select(kv => kv.Key), Is.EqualTo(new[] { "ppl", "params", "flops" }));
        var svg = System.Xml.Linq.XDocument.Load(Path.Combine(dir, "search-objectives.svg"));
        var panels = svg.Root!.Elements().Where(e => e.Name.LocalName == "svg").ToList();
        Assert.That(panels, Has.Count.EqualTo(2));
        // The Pareto set's series in each panel (its legend entry, outside the plot area, draws one more ring).
        var sets = panels.Select(p => p.Descendants().Single(e => e.Name.LocalName == "g"
            && e.Elements().Any(t => t.Name.LocalName == "title" && t.Value.StartsWith(DemoPlots.ParetoSetSeries)))).ToList();
        foreach (var set in sets)
            Assert.That(set.Elements().Count(e => e.Name.LocalName == "circle" && (string?)e.Attribute("class") == "ring"),
                Is.EqualTo(pareto.Count), "one ring per member of pareto.json in each panel");
        // The rings sit at the members' perplexities: the panels share the perplexity axis, so both list the same heights.
        var heights = sets.Select(p => p.Elements().Where(e => (string?)e.Attribute("class") == "ring")
            .Select(e => (string?)e.Attribute("cy")).Order().ToList()).ToList();
        Assert.That(heights[1], Is.EqualTo(heights[0]));
        Assert.That(r.SearchFront!.Pareto, Has.Count.EqualTo(pareto.Count));
    }

    static int SaltSmallSteps(string dir) =>
        System.Text.Json.Nodes.JsonNode.Parse(
            File.ReadLines(Path.Combine(dir, "salt-small", "metrics.jsonl")).Last(l => l.Contains("val_loss")))!["step"]!.GetValue<int>();

    [Test]
    public void SeedOptionsAreCheckedBeforeAnyWork()
    {
        var dir = Path.Combine(Path.GetTempPath(), "whittle-demo-never-" + Guid.NewGuid().ToString("N"));
        foreach (var (args, message) in new[]
        {
            (new[] { "--seed", "-1" }, "--seed must be 0 or more, got -1"),
            (new[] { "--seeds", "4-2" }, "--seeds: '4-2' is not a seed or a range of seeds"),
            (new[] { "--seeds", "0,x" }, "--seeds: 'x' is not a seed or a range of seeds"),
            (new[] { "--seeds", "0" }, "--seeds: a count of seeds must be 1 to 1000, got '0'"),
            (new[] { "--seeds", "99999999999" }, "--seeds: a count of seeds must be 1 to 1000"),
            (new[] { "--family", "mamba" }, "unknown --family 'mamba' (expected gpt-neox or llama)"),
        })
        {
            var (exit, _, stderr) = CliRunner.Run(["demo", "--preset", "quick", "--out", dir, .. args]);
            Assert.That(exit, Is.EqualTo(1), string.Join(' ', args));
            Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(stderr, Does.Contain(message));
            Assert.That(Directory.Exists(dir), Is.False, "nothing is written before the options are checked");
        }
        Assert.That(DemoCommand.ParseSeeds("0-2, 7,1", first: 5), Is.EqualTo(new[] { 0, 1, 2, 7 }));
        Assert.That(DemoCommand.ParseSeeds("3", first: 5), Is.EqualTo(new[] { 5, 6, 7 }), "a bare number counts seeds from --seed");
    }

    [TestCase("quick --seed 3")]
    [TestCase("default")]
    public void ARunDirectoryOfAnotherDemoIsRefused(string stored)
    {
        var dir = Directory.CreateTempSubdirectory("whittle-demo-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "preset.txt"), stored + "\n");
            var (exit, _, stderr) = CliRunner.Run("demo", "--preset", "quick", "--out", dir);
            Assert.That(exit, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain($"holds a '{stored}' demo"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
