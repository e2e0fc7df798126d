using System.Diagnostics;
using Whittle.Cli;
using Whittle.Native.Demo;

namespace Whittle.Native.Tests.Cli;

/// <summary>The README's first command, end to end: `whittle demo --preset quick` on the bundled corpus, then a rerun that
/// resumes.</summary>
[NonParallelizable]
public class DemoCommandTests
{
    [Test]
    public void QuickDemoWritesAReportFromItsOwnRunAndResumesFromFinishedStages()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-demo-").FullName;
        try
        {
            var (exit, stdout, stderr) = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(exit, Is.EqualTo(0), stderr);
            foreach (var f in new[] { "report.md", "report.html", "results.json" }) Assert.That(File.Exists(Path.Combine(dir, f)), f);
            var r = DemoReport.Load(Path.Combine(dir, "results.json"));
            Assert.That(r.Students.Select(a => a.Name), Is.EqualTo(new[] { "random-init", "subnet-init", "subnet-init+kd" }));
            Assert.That(
                r.Students.Select(a => a.Curve[^1].Tokens).Distinct().Count(), Is.EqualTo(1),
                "every student trained on the same number of tokens");
            Assert.That(
                r.Salt.Select(a => a.Curve.Select(p => p.Step)), Has.All.EquivalentTo(r.Salt[0].Curve.Select(p => p.Step)),
                "SALT and its baseline are evaluated at the same steps");
            Assert.That(r.Search.Select(p => p.Strategy).Distinct(), Is.EquivalentTo(new[] { "evolution", "random", "importance" }));
            Assert.That(stdout, Does.Contain("$ whittle pretrain"), "the demo shows the commands it runs");
            // SALT's small model is trained longer than the students (ahead of the large model early, as in the paper) and is the one SALT
            // uses.
            Assert.That(stdout, Does.Contain($"--out {Path.Combine(dir, "salt-small")} "));
            Assert.That(stdout, Does.Contain($"$ whittle salt --small {Path.Combine(dir, "salt-small", "final")} "));
            Assert.That(SaltSmallSteps(dir), Is.GreaterThan(r.Students[0].Curve[^1].Step));
            // The teacher's validation curve in the report is the one in its metrics file.
            var teacherMetrics = File.ReadAllLines(Path.Combine(dir, "teacher", "metrics.jsonl")).Count(l => l.Contains("val_loss"));
            Assert.That(r.Salt.Single(a => a.Name == "baseline").Curve, Has.Count.EqualTo(teacherMetrics));

            var sw = Stopwatch.StartNew();
            var again = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
            // The quick preset trains SALT's small model in a stage of its own: ten stages before the report.
            Assert.That(
                again.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(10),
                "every stage is skipped on a rerun");
            Assert.That(again.Stdout, Does.Not.Contain("$ whittle"));
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
            (new[] { "--seeds", "0-4", "--seed", "1" }, "give --seed or --seeds, not both"),
        })
        {
            var (exit, _, stderr) = CliRunner.Run(["demo", "--preset", "quick", "--out", dir, .. args]);
            Assert.That(exit, Is.EqualTo(1), string.Join(' ', args));
            Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(stderr, Does.Contain(message));
            Assert.That(Directory.Exists(dir), Is.False, "nothing is written before the options are checked");
        }
        Assert.That(DemoCommand.ParseSeeds("0-2, 7,1"), Is.EqualTo(new[] { 0, 1, 2, 7 }));
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
