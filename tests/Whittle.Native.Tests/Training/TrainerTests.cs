using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Tokenization;
using Whittle.Native.Training;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.Training;

/// <summary>
/// Training on the bundled corpus (a slice of it: the first chapters, split into documents at "CHAPTER" headings):
/// it learns, it resumes bit-identically, and a crash at any moment leaves a loadable checkpoint.
/// </summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class TrainerTests
{
    static string _root = "";
    static string DataDir => TestData.AustenSlice;

    [OneTimeSetUp]
    public void MakeRoot() => _root = Directory.CreateTempSubdirectory("whittle-train-").FullName;

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static GptNeoXConfig Tiny =>
        new() { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    static TrainOptions Options(string run, int steps, int saveEvery = 0) => new()
    {
        RunDir = run, SeqLen = 32, MicroBatch = 4, GradAccum = 2, Steps = steps, SaveEvery = saveEvery, EvalTokens = 2048, Seed = 7,
        Schedule = new LrSchedule(ScheduleKind.Cosine, 3e-3f, 3e-4f, 2, steps), Adam = new AdamWSettings(3e-3f),
    };

    static (float[] Weights, double[] Losses) Train(string run, int steps, int saveEvery, int stopAfter = int.MaxValue, bool resume = false)
    {
        using var data = TokenDataset.Open(DataDir);
        using var model = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 11);
        using var trainer = new Trainer(model, data, Options(run, steps, saveEvery));
        if (resume) Assert.That(trainer.TryResume(), Is.True, "a checkpoint to resume from");
        using var cts = new CancellationTokenSource();
        try { trainer.Run(onStep: r => { if (r.Step == stopAfter) cts.Cancel(); }, cancel: cts.Token); }
        catch (OperationCanceledException) { }
        var losses = File.ReadAllLines(trainer.MetricsPath).Select(l => JsonNode.Parse(l)!).Where(o => o["loss"] is not null)
            .Select(o => o["loss"]!.GetValue<double>()).ToArray();
        return (model.Parameters.Flat.ToFloatArray(), losses);
    }

    [Test]
    public void ResumingHalfWayGivesBitIdenticalLossesAndWeights()
    {
        var straight = Train(Path.Combine(_root, "straight"), steps: 8, saveEvery: 4);
        var split = Path.Combine(_root, "split");
        var first = Train(split, steps: 8, saveEvery: 4, stopAfter: 4);
        Assert.That(first.Losses, Has.Length.EqualTo(4));
        var second = Train(split, steps: 8, saveEvery: 4, resume: true);
        // Bit for bit holds for any GEMM path: both runs make the same calls, with the same shapes and thread count, in one
        // process (ours is order-fixed by construction; OpenBLAS picks its kernel from the CPU and the shape, both fixed).
        Assert.That(second.Losses, Is.EqualTo(straight.Losses), "the same loss at every step, bit for bit");
        Assert.That(second.Weights, Is.EqualTo(straight.Weights), "the same final weights, bit for bit");
    }

    /// <summary>
    /// metrics.jsonl's elapsed_s is the run's training wall-clock: each step adds its own ms, so it grows with every step,
    /// and a resumed run carries on from the checkpoint's value (not from 0). Both numbers are logged rounded (elapsed_s
    /// to 1e-6 s, ms to 1e-2 ms), so a step's increment matches its ms to 2·0.5e-6 + 0.5e-5 s = 6e-6 s.
    /// </summary>
    [Test]
    public void ElapsedSecondsGrowWithEveryStepAndAResumeContinuesThem()
    {
        var run = Path.Combine(_root, "clock");
        Train(run, steps: 8, saveEvery: 4, stopAfter: 5);   // stops after step 5: the metrics past the step-4 checkpoint go on resume
        var checkpoint4 = new CheckpointStore(run).List().Single(c => c.Step == 4).Path;
        var stateAt4 = TrainingState.Load(Path.Combine(checkpoint4, CheckpointStore.StateFile));
        Train(run, steps: 8, saveEvery: 4, resume: true);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        var steps = lines.Where(o => o["loss"] is not null).ToList();
        Assert.That(steps.Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(Enumerable.Range(1, 8)),
            "one line per step, the re-run step 5 once");
        const double Rounding = 6e-6;
        double previous = 0;
        foreach (var o in steps)
        {
            double elapsed = o["elapsed_s"]!.GetValue<double>(), ms = o["ms"]!.GetValue<double>();
            Assert.That(elapsed, Is.GreaterThan(previous), $"step {o["step"]}: elapsed_s grows");
            Assert.That(elapsed - previous, Is.EqualTo(ms / 1000).Within(Rounding), $"step {o["step"]}: its increment is its own time");
            previous = elapsed;
        }
        double at4 = steps[3]["elapsed_s"]!.GetValue<double>();
        // rounding to 6 decimals moves the clock by at most 0.5e-6, plus the binary error of the two doubles (a clock of
        // …2749999… rounded to …28 differed by 5.00000000000050e-7)
        Assert.That(stateAt4.ElapsedSeconds, Is.EqualTo(at4).Within(0.5e-6 + 1e-15), "the checkpoint stores the clock");
        Assert.That(steps[4]["elapsed_s"]!.GetValue<double>(), Is.GreaterThan(at4),
            "step 5, after the resume, continues from step 4's clock");
        // Evaluations carry the clock of the step they follow.
        foreach (var e in lines.Where(o => o["val_loss"] is not null))
        {
            var step = steps.Single(o => o["step"]!.GetValue<int>() == e["step"]!.GetValue<int>());
            Assert.That(e["elapsed_s"]!.GetValue<double>(), Is.EqualTo(step["elapsed_s"]!.GetValue<double>()));
        }
    }

    [Test]
    public void LearnsWellBelowTheUnigramEntropyOfTheData()
    {
        // The threshold comes from the data: the cross-entropy on the validation split of the best context-free model,
        // unigram frequencies fitted on the training split (add-one smoothed). A model that beats it by a wide margin uses context.
        using var data = TokenDataset.Open(DataDir);
        var counts = new double[4096];
        var buf = new int[data.Train.Length]; data.Train.Read(0, buf);
        foreach (var t in buf) counts[t]++;
        double total = buf.Length + counts.Length;
        var val = new int[data.Val.Length]; data.Val.Read(0, val);
        double unigram = val.Average(t => -Math.Log((counts[t] + 1) / total));

        var run = Path.Combine(_root, "learn");
        using var model = GptNeoX.CreateRandom(Tiny with { HiddenSize = 64, NumHeads = 4, IntermediateSize = 128 }, CpuBackend.Instance, 1);
        using var trainer = new Trainer(
            model, data,
            Options(run, 120) with { Schedule = new LrSchedule(ScheduleKind.Cosine, 1e-2f, 1e-3f, 10, 120), EvalTokens = 8192 });
        var evals = trainer.Run();
        TestContext.Out.WriteLine($"unigram cross-entropy {unigram:F3} nats, model {evals[^1].ValLoss:F3} nats");
        // A learning claim, not a rounding one: 0.3 nats below the unigram model is far outside f32 noise (~1e-5) under
        // any GEMM path, and far inside what 120 steps reach (the output line shows the margin).
        Assert.That(evals[^1].ValLoss, Is.LessThan(unigram - 0.3), $"validation loss vs unigram cross-entropy {unigram:F3}");
    }

    // ------------------------------------------------------------------ crash safety, through the real command

    static string[] PretrainArgs(string run, int steps) =>
        ["pretrain", "--data", DataDir, "--out", run, "--steps", steps.ToString(), "--seq-len", "32", "--batch-size", "4", "--layers", "2",
            "--hidden", "32",
         "--heads", "2", "--save-every", "2", "--eval-tokens", "1024", "--keep", "3", "--seed", "5"];

    static (int Exit, string Err) RunWhittle(string[] args, string? fault = null, int killAfterMs = -1)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (fault is not null) psi.Environment["WHITTLE_FAULT"] = fault;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        _ = p.StandardOutput.ReadToEndAsync();
        if (killAfterMs >= 0 && !p.WaitForExit(killAfterMs)) p.Kill(entireProcessTree: true);
        p.WaitForExit();
        return (p.ExitCode, err.Result);
    }

    static void AssertNewestCheckpointLoads(string run, int atLeastStep)
    {
        var latest = new CheckpointStore(run).Latest();
        Assert.That(latest, Is.Not.Null, "a checkpoint survives");
        Assert.That(latest!.Value.Step, Is.GreaterThanOrEqualTo(atLeastStep));
        using var m = GptNeoXCheckpoint.Load(latest.Value.Path, CpuBackend.Instance);
        Assert.That(m.Parameters.Flat.ToFloatArray().All(float.IsFinite));
    }

    [Test]
    public void KilledDuringASaveThePreviousCheckpointLoadsAndTheRunResumesExactly()
    {
        var straight = Path.Combine(_root, "cli-straight");
        Assert.That(RunWhittle(PretrainArgs(straight, 6)).Exit, Is.EqualTo(0));

        var crashed = Path.Combine(_root, "cli-crash");
        var (exit, _) = RunWhittle(PretrainArgs(crashed, 6), fault: "checkpoint-save:2");   // dies inside the step-4 save
        Assert.That(exit, Is.EqualTo(86));
        var complete = new CheckpointStore(crashed).List();
        Assert.That(complete.Select(c => c.Step), Is.EqualTo(new[] { 2 }), "the half-written step-4 directory does not count");
        AssertNewestCheckpointLoads(crashed, 2);

        Assert.That(RunWhittle([.. PretrainArgs(crashed, 6), "--resume"]).Exit, Is.EqualTo(0));
        var a = new SafeTensorsFile(Path.Combine(straight, "final", "model.safetensors"));
        var b = new SafeTensorsFile(Path.Combine(crashed, "final", "model.safetensors"));
        using (a) using (b)
            foreach (var name in a.Tensors.Keys)
                Assert.That(
                    b.ReadFloats(name), Is.EqualTo(a.ReadFloats(name)), $"{name} after crash + resume equals the uninterrupted run");
    }

    [Test]
    public void KillsAtRandomMomentsAlwaysLeaveALoadableCheckpoint()
    {
        var rng = new Rng(2024);
        var run = Path.Combine(_root, "cli-random-kill");
        Assert.That(RunWhittle(PretrainArgs(run, 2)).Exit, Is.EqualTo(0));      // a first checkpoint exists
        for (int i = 0; i < 3; i++)
        {
            RunWhittle([.. PretrainArgs(run, 40), "--resume"], killAfterMs: 1500 + rng.NextInt(2500));
            AssertNewestCheckpointLoads(run, 2);
        }
    }

    [Test]
    public void ANaNLossStopsTheRunNamingTheStep()
    {
        var bad = Path.Combine(_root, "nan-model");
        using (var m = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 3))
        {
            m.Parameters[GptNeoX.EmbedOut].AsSpan<float>()[5] = float.NaN;
            GptNeoXCheckpoint.Save(m, bad);
        }
        var (exit, err) = RunWhittle(
            ["pretrain", "--data", DataDir, "--out", Path.Combine(_root, "nan-run"), "--init", bad, "--steps", "3", "--seq-len", "16",
            "--batch-size", "2"]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("step 1").And.Contain("loss is NaN"));
    }

    [Test]
    public void ANewRunIntoADirectoryHoldingARunIsRefused()
    {
        var run = Path.Combine(_root, "cli-twice");
        Assert.That(RunWhittle(PretrainArgs(run, 2)).Exit, Is.EqualTo(0));
        var (exit, err) = RunWhittle(PretrainArgs(run, 2));
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("already holds a run").And.Contain("--resume"));
    }

    [Test]
    public void ResumingARunThatNeverCheckpointedStartsCleanMetrics()
    {
        var run = Path.Combine(_root, "cli-no-checkpoint");
        Directory.CreateDirectory(run);
        // What an interrupted first run leaves: metric lines past any checkpoint, the last one cut short.
        File.WriteAllText(Path.Combine(run, "metrics.jsonl"), "{\"step\":1,\"loss\":9.0}\n{\"step\":2,\"lo");
        Assert.That(RunWhittle([.. PretrainArgs(run, 2), "--resume"]).Exit, Is.EqualTo(0));
        var steps = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(o => o["loss"] is not null)
            .Select(o => o["step"]!.GetValue<int>());
        Assert.That(steps, Is.EqualTo(new[] { 1, 2 }));
    }
}
