using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Tests.Cli;

/// <summary>`whittle distill` and `whittle salt` on real data: bad input is refused before any work; SALT switches from KD to CE at
/// n_KD.</summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class DistillAndSaltCommandTests
{
    static string _root = "";
    static string Teacher => Path.Combine(_root, "teacher");

    static GptNeoXConfig Tiny =>
        new() { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    [OneTimeSetUp]
    public void MakeTeacher()
    {
        _root = Directory.CreateTempSubdirectory("whittle-kd-").FullName;
        using var m = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 9);
        GptNeoXCheckpoint.Save(m, Teacher, extraFiles: [TestData.TokenizerPath]);
    }

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static string[] Common(string run, int steps) =>
        ["--data", TestData.AustenSlice, "--out", run, "--steps", steps.ToString(), "--seq-len", "16", "--batch-size", "2",
            "--eval-tokens", "256",
         "--layers", "1", "--hidden", "32", "--heads", "2"];

    [TestCase("--temperature", "0", "--temperature must be > 0")]
    [TestCase("--temperature", "-1", "--temperature must be > 0")]
    [TestCase("--loss", "top-k", "--top-k 0", "--top-k", "0")]
    [TestCase("--loss", "top-k", "exceeds the vocabulary", "--top-k", "5000")]
    [TestCase("--loss", "cosine", "unknown --loss 'cosine'")]
    public void DistillRefusesBadSettingsBeforeAnyWork(string flag, string value, string message, params string[] more)
    {
        var run = Path.Combine(_root, "bad-" + Guid.NewGuid().ToString("N"));
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher", Teacher, .. Common(run, 2), flag, value, .. more]);
        Assert.That(exit, Is.EqualTo(1), err);
        Assert.That(err, Does.Contain(message.Replace("--top-k 0", "--top-k must be at least 1")));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }

    [Test]
    public void DistillRefusesATeacherWithAnotherTokenizer()
    {
        var other = Path.Combine(_root, "other-tok-teacher");
        using (var m = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 1))
            GptNeoXCheckpoint.Save(m, other, extraFiles: [Path.Combine(CliRunner.Fixture("tokenizers"), "gpt2", "tokenizer.json")]);
        var run = Path.Combine(_root, "tok-mismatch");
        var (exit, _, err) = CliRunner.Run(["distill", "--teacher", other, .. Common(run, 2)]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("tokenizer"));
        Assert.That(Directory.Exists(run), Is.False);
    }

    [Test]
    public void DistillRefusesAStudentWithAnotherVocabulary()
    {
        var student = Path.Combine(_root, "small-vocab-student");
        using (var m = GptNeoX.CreateRandom(Tiny with { VocabSize = 5000 }, CpuBackend.Instance, 1)) GptNeoXCheckpoint.Save(m, student);
        var (exit, _, err) = CliRunner.Run(
            ["distill", "--teacher", Teacher, "--student", student, .. Common(Path.Combine(_root, "vocab"), 2)]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("vocabularies differ"));
    }

    [TestCase("--omega", "1.5", "--omega must be in [0, 1]")]
    [TestCase("--kd-steps", "9", "--kd-steps (9) must be in [0, 4]")]
    [TestCase("--schedule", "cosine", "unknown --schedule 'cosine'")]
    public void SaltRefusesBadSettingsBeforeAnyWork(string flag, string value, string message)
    {
        var run = Path.Combine(_root, "salt-bad-" + Guid.NewGuid().ToString("N"));
        string[] kd = flag == "--kd-steps" ? [] : ["--kd-steps", "2"];
        string[] args = ["salt", "--small", Teacher, .. Common(run, 4), .. kd, flag, value];
        var (exit, _, err) = CliRunner.Run(args);
        Assert.That(exit, Is.EqualTo(1), err);
        Assert.That(err, Does.Contain(message));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }

    [Test]
    public void SaltWeightsFollowEachSchedule()
    {
        var step = SaltWeights.Create(SaltSchedule.Step, 0.4f, 4, 10);
        var linear = SaltWeights.Create(SaltSchedule.Linear, 0.4f, 4, 10);
        var ratio = SaltWeights.Create(SaltSchedule.LinearRatio, 0.4f, 4, 10);
        Assert.That(step(1), Is.EqualTo(((float, float)?)(0.6f, 0.4f)));
        Assert.That(step(4), Is.EqualTo(((float, float)?)(0.6f, 0.4f)));
        Assert.That(step(5), Is.Null, "plain CE after n_KD");
        // f32 schedule arithmetic (a few operations on values ≤ 1): 1e-6 is ~10 roundings of 2^-24.
        Assert.That(linear(1)!.Value.Beta, Is.EqualTo(0.4f).Within(1e-6));
        Assert.That(linear(3)!.Value.Beta, Is.EqualTo(0.2f).Within(1e-6), "halfway through the KD phase, half of ω");
        Assert.That(linear(3)!.Value.Alpha, Is.EqualTo(0.8f).Within(1e-6));
        Assert.That(ratio(3)!.Value, Is.EqualTo((1f, 0.2f)));
        Assert.That(linear(5), Is.Null);
    }

    [Test]
    public void SaltUsesTheSmallModelExactlyForTheFirstKdStepsAndKeepsMilestones()
    {
        var run = Path.Combine(_root, "salt-run");
        var (exit, _, err) = CliRunner.Run(["salt", "--small", Teacher, .. Common(run, 10), "--kd-steps", "3", "--omega", "0.5"]);
        Assert.That(exit, Is.EqualTo(0), err);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        var steps = lines.Where(o => o["loss"] is not null).ToList();
        Assert.That(steps.Where(o => o["kd"] is not null).Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2, 3 }));
        // metrics.jsonl holds full doubles; the loss is the f32 weighted mean of the same per-row parts, so only f32
        // rounding of ω·KD + (1−ω)·CE over the rows (values ~5, 32 rows: ≲ 32·5·2^-24 ≈ 1e-5) separates them: 1e-4.
        foreach (var o in steps.Where(o => o["kd"] is not null))
            Assert.That(
                o["loss"]!.GetValue<double>(),
                Is.EqualTo(0.5 * o["ce"]!.GetValue<double>() + 0.5 * o["kd"]!.GetValue<double>()).Within(1e-4), "(1−ω)·CE + ω·KL");
        var evalSteps = lines.Where(o => o["val_loss"] is not null).Select(o => o["step"]!.GetValue<int>());
        Assert.That(evalSteps, Is.EquivalentTo(new[] { 3, 7, 10 }), "evaluated at the switch, 70% and 100%");
        var kept = new CheckpointStore(run).List().Select(c => c.Step);
        Assert.That(kept, Is.SupersetOf(new[] { 3, 7, 10 }), "milestone checkpoints are never pruned");
    }

    [Test]
    public void SelectedWindowsFeedOnlyTheKdPhase()
    {
        using var data = TokenDataset.Open(TestData.AustenSlice);
        using var model = GptNeoX.CreateRandom(Tiny, CpuBackend.Instance, 4);
        long[] starts = [170, 17 * 40];
        var windows = starts.Select(s => { var w = new int[17]; data.Train.Read(s, w); return w[..16]; }).ToList();
        var seen = new List<(int Step, int[] Row)>();
        var options = new TrainOptions
        {
            RunDir = Path.Combine(_root, "selected"), SeqLen = 16, MicroBatch = 3, Steps = 4, EvalTokens = 64, Seed = 2,
            Schedule = new LrSchedule(ScheduleKind.Constant, 1e-3f, 1e-3f, 0, 4), SelectedWindows = starts, SelectedUntilStep = 2,
        };
        using var trainer = new Trainer(model, data, options);
        trainer.Run((tape, inputs, targets, step) =>
        {
            var ids = inputs.ToIntArray();
            for (int r = 0; r < 3; r++) seen.Add((step, ids[(r * 16)..((r + 1) * 16)]));
            return (model.Loss(tape, inputs, targets), null, null);
        });
        foreach (var (step, row) in seen.Where(s => s.Step <= 2))
            Assert.That(windows.Any(w => w.SequenceEqual(row)), $"step {step}: a row outside the selection");
        Assert.That(seen.Where(s => s.Step > 2).Any(s => !windows.Any(w => w.SequenceEqual(s.Row))), "after the KD phase, the whole split");
    }

    [Test]
    public void SaltRefusesASelectionScoredOnOtherData()
    {
        var sel = Path.Combine(_root, "sel.json");
        var made = CliRunner.Run("salt-select", "--small", Teacher, "--data", TestData.AustenSlice, "--top-k", "10", "--keep", "0.5",
            "--seq-len", "16", "--max-sequences", "20", "--out", sel);
        Assert.That(made.Exit, Is.EqualTo(0), made.Stderr);
        var ok = CliRunner.Run(
            ["salt", "--small", Teacher, .. Common(Path.Combine(_root, "sel-ok"), 3), "--kd-steps", "2", "--select", sel]);
        Assert.That(ok.Exit, Is.EqualTo(0), ok.Stderr);

        var o = JsonNode.Parse(File.ReadAllText(sel))!;
        o["dataset_sha256"] = new string('0', 64);
        var tampered = Path.Combine(_root, "sel-other.json");
        File.WriteAllText(tampered, o.ToJsonString());
        var run = Path.Combine(_root, "sel-bad");
        var (exit, _, err) = CliRunner.Run(["salt", "--small", Teacher, .. Common(run, 3), "--kd-steps", "2", "--select", tampered]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain("scored on other data"));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }
}
