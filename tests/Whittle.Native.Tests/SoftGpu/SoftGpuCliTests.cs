using System.Text.Json.Nodes;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Verification;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// Commands with --device cuda on the software GPU, where its launch trace (SOFTGPU_TRACE=1) shows which kernels ran.
/// Skipped unless WHITTLE_CUDA_LIB_DIR points at the software GPU (CI builds it).
/// </summary>
[NonParallelizable]
public class SoftGpuCliTests
{
    static string HeadSize64Config()
    {
        var path = Path.Combine(Path.GetTempPath(), $"whittle-d64-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """
            {"model_type":"gpt_neox","architectures":["GPTNeoXForCausalLM"],"vocab_size":256,"hidden_size":128,
             "num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":256,"max_position_embeddings":64,
             "rotary_pct":0.25,"rotary_emb_base":10000,"use_parallel_residual":true,"hidden_act":"gelu",
             "layer_norm_eps":1e-5,"tie_word_embeddings":false}
            """);
        return path;
    }

    static string BenchTrace(string? attentionEnv)
    {
        SoftGpuKernel.RequireSoftwareGpu();
        var config = HeadSize64Config();
        try
        {
            var env = new Dictionary<string, string?> { ["SOFTGPU_TRACE"] = "1", ["WHITTLE_ATTENTION"] = attentionEnv };
            var (exit, stdout, stderr) = CliRunner.RunWith(
                null, null, env, "bench", "train", "--config", config, "--batch-size", "1", "--seq-len", "64",
                "--steps", "1", "--warmup", "0", "--device", "cuda", "--precision", "bf16", "--profile", "--json");
            Assert.That(exit, Is.Zero, stdout + stderr);
            Assert.That(stdout, Does.Contain("AttentionForward"), "the profile has the attention rows");
            return stderr;
        }
        finally { File.Delete(config); }
    }

    [Test]
    public void ProfiledBf16TrainingRunsTheTensorCoreAttention()
    {
        // The profiler wraps the backend; the attention precision must still reach the CUDA backend (it travelled
        // by a downcast to CudaBackend before, which the wrapper defeated: the profile timed the f32 kernels).
        var trace = BenchTrace(null);
        Assert.That(trace, Does.Contain("launch attention_forward_mma_d64 "));
        Assert.That(trace, Does.Contain("launch attention_backward_dq_mma_d64 ").And.Contain("launch attention_backward_dkdv_mma_d64 "));
        Assert.That(trace, Does.Not.Contain("launch attention_forward "));
    }

    /// <summary>
    /// pretrain of a Qwen3 with one kv head (QK-norm, SwiGLU, MQA) on the software GPU and on the CPU from the same
    /// initial weights: the first step's loss (the forward of those weights) agrees to the whole-model loss tolerance, the
    /// GPU run's loss falls, and the trace shows the Llama family's kernels, grouped-query attention included, ran.
    /// </summary>
    [Test]
    public void PretrainAQwen3WithOneKvHeadOnTheGpuMatchesTheCpu()
    {
        SoftGpuKernel.RequireSoftwareGpu();
        var root = Path.Combine(Path.GetTempPath(), $"whittle-softgpu-qwen3-{Guid.NewGuid():N}");
        try
        {
            List<double> Losses(string device, out string stderr)
            {
                var env = new Dictionary<string, string?> { ["SOFTGPU_TRACE"] = "1" };
                var (exit, stdout, err) = CliRunner.RunWith(null, null, env, "pretrain", "--family", "qwen3", "--kv-heads", "1",
                    "--data", TestData.AustenSlice, "--layers", "2", "--hidden", "32", "--heads", "4", "--seq-len", "32",
                    "--batch-size", "4", "--steps", "12", "--lr", "0.01", "--eval-tokens", "256", "--device", device,
                    "--out", Path.Combine(root, device), "--json");
                Assert.That(exit, Is.Zero, stdout + err);
                stderr = err;
                return File.ReadLines(Path.Combine(root, device, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
                    .Where(o => o["loss"] is not null).Select(o => o["loss"]!.GetValue<double>()).ToList();
            }
            var cpu = Losses("cpu", out _);
            var gpu = Losses("cuda", out var trace);
            Assert.That(Math.Abs(gpu[0] / cpu[0] - 1), Is.LessThan(ModelParity.LossTolerance), "the first step's loss");
            Assert.That(gpu[^1], Is.LessThan(gpu[0] - 0.5), "the loss falls on the GPU");
            string[] kernels = ["rmsnorm_forward", "rmsnorm_backward_input", "rmsnorm_backward_partials", "rmsnorm_backward_weight",
                "swiglu_forward", "swiglu_backward", "attention_forward", "attention_backward_dkdv"];
            foreach (var kernel in kernels)
                Assert.That(trace, Does.Contain($"launch {kernel} "), kernel);
        }
        finally { if (Directory.Exists(root)) Directory.Delete(root, true); }
    }

    [Test]
    public void TheF32AttentionOptOutIsHonoured()
    {
        var trace = BenchTrace("f32");
        Assert.That(trace, Does.Contain("launch attention_forward "));
        Assert.That(trace, Does.Not.Contain("_mma_"));
    }
}
