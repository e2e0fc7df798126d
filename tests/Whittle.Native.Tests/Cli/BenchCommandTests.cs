using System.Text.Json.Nodes;
using Whittle.Native.Model;

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
    /// The loss is reported and checked where speed is timed: the first step's is ln V + σ²/2 for a random model (σ² =
    /// 0.02²·d, see LossCheck), within 0.5 + 4σ/√(B·T) nats; the last step's (after training on one fixed batch) no higher.
    /// tiny: V 4096, d 64 (ln V + 0.0128 = 8.3306); small: d 256.
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
        // 0.5 nats for the Gaussian approximation + 4σ/√(B·T), σ² = 0.02²·d, B·T = 32
        double tolerance = 0.5 + 4 * Math.Sqrt(0.02 * 0.02 * d / 32);
        Assert.That((double)r["loss_tolerance"]!, Is.EqualTo(tolerance).Within(1e-4));
        Assert.That((double)r["loss_initial"]!, Is.EqualTo(expected).Within(tolerance));
        Assert.That((double)r["loss"]!, Is.LessThanOrEqualTo(expected + tolerance));
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

    /// <summary>
    /// A Llama-family shape trains and evaluates under the same check: tiny-llama (V 4096, d 64, GQA 4/2 heads, tied head)
    /// has the same ln V + σ²/2, and its tied head may raise the loss by at most ln(1 + e^(a − σ²/2)/V), a = √d · 0.02 ·
    /// √(d + 4√(2d)) (LossCheck): 0.0013 nats here. FLOPs per token: 6N + 6·L·T·a with a = heads × head size.
    /// </summary>
    [Test]
    public void LlamaShapesTrainUnderTheLossCheck()
    {
        var (exit, stdout, stderr) = CliRunner.Run("bench", "train", "--config", "tiny-llama", "--batch-size", "2", "--seq-len", "16",
            "--steps", "2", "--warmup", "1", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var r = JsonNode.Parse(stdout)!.AsObject();
        Assert.That((string?)r["model_type"], Is.EqualTo("llama"));
        Assert.That((double)r["loss_initial_expected"]!, Is.EqualTo(Math.Log(4096) + 0.02 * 0.02 * 64 / 2).Within(1e-4));
        double a = Math.Sqrt(64) * 0.02 * Math.Sqrt(64 + 4 * Math.Sqrt(128));
        Assert.That((double)r["loss_tied_head_allowance"]!, Is.EqualTo(Math.Log(1 + Math.Exp(a - 0.0128) / 4096)).Within(1e-4));
        Assert.That((string?)r["loss_check"], Is.EqualTo("ok"));
        // N: non-embedding (two layers of 2·64 norm + 64·64 q + 2·64·32 k, v + 64·64 o + 3·176·64 MLP, final norm 64)
        // plus the output projection 4096·64; attention width 4 × 16 = 64
        long n = 2 * (2 * 64 + 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 176 * 64) + 64 + 4096 * 64;
        Assert.That((long)r["flops_per_token"]!, Is.EqualTo(6 * n + 6 * 2 * 16 * 64));
    }

    /// <summary>
    /// KD with either family as teacher or student: the loss is checked, and so is the memory rule peak(KD) ≤ 1.15 ×
    /// peak(CE) + the teacher's weights (both peaks are the live tensor bytes of the same process).
    /// </summary>
    [TestCase("tiny-llama", "tiny-llama")]
    [TestCase("tiny-llama", "tiny")]
    [TestCase("tiny", "tiny-llama")]
    public void KdOfEitherFamilyKeepsTheMemoryRule(string student, string teacher)
    {
        var (exit, stdout, stderr) = CliRunner.Run("bench", "kd", "--config", student, "--teacher-config", teacher, "--batch-size", "2",
            "--seq-len", "32", "--steps", "2", "--warmup", "1", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var r = JsonNode.Parse(stdout)!.AsObject();
        Assert.That((string?)r["loss_check"], Is.EqualTo("ok"), stdout);
        Assert.That((double)r["kd_over_ce_peak_excluding_teacher_weights"]!, Is.LessThanOrEqualTo(1.15), stdout);
        Assert.That((string?)r["kd_memory_rule"], Does.StartWith("ok"), stdout);
    }

    /// <summary>The check on made-up reports (tiny: expected 8.3306, tolerance 0.5 + 4·0.16/√32 = 0.6131): the initial loss is
    /// held to the bound both ways, the last only from above (training on one batch lowers it) and to being finite.</summary>
    [TestCase(8.33, 8.33, null)]
    [TestCase(8.33, 5.0, null)]
    [TestCase(9.2, 9.0, "initial loss 9.2000 is not within")]
    [TestCase(7.5, 7.5, "initial loss 7.5000 is not within")]
    [TestCase(double.NaN, 8.0, "initial loss is ")]
    [TestCase(8.33, double.PositiveInfinity, "last step's loss is ")]
    [TestCase(8.33, 9.1, "last step's loss 9.1000 is above 8.94")]
    public void TheLossCheckHoldsTheInitialLossBothWaysAndTheLastFromAbove(double initial, double last, string? problem)
    {
        var report = new JsonObject { ["mode"] = "train", ["loss_initial"] = initial, ["loss"] = last };
        string? got = Whittle.Cli.LossCheck.Apply(report, Whittle.Cli.BenchCommand.Shape("tiny"), null, 32);
        if (problem is null) Assert.That(got, Is.Null);
        else Assert.That(got, Does.StartWith(problem));
        Assert.That((string?)report["loss_check"], Is.EqualTo(got ?? "ok"));
    }

    [Test]
    public void KdRefusesVocabulariesThatDiffer()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-bench-vocab-").FullName;
        try
        {
            var config = Path.Combine(dir, "config.json");
            File.WriteAllText(config, """
                {"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "intermediate_size": 64}
                """);
            var (exit, _, stderr) = CliRunner.Run("bench", "kd", "--config", config, "--teacher-config", "tiny", "--steps", "1");
            Assert.That(exit, Is.EqualTo(1), stderr);
            Assert.That(stderr, Does.Contain("vocabularies differ"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The named Llama-family shapes are Hugging Face's: SmolLM2-135M has 134,515,008 parameters (its tied head counted
    /// once); Qwen3-0.6B 0.44B without its embedding and 0.6B in all (its model card), with 16 heads of 128 = 2d.</summary>
    [Test]
    public void HuggingFaceShapesHaveTheirPublishedSizes()
    {
        var smol = (LlamaConfig)Whittle.Cli.BenchCommand.Shape("smollm2-135m");
        Assert.That(smol.CountParameters().Total, Is.EqualTo(134_515_008));
        Assert.That((smol.HeadSize, smol.NumKeyValueHeads, smol.TieWordEmbeddings, smol.RopeTheta), Is.EqualTo((64, 3, true, 100000.0)));
        var qwen = (LlamaConfig)Whittle.Cli.BenchCommand.Shape("qwen3-0.6b");
        var count = qwen.CountParameters();
        Assert.That((Math.Round(count.NonEmbedding / 1e9, 2), Math.Round(count.Total / 1e9, 1)), Is.EqualTo((0.44, 0.6)));
        Assert.That((qwen.QkNorm, qwen.HeadSize * qwen.NumHeads, qwen.NumKeyValueHeads), Is.EqualTo((true, 2048, 8)));
    }

    [Test]
    public void UnknownGemmIsRejectedWithTheChoices()
    {
        var (exit, _, stderr) = CliRunner.Run("bench", "eval", "--config", "tiny", "--gemm", "mkl");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(
            stderr, Does.Contain("--gemm").And.Contain("mkl")
                .And.Contain("auto, ours, openblas, ours-scalar, ours-avx2, ours-avx512, ours-avx512bf16"));
    }
}
