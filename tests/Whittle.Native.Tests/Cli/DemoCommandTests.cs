using System.Diagnostics;
using Whittle.Native.Demo;

namespace Whittle.Native.Tests.Cli;

/// <summary>The README's first command, end to end: `whittle demo --preset quick` on the bundled corpus, then a rerun that resumes.</summary>
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
            Assert.That(r.Students.Select(a => a.Curve[^1].Tokens).Distinct().Count(), Is.EqualTo(1), "every student trained on the same number of tokens");
            Assert.That(r.Salt.Select(a => a.Curve.Select(p => p.Step)), Has.All.EquivalentTo(r.Salt[0].Curve.Select(p => p.Step)), "SALT and its baseline are evaluated at the same steps");
            Assert.That(r.Search.Select(p => p.Strategy).Distinct(), Is.EquivalentTo(new[] { "evolution", "random", "importance" }));
            Assert.That(stdout, Does.Contain("$ whittle pretrain"), "the demo shows the commands it runs");
            // The teacher's validation curve in the report is the one in its metrics file.
            var teacherMetrics = File.ReadAllLines(Path.Combine(dir, "teacher", "metrics.jsonl")).Count(l => l.Contains("val_loss"));
            Assert.That(r.Salt.Single(a => a.Name == "baseline").Curve, Has.Count.EqualTo(teacherMetrics));

            var sw = Stopwatch.StartNew();
            var again = CliRunner.RunIn(Path.GetTempPath(), null, "demo", "--preset", "quick", "--out", dir);
            Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
            Assert.That(again.Stdout.Split('\n').Count(l => l.Contains("done in an earlier run")), Is.EqualTo(9), "every stage is skipped on a rerun");
            Assert.That(again.Stdout, Does.Not.Contain("$ whittle"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void ARunDirectoryOfAnotherPresetIsRefused()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-demo-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "preset.txt"), "default\n");
            var (exit, _, stderr) = CliRunner.Run("demo", "--preset", "quick", "--out", dir);
            Assert.That(exit, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain("holds a 'default' demo"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
