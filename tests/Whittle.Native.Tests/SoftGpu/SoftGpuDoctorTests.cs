using System.Text.Json.Nodes;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.SoftGpu;

/// <summary>
/// <c>whittle doctor --model</c> (op parity, whole-model parity, allocator steady state) run by the real CLI on the
/// software GPU, once per way of shaking the emulation: the default, threads resumed in random order, reverse order
/// with guard pages and the exact allocator and cuBLASLt offering no algorithm (the plain cuBLAS + bias kernel path),
/// deferred streams, and race mode. A child process per variant, because the knobs are read when the driver loads.
/// Skipped unless WHITTLE_CUDA_LIB_DIR points at the software GPU (CI builds it).
/// </summary>
[NonParallelizable]
public class SoftGpuDoctorTests
{
    static readonly Dictionary<string, Dictionary<string, string?>> Variants = new()
    {
        ["default"] = new(),
        ["random order"] = new() { ["SOFTGPU_ORDER"] = "random", ["SOFTGPU_SEED"] = "7" },
        ["reverse order, guard pages, exact allocator, no cuBLASLt algorithm"] = new()
        {
            ["SOFTGPU_ORDER"] = "reverse", ["SOFTGPU_GUARD"] = "1", ["WHITTLE_CUDA_ALLOCATOR"] = "exact", ["SOFTGPU_LT_NO_ALGO"] = "1",
        },
        ["deferred streams"] = new() { ["SOFTGPU_DEFER"] = "1" },
        ["race mode"] = new() { ["SOFTGPU_RACE"] = "1" },
    };

    static IEnumerable<string> VariantNames => Variants.Keys;

    [TestCaseSource(nameof(VariantNames))]
    public void DoctorModelPasses(string variant)
    {
        SoftGpuKernel.RequireSoftwareGpu();
        var env = new Dictionary<string, string?>(Variants[variant])
        {
            ["WHITTLE_CACHE_DIR"] = Path.Combine(Path.GetTempPath(), "whittle-softgpu-doctor-cache"),
        };
        foreach (var knob in new[] { "SOFTGPU_ORDER", "SOFTGPU_SEED", "SOFTGPU_GUARD", "SOFTGPU_RACE", "SOFTGPU_DEFER",
            "SOFTGPU_LT_NO_ALGO", "WHITTLE_CUDA_ALLOCATOR" })
            env.TryAdd(knob, null);   // only this variant's knobs
        var (exit, stdout, stderr) = CliRunner.RunWith(null, null, env, "doctor", "--model", "--json");
        Assert.That(exit, Is.Zero, $"{variant}:\n{stdout}\n{stderr}");
        var report = JsonNode.Parse(stdout)!.AsObject();
        Assert.That((bool)report["ok"]!, Is.True);
        Assert.That(report["software_gpu"]?.ToString(), Does.StartWith("softgpu"), "doctor says it ran on the software GPU");
        Assert.That(report["parity"]!.AsArray(), Has.Count.GreaterThan(50), "every op's parity cases ran");
        Assert.That((int)report["parity_failed"]!, Is.Zero);
        Assert.That(report["model_parity"]!.AsArray(), Has.Count.GreaterThan(10), "whole-model parity ran");
        Assert.That((int)report["model_parity_failed"]!, Is.Zero);
        var modelCases = report["model_parity"]!.AsArray().Select(r => r!["case"]!.ToString()).Distinct().ToList();
        foreach (var family in new[] { "llama GQA", "qwen3 MQA", "qwen3 bf16 tensor-core attention" })
            Assert.That(modelCases, Has.Some.StartsWith(family), $"the Llama family's whole-model parity ran ({family})");
        var ops = report["parity"]!.AsArray().Select(r => r!["op"]!.ToString()).ToHashSet();
        Assert.That(ops, Is.SupersetOf(new[] { "RmsNormForward", "RmsNormBackward", "SwiGluForward", "SwiGluBackward" }));
        if (Variants[variant].ContainsKey("WHITTLE_CUDA_ALLOCATOR"))
            Assert.That(report["steady_state_status"]?.ToString(), Does.Contain("exact"));
        else
            Assert.That((bool)report["steady_state"]!["passed"]!, Is.True);
        Assert.That(stderr, Does.Not.Contain("[softgpu]"), "no diagnostic from the emulator");
    }
}
