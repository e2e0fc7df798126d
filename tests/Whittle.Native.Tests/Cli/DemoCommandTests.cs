using System.Text.Json.Nodes;
using Whittle.Cli;
using Whittle.Native.Demo;

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

            var again = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--seeds", "2", "--out", dir);
            Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
            // Three shared stages and seven per seed (the quick preset trains SALT's small model in a stage of its own).
            Assert.That(
                again.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(3 + 2 * 7),
                "every stage is skipped on a rerun");
            Assert.That(again.Stdout, Does.Not.Contain("$ whittle"));
            var one = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(one.Exit, Is.EqualTo(0), one.Stderr);
            Assert.That(one.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(3 + 7));
            Assert.That(File.ReadAllText(Path.Combine(dir, "report.md")), Does.Contain("## Claims across one seed"));
        }
        finally { Directory.Delete(dir, true); }
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
