using Whittle.Native.Tests.Cli;

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

    [Test]
    public void TheF32AttentionOptOutIsHonoured()
    {
        var trace = BenchTrace("f32");
        Assert.That(trace, Does.Contain("launch attention_forward "));
        Assert.That(trace, Does.Not.Contain("_mma_"));
    }
}
