using System.Text.Json.Nodes;

namespace Whittle.Native.Tests.Cli;

// Policy: `whittle bench` is checked for what it reports, never for how fast it is: the per-op profile accounts for the
// step's MatMuls with the shapes the model implies, the GEMM choice is reported and validated, bad options fail clearly.
public class BenchCommandTests
{
    [Test]
    public void ProfileListsTheModelsMatMulsAndTheGemmInUse()
    {
        // tiny: V 4096, d 64, 2 layers, MLP 256; B·T = 2·16 = 32 tokens. The output head's forward is (32, 4096) over k = 64.
        var (exit, stdout, stderr) = CliRunner.Run("bench", "eval", "--config", "tiny", "--batch-size", "2", "--seq-len", "16",
            "--steps", "2", "--warmup", "1", "--gemm", "ours", "--profile", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var r = JsonNode.Parse(stdout)!.AsObject();
        Assert.That((string?)r["gemm"], Is.EqualTo("ours"));
        Assert.That((int)r["threads"]!, Is.EqualTo(Environment.ProcessorCount));
        var ops = r["profile"]!.AsArray().Select(o => o!.AsObject()).ToDictionary(o => (string)o["op"]!);
        Assert.That(ops.Keys, Does.Contain("MatMul 32x4096x64 NT"), "output head forward, no bias");
        Assert.That(ops.Keys, Does.Contain("MatMul 32x192x64 NT +bias"), "fused qkv forward with its bias");
        Assert.That((double)ops["MatMul 32x192x64 NT +bias"]["calls_per_step"]!, Is.EqualTo(2), "one qkv per layer");
        Assert.That(ops.Keys, Has.None.Contains("AdamW"), "eval runs no optimizer");
        double share = ops.Values.Sum(o => (double)o["share_of_step"]!);
        Assert.That(share, Is.GreaterThan(0).And.LessThan(1.5), "op times are parts of the step's time");
    }

    /// <summary>
    /// The loss is reported and checked where speed is timed: ln V + σ²/2 for a random model (σ² = 0.02²·d, see
    /// LossCheck), within 0.5 + 4σ/√(B·T) nats. tiny: V 4096, d 64 (ln V + 0.0128 = 8.3306); small: d 256.
    /// </summary>
    [TestCase("train", "tiny", 64)]
    [TestCase("eval", "small", 256)]
    public void TheJsonCarriesACheckedLoss(string mode, string config, int d)
    {
        var (exit, stdout, stderr) = CliRunner.Run("bench", mode, "--config", config, "--batch-size", "2", "--seq-len", "16", "--steps",
            "2", "--warmup", "1", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var r = JsonNode.Parse(stdout)!.AsObject();
        double expected = Math.Log(4096) + 0.02 * 0.02 * d / 2;
        Assert.That((double)r["loss_expected"]!, Is.EqualTo(expected).Within(1e-4));
        // 0.5 nats for the timed steps' drift + 4σ/√(B·T), σ² = 0.02²·d, B·T = 32
        double tolerance = 0.5 + 4 * Math.Sqrt(0.02 * 0.02 * d / 32);
        Assert.That((double)r["loss_tolerance"]!, Is.EqualTo(tolerance).Within(1e-4));
        Assert.That((double)r["loss"]!, Is.EqualTo(expected).Within(tolerance));
        Assert.That((string?)r["loss_check"], Is.EqualTo("ok"));
    }

    [Test]
    public void KdReportsTheDistillationLoss()
    {
        var (exit, stdout, stderr) = CliRunner.Run("bench", "kd", "--config", "tiny", "--teacher-config", "tiny", "--batch-size", "2",
            "--seq-len", "16", "--steps", "1", "--warmup", "0", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var r = JsonNode.Parse(stdout)!.AsObject();
        // 0.5·CE + 0.5·KL(teacher || student), two random d = 64 models: 0.5·(ln 4096 + 0.0128) + 0.5·0.0256
        Assert.That((double)r["loss_expected"]!, Is.EqualTo(0.5 * (Math.Log(4096) + 0.0128) + 0.5 * 0.0256).Within(1e-4));
        Assert.That((string?)r["loss_check"], Is.EqualTo("ok"));
    }

    [Test]
    public void UnknownGemmIsRejectedWithTheChoices()
    {
        var (exit, _, stderr) = CliRunner.Run("bench", "eval", "--config", "tiny", "--gemm", "mkl");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(
            stderr, Does.Contain("--gemm").And.Contain("mkl").And.Contain("auto, ours, openblas, ours-scalar, ours-avx2, ours-avx512"));
    }
}
