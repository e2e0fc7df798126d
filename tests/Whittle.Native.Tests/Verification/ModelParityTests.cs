using System.Reflection;
using System.Text.Json.Nodes;
using Whittle.Native.Verification;
using Whittle.Native.Cpu;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.Verification;

/// <summary>
/// The whole-model comparison (<see cref="ModelParity"/>, run by `whittle doctor --model` on a GPU machine) exercised
/// without a GPU: the CPU against itself agrees exactly, and a backend with a planted backward-only bug is caught in
/// the gradients while its logits still pass.
/// </summary>
public class ModelParityTests
{
    [Test]
    public void CpuAgainstItselfAgreesExactlyOnEveryTensor()
    {
        using var a = new CpuBackend(); using var b = new CpuBackend();
        var results = new ModelParity(a, b).Run();
        Assert.That(results.Select(r => r.Op).Distinct().Count(), Is.EqualTo(ModelParity.Cases.Count));
        // per case: logits, loss, then a gradient and an AdamW result for each of the parameters
        foreach (var c in ModelParity.Cases)
        {
            int parameters = c.Config.Layout().Count();
            Assert.That(results.Count(r => r.Op == c.Name), Is.EqualTo(2 + 2 * parameters), c.Name);
        }
        Assert.That(results.Where(r => r.MaxRelativeError != 0), Is.Empty);
    }

    [Test]
    public void ASkippedRotaryBackwardFailsTheQkvGradientsButNotTheLogits()
    {
        using var cpu = new CpuBackend();
        using var faulty = FaultyBackend.Skipping(new CpuBackend(), nameof(IBackend.RotaryBackward));
        var results = new ModelParity(cpu, faulty).Run([ModelParity.Cases[0]]);
        Assert.That(results.Single(r => r.Case == "logits").MaxRelativeError, Is.Zero);
        Assert.That(results.Single(r => r.Case == "loss").MaxRelativeError, Is.Zero);
        var failed = results.Where(r => !r.Passed).Select(r => r.Case).ToList();
        Assert.That(failed, Does.Contain("grad.gpt_neox.layers.0.attention.query_key_value.weight"));
        Assert.That(
            failed, Does.Not.Contain("grad.gpt_neox.layers.1.mlp.dense_4h_to_h.weight"),
            "gradients that do not pass through rotary still agree");
    }

    [Test]
    public void ASkippedSwiGluBackwardFailsTheGatedMlpGradientsOfTheLlamaCases()
    {
        using var cpu = new CpuBackend();
        using var faulty = FaultyBackend.Skipping(new CpuBackend(), nameof(IBackend.SwiGluBackward));
        var llama = ModelParity.Cases.Where(c => c.Config is Whittle.Native.Model.LlamaConfig).ToList();
        Assert.That(llama.Select(c => ((Whittle.Native.Model.LlamaConfig)c.Config).Family), Does.Contain("llama").And.Contain("qwen3"));
        var results = new ModelParity(cpu, faulty).Run([llama[0]]);
        Assert.That(results.Single(r => r.Case == "logits").MaxRelativeError, Is.Zero);
        var failed = results.Where(r => !r.Passed).Select(r => r.Case).ToList();
        Assert.That(failed, Does.Contain("grad.model.layers.1.mlp.gate_proj.weight").And.Contain("grad.model.layers.0.mlp.up_proj.weight"));
        Assert.That(failed, Does.Not.Contain("grad.model.layers.1.mlp.down_proj.weight"),
            "the last layer's down_proj gradient is computed before SwiGLU's backward");
    }

    [Test]
    public void DoctorRunsTheModelComparisonWithAHiddenCpuCandidate()
    {
        var (exit, stdout, stderr) = CliRunner.Run("doctor", "--model", "--model-candidate", "cpu", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var o = JsonNode.Parse(stdout)!;
        var rows = o["model_parity"]!.AsArray();
        Assert.That(
            rows.Select(r => r!["check"]!.GetValue<string>()),
            Does.Contain("logits").And.Contain("loss").And.Contain("grad.embed_out.weight").And.Contain("adamw.embed_out.weight"));
        Assert.That(rows.Select(r => r!["case"]!.GetValue<string>()).Distinct().Count(), Is.EqualTo(ModelParity.Cases.Count));
        Assert.That(o["model_parity_failed"]!.GetValue<int>(), Is.Zero);
        Assert.That(o["ok"]!.GetValue<bool>(), Is.True);
    }

    /// <summary>An IBackend that forwards every call to a real backend except one op, which it skips (a planted bug).</summary>
    public class FaultyBackend : DispatchProxy
    {
        IBackend _inner = null!;
        string _skip = "";

        public static IBackend Skipping(IBackend inner, string op)
        {
            var proxy = Create<IBackend, FaultyBackend>();
            var f = (FaultyBackend)(object)proxy;
            f._inner = inner; f._skip = op;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            if (method!.Name == _skip) return null;
            try { return method.Invoke(_inner, args); }
            catch (TargetInvocationException e) when (e.InnerException is not null) { throw e.InnerException; }
        }
    }
}
