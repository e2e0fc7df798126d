using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// `whittle cache-teacher` and `distill --teacher-cache` through the real command: a cached run trains like the live
/// top-k run, resumes onto the right batches, refuses a cache that does not fit (settings, or a batch whose tokens
/// differ), and an interrupted build leaves no cache directory.
/// </summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class TeacherCacheCommandTests
{
    static string _root = "";
    static string Teacher => Path.Combine(_root, "teacher");
    /// <summary>Built once: top-16 at τ = 2, 2×16-token micro-batches, 4 steps × grad-accum 1, seed 3.</summary>
    static string Cache => Path.Combine(_root, "cache");

    static GptNeoXConfig Tiny =>
        new() { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    static string[] Shape(ulong seed = 3) =>
        ["--data", TestData.AustenSlice, "--seq-len", "16", "--batch-size", "2", "--seed", seed.ToString()];

    static string[] Student(string run, int steps) =>
        [.. Shape(), "--out", run, "--steps", steps.ToString(), "--eval-tokens", "256", "--layers", "1", "--hidden", "32", "--heads", "2",
            "--lr", "3e-3"];

    static string BuildCache(string dir, int steps, params string[] more)
    {
        var (exit, stdout, err) = CliRunner.Run(
            ["cache-teacher", "--teacher", Teacher, .. Shape(), "--top-k", "16", "--temperature", "2", "--steps", steps.ToString(), "--out",
            dir, .. more]);
        Assert.That(exit, Is.EqualTo(0), err);
        return stdout;
    }

    [OneTimeSetUp]
    public void MakeTeacherAndCache()
    {
        _root = Directory.CreateTempSubdirectory("whittle-kdcache-").FullName;
        OpinionatedTeacher.Save(Tiny, 9, Teacher);
        BuildCache(Cache, 4);
    }

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static List<JsonNode> StepLines(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(o => o["kd"] is not null).ToList();

    [Test]
    public void TheCacheHoldsOneFilePerMicroBatchAndAManifest()
    {
        var files = Directory.GetFiles(Cache).Select(Path.GetFileName).Order().ToArray();
        Assert.That(
            files, Is.EqualTo(
            new[] { "batch-00000000.kd", "batch-00000001.kd", "batch-00000002.kd", "batch-00000003.kd", "manifest.json" }));
        var m = JsonNode.Parse(File.ReadAllText(Path.Combine(Cache, "manifest.json")))!;
        Assert.That(m["top_k"]!.GetValue<int>(), Is.EqualTo(16));
        Assert.That(m["temperature"]!.GetValue<float>(), Is.EqualTo(2f));
        Assert.That(m["vocab_size"]!.GetValue<int>(), Is.EqualTo(4096));
        Assert.That(m["seed"]!.GetValue<ulong>(), Is.EqualTo(3UL));
        Assert.That(m["batches"]!.GetValue<long>(), Is.EqualTo(4));
        Assert.That(m["teacher"]!.GetValue<string>(), Is.EqualTo(Path.GetFullPath(Teacher)));
        Assert.That(m["data_hash"]!.GetValue<string>(), Has.Length.EqualTo(64));
    }

    /// <summary>
    /// The same run with the live teacher (--loss top-k, same k, τ, seed) and from the cache. Step 1's CE is bit-identical
    /// (same student init, same batch: the cache walked the trainer's own batch sequence). KD differs only by the f16
    /// rounding of the cached log-probabilities: each is stored within relative u = 2^-11 (f16's unit roundoff), and KD is a
    /// q-weighted mean of terms linear in them, so we allow u relative on KD and on the loss (≈ 0.012 nats at KD ≈ 24;
    /// measured: ≤ 4.5e-4, i.e. 2e-5 relative, since the rounding errors of the 16 values partly cancel). CE sees the
    /// cache only through the student's drift (Adam steps from gradients that differ by ~u): 1e-5 relative (measured
    /// 1.3e-7). A wrong batch changes KD by several % here (24.0 to 26.0 across steps), a wrong k or τ by more.
    /// </summary>
    [Test]
    public void DistillFromTheCacheMatchesTheLiveTopKTeacher()
    {
        const double F16Roundoff = 1.0 / 2048;
        var live = Path.Combine(_root, "live");
        var cached = Path.Combine(_root, "cached");
        var a = CliRunner.Run(
            ["distill", "--teacher", Teacher, "--loss", "top-k", "--top-k", "16", "--temperature", "2", .. Student(live, 4)]);
        Assert.That(a.Exit, Is.EqualTo(0), a.Stderr);
        var b = CliRunner.Run(["distill", "--teacher-cache", Cache, .. Student(cached, 4)]);
        Assert.That(b.Exit, Is.EqualTo(0), b.Stderr);
        Assert.That(b.Stdout, Does.Contain("top-16 (τ = 2) from the teacher cache"));
        var la = StepLines(live); var lb = StepLines(cached);
        Assert.That(lb, Has.Count.EqualTo(4));
        // Exact: the same GEMM path, shapes and thread count on one machine compute the step-1 student bit for bit (OpenBLAS
        // too: its kernel choice depends on the CPU and the shapes, both the same here). Later steps differ through the
        // f16-rounded teacher (F16Roundoff = 2^-11, f16's unit roundoff, relative to the KD and the loss it enters).
        Assert.That(lb[0]["ce"]!.GetValue<double>(), Is.EqualTo(la[0]["ce"]!.GetValue<double>()), "step 1: same student, same batch");
        for (int i = 0; i < 4; i++)
        {
            double kdA = la[i]["kd"]!.GetValue<double>(), kdB = lb[i]["kd"]!.GetValue<double>();
            TestContext.Out.WriteLine($"step {i + 1}: kd {kdA} vs {kdB} ({kdB - kdA:e2}), ce {la[i]["ce"]} vs {lb[i]["ce"]}, loss " +
                $"{la[i]["loss"]} vs {lb[i]["loss"]}");
            Assert.That(kdA, Is.GreaterThan(1), "a real KD signal to compare");
            Assert.That(kdB, Is.EqualTo(kdA).Within(F16Roundoff * kdA), $"step {i + 1} kd");
            Assert.That(
                lb[i]["ce"]!.GetValue<double>(), Is.EqualTo(la[i]["ce"]!.GetValue<double>()).Within(1e-3).Percent, $"step {i + 1} ce");
            double lossA = la[i]["loss"]!.GetValue<double>();
            Assert.That(lb[i]["loss"]!.GetValue<double>(), Is.EqualTo(lossA).Within(F16Roundoff * lossA), $"step {i + 1} loss");
        }
    }

    /// <summary>With grad-accum 2 every step reads two files, and a resumed run must pick up at the right one (a wrong index fails the hash
    /// check).</summary>
    [Test]
    public void ResumeAndGradientAccumulationReadTheRightBatches()
    {
        var cache = Path.Combine(_root, "cache-accum");
        BuildCache(cache, 3, "--grad-accum", "2");
        Assert.That(Directory.GetFiles(cache, "*.kd"), Has.Length.EqualTo(6));
        var run = Path.Combine(_root, "resumed");
        var first = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(run, 2), "--grad-accum", "2"]);
        Assert.That(first.Exit, Is.EqualTo(0), first.Stderr);
        var second = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(run, 3), "--grad-accum", "2", "--resume"]);
        Assert.That(second.Exit, Is.EqualTo(0), second.Stderr);
        Assert.That(second.Stdout, Does.Contain("resumed at step 2"));
        Assert.That(StepLines(run).Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2, 3 }));
        var tooLong = CliRunner.Run(
            ["distill", "--teacher-cache", cache, .. Student(Path.Combine(_root, "too-long"), 4), "--grad-accum", "2"]);
        Assert.That(tooLong.Exit, Is.EqualTo(1));
        Assert.That(tooLong.Stderr, Does.Contain("holds 6 micro-batches").And.Contain("needs 8"));
    }

    [Test]
    public void ASwappedBatchFileIsRefusedWithBothHashes()
    {
        var cache = Path.Combine(_root, "cache-swapped");
        CopyDir(Cache, cache);
        string f0 = Path.Combine(cache, "batch-00000000.kd"), f1 = Path.Combine(cache, "batch-00000001.kd"), tmp = f0 + ".x";
        File.Move(f0, tmp); File.Move(f1, f0); File.Move(tmp, f1);
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(Path.Combine(_root, "swapped"), 2)]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("batch-00000000.kd").And.Contain("sha256").And.Contain("this batch's tokens hash to"));
    }

    /// <summary>A cache built for another data order (--seed 5) whose manifest was edited to claim seed 3: the batch hashes still catch
    /// it.</summary>
    [Test]
    public void ACacheOfAnotherDataOrderIsRefusedByTheBatchHash()
    {
        var cache = Path.Combine(_root, "cache-seed5");
        var (exit0, _, err0) = CliRunner.Run(
            ["cache-teacher", "--teacher", Teacher, .. Shape(5), "--top-k", "16", "--temperature", "2", "--steps", "2", "--out", cache]);
        Assert.That(exit0, Is.EqualTo(0), err0);
        var run = Path.Combine(_root, "seed-mismatch");
        var refused = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(run, 2)]);
        Assert.That(refused.Exit, Is.EqualTo(1));
        Assert.That(refused.Stderr, Does.Contain("built with --seed 5, but this run uses 3"));
        Assert.That(Directory.Exists(run), Is.False, "refused before any work");

        var manifest = Path.Combine(cache, "manifest.json");
        var m = JsonNode.Parse(File.ReadAllText(manifest))!;
        m["seed"] = 3;
        File.WriteAllText(manifest, m.ToJsonString());
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(Path.Combine(_root, "tampered"), 2)]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("batch-00000000.kd").And.Contain("this batch's tokens hash to").And.Contain("rebuild the cache"));
    }

    [TestCase("--top-k", "8", "the cache holds the top-16, but --top-k 8 was given")]
    [TestCase("--temperature", "1", "built at temperature 2, but --temperature 1 was given")]
    [TestCase("--loss", "js", "--loss js needs the full teacher")]
    [TestCase("--batch-size", "4", "built with --batch-size 2, but this run uses 4")]
    [TestCase("--seq-len", "8", "built with --seq-len 16, but this run uses 8")]
    public void MismatchedSettingsAreRefusedBeforeAnyWork(string flag, string value, string message)
    {
        var run = Path.Combine(_root, "bad-" + Guid.NewGuid().ToString("N"));
        var args = Student(run, 2).ToList();
        int at = args.IndexOf(flag);
        if (at >= 0) args[at + 1] = value; else args.AddRange([flag, value]);
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher-cache", Cache, .. args]);
        Assert.That(exit, Is.EqualTo(1), err);
        Assert.That(err, Does.Contain(message));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }

    [Test]
    public void AnotherDatasetOrStudentVocabularyIsRefusedBeforeAnyWork()
    {
        var data = Path.Combine(_root, "other-data");
        CopyDir(TestData.AustenSlice, data);
        var meta = Path.Combine(data, "meta.json");
        File.WriteAllText(meta, JsonNode.Parse(File.ReadAllText(meta))!.ToJsonString());   // same content, other bytes: another meta.json
        var run = Path.Combine(_root, "other-data-run");
        var args = Student(run, 2).ToList();
        args[args.IndexOf("--data") + 1] = data;
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher-cache", Cache, .. args]);
        Assert.That(exit, Is.EqualTo(1), err);
        Assert.That(err, Does.Contain("built from a dataset whose meta.json has sha256").And.Contain(data));
        Assert.That(Directory.Exists(run), Is.False);

        var student = Path.Combine(_root, "vocab-5000");
        using (var m = GptNeoX.CreateRandom(Tiny with { VocabSize = 5000 }, CpuBackend.Instance, 1)) GptNeoXCheckpoint.Save(m, student);
        var run2 = Path.Combine(_root, "vocab-run");
        var v = CliRunner.Run(["distill", "--teacher-cache", Cache, "--student", student, .. Student(run2, 2)]);
        Assert.That(v.Exit, Is.EqualTo(1));
        Assert.That(v.Stderr, Does.Contain("the teacher's vocab_size is 4096, the student's 5000"));
        Assert.That(Directory.Exists(run2), Is.False);
    }

    [Test]
    public void TeacherAndCacheAreExclusiveAndAnOccupiedOutIsRefused()
    {
        var both = CliRunner.Run(["distill", "--teacher", Teacher, "--teacher-cache", Cache, .. Student(Path.Combine(_root, "both"), 2)]);
        Assert.That(both.Exit, Is.EqualTo(1));
        Assert.That(both.Stderr, Does.Contain("exactly one of --teacher DIR or --teacher-cache DIR"));
        var again = CliRunner.Run(["cache-teacher", "--teacher", Teacher, .. Shape(), "--steps", "1", "--out", Cache]);
        Assert.That(again.Exit, Is.EqualTo(1));
        Assert.That(again.Stderr, Does.Contain("already exists"));
    }

    /// <summary>Killed in the middle of its work, cache-teacher leaves no cache directory (only a hidden temporary one beside
    /// it).</summary>
    [Test]
    public void AnInterruptedBuildLeavesNoCacheDirectory()
    {
        var cache = Path.Combine(_root, "cache-killed");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll"), "cache-teacher",
            "--teacher", Teacher }
                     .Concat(Shape()).Concat(["--top-k", "4", "--steps", "20000", "--out", cache]))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        _ = p.StandardError.ReadToEndAsync();
        string? line;
        while ((line = p.StandardOutput.ReadLine()) is not null && !line.StartsWith("batch ")) { }
        Assert.That(line, Is.Not.Null, "progress lines while the cache is built");
        Assert.That(p.HasExited, Is.False, "still working when interrupted");
        p.Kill(true);
        p.WaitForExit();
        Assert.That(Directory.Exists(cache), Is.False);
        Assert.That(
            Directory.GetDirectories(_root, ".cache-killed.tmp-*"), Has.Length.EqualTo(1),
            "the partial cache lives under a temporary name");
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher-cache", cache, .. Student(Path.Combine(_root, "after-kill"), 2)]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("directory not found"));
    }

    static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }
}
