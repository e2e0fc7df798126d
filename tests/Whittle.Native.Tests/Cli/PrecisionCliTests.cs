using System.Text.Json.Nodes;
using Whittle.Native.Cpu;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Cli;

/// <summary>--precision and --teacher-precision: checked at parse time, applied, and recorded in metrics.jsonl and the JSON
/// summary.</summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class PrecisionCliTests
{
    static string _root = "";
    static string Teacher => Path.Combine(_root, "teacher");

    [OneTimeSetUp]
    public void MakeTeacher()
    {
        _root = Directory.CreateTempSubdirectory("whittle-precision-").FullName;
        var tiny = new GptNeoXConfig { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64,
            MaxPositionEmbeddings = 64 };
        using var m = GptNeoX.CreateRandom(tiny, CpuBackend.Instance, 9);
        GptNeoXCheckpoint.Save(m, Teacher, extraFiles: [TestData.TokenizerPath]);
    }

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static string[] Common(string run) =>
        ["--data", TestData.AustenSlice, "--out", run, "--steps", "2", "--seq-len", "16", "--batch-size", "2", "--eval-tokens", "256",
         "--layers", "1", "--hidden", "32", "--heads", "2", "--json"];

    static JsonObject RunInfo(string run) =>
        File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).Single(o =>
            o["precision"] is not null);

    [TestCase(null, "fp32")]      // the default on the CPU: bf16 would only be a slower emulation
    [TestCase("bf16", "bf16")]
    public void DistillRecordsBothPrecisions(string? teacherFlag, string teacherExpected)
    {
        var run = Path.Combine(_root, "distill-" + (teacherFlag ?? "default"));
        string[] flags = teacherFlag is null ? [] : ["--teacher-precision", teacherFlag];
        var (exit, stdout, err) = CliRunner.Run(["distill", "--teacher", Teacher, .. Common(run), "--precision", "bf16", .. flags]);
        Assert.That(exit, Is.EqualTo(0), err);
        var info = RunInfo(run);
        Assert.That(info["step"]!.GetValue<int>(), Is.EqualTo(0));
        Assert.That(info["precision"]!.GetValue<string>(), Is.EqualTo("bf16"));
        Assert.That(info["teacher_precision"]!.GetValue<string>(), Is.EqualTo(teacherExpected));
        var summary = JsonNode.Parse(stdout)!;
        Assert.That(summary["precision"]!.GetValue<string>(), Is.EqualTo("bf16"));
        Assert.That(summary["teacher_precision"]!.GetValue<string>(), Is.EqualTo(teacherExpected));
    }

    [Test]
    public void PretrainDefaultsToFp32()
    {
        var run = Path.Combine(_root, "pretrain");
        var (exit, stdout, err) = CliRunner.Run(["pretrain", .. Common(run)]);
        Assert.That(exit, Is.EqualTo(0), err);
        Assert.That(RunInfo(run)["precision"]!.GetValue<string>(), Is.EqualTo("fp32"));
        Assert.That(JsonNode.Parse(stdout)!["teacher_precision"], Is.Null, "no teacher");
    }

    [TestCase("pretrain", "--precision")]
    [TestCase("distill", "--teacher-precision")]
    [TestCase("salt", "--teacher-precision")]
    public void AnUnknownPrecisionIsRefusedBeforeAnyWork(string command, string flag)
    {
        var run = Path.Combine(_root, "bad-" + Guid.NewGuid().ToString("N"));
        string[] teacher = command switch { "distill" => ["--teacher", Teacher],
            "salt" => ["--small", Teacher, "--kd-steps", "1"], _ => [] };
        var (exit, _, err) = CliRunner.Run([command, .. teacher, .. Common(run), flag, "fp16"]);
        Assert.That(exit, Is.Not.EqualTo(0));
        Assert.That(err, Does.Contain("fp16").And.Contain("bf16"));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }

    [Test]
    public void EvalInBf16IsCloseToFp32ButNotEqual()
    {
        var dir = CliRunner.Fixture("tiny-neox");
        double Loss(string precision)
        {
            var (exit, stdout, err) = CliRunner.Run("eval", "--model", dir, "--ids", Path.Combine(_root, "ids.txt"), "--seq-len", "16",
                "--precision", precision, "--json");
            Assert.That(exit, Is.EqualTo(0), err);
            var o = JsonNode.Parse(stdout)!;
            Assert.That(o["precision"]!.GetValue<string>(), Is.EqualTo(precision));
            return o["loss"]!.GetValue<double>();
        }
        File.WriteAllText(Path.Combine(_root, "ids.txt"), string.Join(" ", Enumerable.Range(0, 64).Select(i => (i * 37) % 96)));
        double f32 = Loss("fp32"), bf16 = Loss("bf16");
        // The flag reaches the model: a different loss, and not wildly so (the numerics themselves are Model/Bf16Tests' subject).
        // bf16 rounds each GEMM operand to 8 significant bits (u = 2^-8); Bf16Tests' budget for this 2-layer fixture's
        // logits is 2·G·sqrt(2/3)·u with G = 4L + 1 = 9 GEMMs: ≈ 5.7% of their RMS, and the loss moves by a change of that
        // order: 6% is that budget, not a measured value, and it does not depend on which f32 GEMM runs underneath.
        Assert.That(Math.Abs(bf16 - f32), Is.GreaterThan(0).And.LessThan(0.06 * Math.Abs(f32)));
    }
}
