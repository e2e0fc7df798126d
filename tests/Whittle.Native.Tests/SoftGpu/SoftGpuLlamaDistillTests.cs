using System.Text.Json.Nodes;
using Whittle.Native.Model;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Verification;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// `distill` with a Llama GQA teacher and a Qwen3 MQA student on the software GPU against the same run on the CPU (the
/// ground truth): step 1 (the same initial weights and batch) gives the same CE and KD, and the trace shows the
/// distillation kernel and the Llama family's ran. Skipped unless WHITTLE_CUDA_LIB_DIR points at the software GPU.
/// Tolerances: CE is the whole-model loss (ModelParity.LossTolerance). The KD compares two models' distributions, so
/// it moves by at most the sum of both models' logit differences, each within ModelParity.LogitsTolerance of the
/// logits' scale (≲ 40 for this ×100-head teacher): ≲ 2·1e-5·40 = 8e-4 nats on a KD of several nats, 2e-4 relative.
/// </summary>
[NonParallelizable]
public class SoftGpuLlamaDistillTests
{
    [Test]
    public void DistillALlamaPairOnTheGpuMatchesTheCpu()
    {
        SoftGpuKernel.RequireSoftwareGpu();
        var root = Directory.CreateTempSubdirectory("whittle-softgpu-llama-kd-").FullName;
        try
        {
            var teacher = Path.Combine(root, "teacher");
            OpinionatedTeacher.Save(new LlamaConfig { Family = "llama", VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 4,
                NumKeyValueHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 }, 9, teacher);
            JsonNode StepOne(string device, out string stderr)
            {
                var env = new Dictionary<string, string?> { ["SOFTGPU_TRACE"] = "1" };
                var run = Path.Combine(root, device);
                var (exit, stdout, err) = CliRunner.RunWith(null, null, env, "distill", "--teacher", teacher, "--family", "qwen3",
                    "--kv-heads", "1", "--layers", "1", "--hidden", "32", "--heads", "2", "--data", TestData.AustenSlice, "--seq-len", "16",
                    "--batch-size", "2", "--steps", "1", "--eval-tokens", "64", "--teacher-precision", "fp32", "--device", device,
                    "--out", run);
                Assert.That(exit, Is.Zero, stdout + err);
                stderr = err;
                return File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).First(o => o["kd"] is not null);
            }
            var cpu = StepOne("cpu", out _);
            var gpu = StepOne("cuda", out var trace);
            double Rel(string key) => Math.Abs(gpu[key]!.GetValue<double>() / cpu[key]!.GetValue<double>() - 1);
            TestContext.Out.WriteLine($"cpu {cpu.ToJsonString()}\ngpu {gpu.ToJsonString()}");
            Assert.That(cpu["kd"]!.GetValue<double>(), Is.GreaterThan(1), "a real KD signal");
            Assert.That(Rel("ce"), Is.LessThan(ModelParity.LossTolerance), "CE");
            Assert.That(Rel("kd"), Is.LessThan(2e-4), "KD");
            foreach (var kernel in new[] { "distillation", "rmsnorm_forward", "swiglu_forward", "attention_forward" })
                Assert.That(trace, Does.Contain($"launch {kernel}"), kernel);
        }
        finally { Directory.Delete(root, true); }
    }
}
