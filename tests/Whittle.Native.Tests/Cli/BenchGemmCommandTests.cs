using System.Text.Json.Nodes;

namespace Whittle.Native.Tests.Cli;

/// <summary>`whittle bench gemm` and `bench eval --ceiling` on the CPU at a tiny shape: the ceiling is the larger of the
/// square GEMM's rate and the step's linear GEMMs' combined rate (total FLOPs over total time, recomputed here from the
/// reported shapes), the shapes are the 15 GEMMs of a GPT-NeoX step with FLOPs from the shape, and the fraction of the
/// ceiling is tokens/s × FLOPs per token over it. No speed is asserted.</summary>
public class BenchGemmCommandTests
{
    static JsonNode Run(params string[] args)
    {
        var (exit, stdout, stderr) = CliRunner.Run(["bench", .. args, "--device", "cpu", "--config", "tiny", "--batch-size", "2",
            "--seq-len", "16", "--square", "64", "--json"]);
        Assert.That(exit, Is.EqualTo(0), stderr);
        return JsonNode.Parse(stdout)!;
    }

    static void CheckCeiling(JsonNode c)
    {
        var shapes = c["shapes"]!.AsArray();
        Assert.That(shapes, Has.Count.EqualTo(15), "forward, dx and dW of qkv, dense, MLP up, MLP down and the head");
        double flops = 0, ms = 0;
        foreach (var s in shapes)
        {
            // tiny: N = 32 rows, d 64, MLP 256, V 4096; each of the three GEMMs of a linear layer does 2·N·out·in FLOPs
            string name = s!["case"]!.GetValue<string>();
            double f = name.StartsWith("query_key_value") ? 2.0 * 32 * 192 * 64 : name.StartsWith("embed_out") ? 2.0 * 32 * 4096 * 64
                : name.StartsWith("attention.dense") ? 2.0 * 32 * 64 * 64 : 2.0 * 32 * 256 * 64;
            int calls = s["calls_per_train_step"]!.GetValue<int>();
            Assert.That(calls, Is.EqualTo(name.StartsWith("embed_out") ? 1 : 2), name);
            Assert.That(s["ms"]!.GetValue<double>(), Is.GreaterThan(0), name);
            flops += f * calls; ms += s["ms"]!.GetValue<double>() * calls;
        }
        double square = c["square_gflops"]!.GetValue<double>(), model = c["model_shapes_gflops"]!.GetValue<double>();
        Assert.That(c["square_size"]!.GetValue<int>(), Is.EqualTo(64));
        // GFLOP/s, not TFLOP/s: any CPU sustains more than 0.05 GFLOP/s (the report's rounding) on a 64³ or larger GEMM
        Assert.That(square, Is.GreaterThan(0.05)); Assert.That(model, Is.GreaterThan(0.05));
        // the report rounds ms to 3 decimals and rates to 0.1: a tiny GEMM's ms can lose up to 0.0005 of a few hundredths
        Assert.That(model, Is.EqualTo(flops / (ms * 1e6)).Within(5).Percent);
        Assert.That(c["gflops"]!.GetValue<double>(), Is.EqualTo(Math.Max(square, model)));
        Assert.That(c["source"]!.GetValue<string>(), Is.EqualTo(square >= model ? "square 64³" : "the model's GEMM shapes"));
    }

    [Test]
    public void GemmReportsTheCeilingAndItsParts() => CheckCeiling(Run("gemm")["gemm_ceiling"]!);

    [Test]
    public void EvalWithCeilingReportsItsFractionOfIt()
    {
        var r = Run("eval", "--steps", "1", "--warmup", "0", "--ceiling");
        CheckCeiling(r["gemm_ceiling"]!);
        double achieved = r["tokens_per_second"]!.GetValue<double>() * r["flops_per_token"]!.GetValue<long>() / 1e9;
        // the report rounds the fraction to 4 decimals (≤ 5e-5), tokens/s to 0.1 and the ceiling to 0.1 GFLOP/s (relative ≤ 0.5%)
        double expected = achieved / r["gemm_ceiling"]!["gflops"]!.GetValue<double>();
        Assert.That(r["fraction_of_gemm_ceiling"]!.GetValue<double>(), Is.EqualTo(expected).Within(5e-5 + 0.005 * expected));
        Assert.That(r["peak_rss_bytes"]!.GetValue<long>(), Is.GreaterThan(r["peak_bytes"]!.GetValue<long>()),
            "the process's resident set holds its tensors");
    }

    [Test]
    public void CeilingOnKdIsAUserError()
    {
        var (exit, _, stderr) = CliRunner.Run("bench", "kd", "--device", "cpu", "--config", "tiny", "--ceiling");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("--ceiling applies to train and eval only"));
    }
}
