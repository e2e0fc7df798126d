using System.Diagnostics;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.IO;

/// <summary>
/// One writer per run directory (issue 14, item 5): a second writer — another process, or a second acquisition in this
/// one — is refused with one line naming the holder's pid; the lock dies with its process; an interrupted save's
/// leftovers are removed when the directory is taken.
/// </summary>
[NonParallelizable]   // the lock registry is process-wide
public class RunDirectoryLockTests
{
    string _root = "";

    [SetUp] public void MakeRoot() => _root = Directory.CreateTempSubdirectory("whittle-lock-").FullName;
    [TearDown] public void RemoveRoot() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static string[] Pretrain(string run, int steps) =>
        ["pretrain", "--data", TestData.AustenSlice, "--out", run, "--steps", steps.ToString(), "--seq-len", "16", "--batch-size", "2",
         "--eval-tokens", "64", "--eval-every", "100000", "--save-every", "100000", "--layers", "1", "--hidden", "16", "--heads", "2"];

    [Test]
    public void ASecondAcquisitionIsRefusedUntilTheFirstIsReleased()
    {
        var run = Path.Combine(_root, "run");
        using (RunDirectoryLock.Acquire(run, "pretrain"))
        {
            var ex = Assert.Throws<WhittleException>(() => RunDirectoryLock.Acquire(run, "distill"));
            Assert.That(ex!.Message, Does.Contain(run).And.Contain($"process {Environment.ProcessId}").And.Contain("pretrain"));
            Assert.That(
                RunDirectoryLock.HoldForProcess(run, "demo"), Is.Not.Null, "re-entrant for the process that holds it (demo stages)");
        }
        // Read only now: with POSIX record locks, the holder closing any descriptor of the file would drop its lock.
        Assert.That(
            File.ReadAllText(Path.Combine(run, RunDirectoryLock.FileName)), Does.StartWith($"pid {Environment.ProcessId} pretrain"));
        using (RunDirectoryLock.Acquire(run, "distill")) { }
    }

    /// <summary>The test process holds the lock; `whittle pretrain` on the same --out, a second process, exits 1 with one
    /// line naming the directory and this pid, and writes nothing there.</summary>
    [Test]
    public void ASecondProcessOnTheSameOutExitsOneNamingTheHolder()
    {
        var run = Path.Combine(_root, "run");
        using var held = RunDirectoryLock.Acquire(run, "pretrain");
        var (exit, stdout, stderr) = CliRunner.Run(Pretrain(run, 2));
        Assert.That(exit, Is.EqualTo(1), stdout + stderr);
        Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain(run).And.Contain($"process {Environment.ProcessId}").And.Contain("one writer"));
        Assert.That(
            Directory.EnumerateFileSystemEntries(run).Select(Path.GetFileName), Is.EqualTo(new[] { RunDirectoryLock.FileName }),
            "nothing written");
    }

    /// <summary>kill -9 of a training process drops its lock (the OS releases record locks with the process): the next
    /// `--resume` on that directory runs, and removes the leftovers of a save cut short (planted here the way AtomicFile,
    /// AtomicDirectory and DatasetWriter name them), leaving the real files.</summary>
    [Test]
    public void AKilledWritersLockIsReleasedAndItsLeftoversAreRemovedOnResume()
    {
        var run = Path.Combine(_root, "run");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll"));
        foreach (var a in Pretrain(run, 1_000_000)) psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!)
        {
            p.OutputDataReceived += (_, _) => { }; p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine(); p.BeginErrorReadLine();
            var lockFile = Path.Combine(run, RunDirectoryLock.FileName);
            var until = DateTime.UtcNow.AddMinutes(3);
            while (!(File.Exists(lockFile) && File.ReadAllText(lockFile).StartsWith($"pid {p.Id} ")) && !p.HasExited
                && DateTime.UtcNow < until) Thread.Sleep(100);
            Assert.That(p.HasExited, Is.False, "the long run must still be training when it is killed");
            Assert.That(File.ReadAllText(lockFile), Does.StartWith($"pid {p.Id} pretrain"));
            var ex = Assert.Throws<WhittleException>(() => RunDirectoryLock.Acquire(run, "test"));
            Assert.That(ex!.Message, Does.Contain($"process {p.Id}"));
            p.Kill(entireProcessTree: true);
            Assert.That(p.WaitForExit(60_000), Is.True);
        }

        var leftovers = new[]
        {
            Path.Combine(run, "checkpoints", ".step-0000002.tmp-4242-0123456789abcdef"),
            Path.Combine(run, ".final.tmp-4242-0123456789abcdef"),
        };
        foreach (var d in leftovers) { Directory.CreateDirectory(d); File.WriteAllText(Path.Combine(d, "model.safetensors"), "half"); }
        var tmpFile = Path.Combine(run, ".metrics.jsonl.tmp-4242-fedcba9876543210");
        File.WriteAllText(tmpFile, "half");
        var keep = Path.Combine(run, "checkpoints", "notes.txt");
        File.WriteAllText(keep, "mine");
        var lookalike = Path.Combine(run, "draft.tmp-notes");   // not a name whittle's writers use
        File.WriteAllText(lookalike, "mine too");

        var (exit, stdout, stderr) = CliRunner.Run([.. Pretrain(run, 2), "--resume"]);
        Assert.That(exit, Is.EqualTo(0), stdout + stderr);
        Assert.That(stderr, Does.Contain("removed 3 leftover(s) of an interrupted save"));
        foreach (var d in leftovers) Assert.That(Directory.Exists(d), Is.False, d);
        Assert.That(File.Exists(tmpFile), Is.False);
        Assert.That(File.ReadAllText(keep), Is.EqualTo("mine"), "only whittle's temporary names are removed");
        Assert.That(File.ReadAllText(lookalike), Is.EqualTo("mine too"), "only whittle's temporary names are removed");
        Assert.That(File.Exists(Path.Combine(run, "final", "model.safetensors")), Is.True);
    }

    [Test]
    public void LeftoversInsideAnotherRunDirectoryAreItsOwn()
    {
        var demo = Path.Combine(_root, "demo");
        var stage = Path.Combine(demo, "teacher");
        var stageTmp = Path.Combine(stage, ".final.tmp-1-ab");
        var rootTmp = Path.Combine(demo, "data.tmp-1-ab");
        Directory.CreateDirectory(stageTmp); Directory.CreateDirectory(rootTmp);
        File.WriteAllText(Path.Combine(stage, RunDirectoryLock.FileName), "pid 1 pretrain\n");
        Assert.That(RunDirectoryLock.RemoveInterruptedSaves(demo), Is.EqualTo(new[] { rootTmp }));
        Assert.That(Directory.Exists(stageTmp), Is.True, "a stage directory with its own lock is cleaned by its own writer");
    }

    [Test]
    public void AnOutThatIsAFileIsRefused()
    {
        var file = Path.Combine(_root, "a-file");
        File.WriteAllText(file, "x");
        var (exit, _, stderr) = CliRunner.Run(Pretrain(file, 2));
        Assert.That(exit, Is.EqualTo(1), stderr);
        Assert.That(stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain(file).And.Contain("is a file"));
        Assert.That(File.ReadAllText(file), Is.EqualTo("x"));
    }
}
