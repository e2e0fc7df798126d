using System.Text.Json.Nodes;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cli;

/// <summary>`whittle bench kernels` on the CPU at a tiny shape: the report's structure, every backend op present, the byte
/// counts.</summary>
public class BenchKernelsCommandTests
{
    /// <summary>IBackend members that are plumbing rather than ops (allocation, host transfer, lifetime).</summary>
    static readonly string[] NotOps = ["Empty", "Zeros", "FromHost", "Synchronize", "Dispose"];

    static JsonNode? _report;

    static JsonNode Report()
    {
        if (_report is not null) return _report;
        var (exit, stdout, stderr) = CliRunner.Run("bench", "kernels", "--device", "cpu", "--config", "tiny", "--batch-size", "2",
            "--seq-len", "16",
            "--steps", "1", "--warmup", "0", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        return _report = JsonNode.Parse(stdout)!;
    }

    [Test]
    public void EveryBackendOpIsTimed()
    {
        var ops = typeof(IBackend).GetMethods().Where(m => !m.IsSpecialName).Select(m => m.Name).Except(NotOps).Distinct().ToList();
        Assert.That(ops, Has.Count.GreaterThanOrEqualTo(22), "the interface's op list was read");
        var timed = Report()["ops"]!.AsArray().Select(o => o!["op"]!.GetValue<string>()).ToHashSet();
        Assert.That(ops.Where(o => !timed.Contains(o)), Is.Empty, "ops missing from bench kernels");
    }

    [Test]
    public void EachRowHasATimeAndEitherBytesOrFlopsAndARate()
    {
        var r = Report();
        Assert.That(r["mode"]!.GetValue<string>(), Is.EqualTo("kernels"));
        Assert.That(r["device"]!.GetValue<string>(), Does.StartWith("cpu"));
        var ceilings = r["ceilings"]!.AsArray().ToDictionary(c => c!["name"]!.GetValue<string>(), c => c!["value"]!.GetValue<double>());
        Assert.That(ceilings.Keys, Is.EquivalentTo(new[] { "copy", "fp32_gemm" }), "the CPU measures a copy and its own GEMM");
        Assert.That(ceilings.Values, Has.All.GreaterThan(0));
        foreach (var o in r["ops"]!.AsArray())
        {
            string what = $"{o!["op"]} {o["case"]}";
            Assert.That(o["ms"]!.GetValue<double>(), Is.GreaterThan(0), what);
            Assert.That(o["formula"]!.GetValue<string>(), Is.Not.Empty, what);
            bool bytes = o["bytes"] is not null, flops = o["flops"] is not null;
            Assert.That(bytes ^ flops, Is.True, $"{what}: bytes or FLOPs, not both");
            string ceiling = o["ceiling"]!.GetValue<string>();
            Assert.That(ceiling, Is.EqualTo(bytes ? "copy" : "fp32_gemm"), what);
            // the rate from the row's own time and count, at the 4 significant digits the report keeps (rounding to 4 digits
            // is ≤ 0.05% of the value, ms too, so 0.5% and, for a ratio of two rounded values, 1% are bounds, not tuning)
            double ms = o["ms"]!.GetValue<double>();
            double rate = bytes ? o["bytes"]!.GetValue<double>() / (ms * 1e6) : o["flops"]!.GetValue<double>() / (ms * 1e9);
            Assert.That(o[bytes ? "gb_per_s" : "tflop_per_s"]!.GetValue<double>(), Is.EqualTo(rate).Within(0.5).Percent, what);
            Assert.That(o["fraction_of_ceiling"]!.GetValue<double>(), Is.EqualTo(rate / ceilings[ceiling]).Within(1).Percent, what);
        }
    }

    [Test]
    public void CountsFollowTheShape()
    {
        var r = Report();
        // tiny: V 4096, d 64, 2 layers, MLP 256: 2·V·d + 2·(4d norms + 3d² + 3d qkv + d² + d dense + 2·256·d + 256 + d MLP) + 2d final norm
        Assert.That(
            r["shape"]!["parameters"]!.GetValue<long>(),
            Is.EqualTo(2 * 4096 * 64 + 2 * (4 * 64 + 4 * 64 * 64 + 5 * 64 + 2 * 256 * 64 + 256) + 2 * 64));
        var ops = r["ops"]!.AsArray();
        JsonNode Row(string op, string caseStart) =>
            ops.First(o => o!["op"]!.GetValue<string>() == op && o["case"]!.GetValue<string>().StartsWith(caseStart))!;
        const int n = 32, c = 64, v = 4096;
        Assert.That(Row("LayerNormForward", "")["bytes"]!.GetValue<double>(), Is.EqualTo(4.0 * (2 * n * c + 2 * c + 2 * n)));
        Assert.That(Row("CrossEntropy", "")["bytes"]!.GetValue<double>(), Is.EqualTo(12.0 * n * v + 8 * n));
        Assert.That(Row("MatMul", "embed_out forward")["flops"]!.GetValue<double>(), Is.EqualTo(2.0 * n * v * c));
        Assert.That(Row("MatMul", "dense_h_to_4h dW")["flops"]!.GetValue<double>(), Is.EqualTo(2.0 * n * 256 * c));
        // causal attention: B·H·T(T+1)/2 unmasked pairs, 4·D FLOPs each forward
        Assert.That(Row("AttentionForward", "")["flops"]!.GetValue<double>(), Is.EqualTo(4.0 * 2 * 4 * (16 * 17 / 2) * 16));
        Assert.That(
            Row("LayerNormBackward", "")["calls_per_train_step"]!.GetValue<int>(), Is.EqualTo(2 * 2 + 1),
            "two per layer and the final one");
    }

    [Test]
    public void AnUnknownModeNamesTheChoices()
    {
        var (exit, _, stderr) = CliRunner.Run("bench", "kernel", "--device", "cpu");
        Assert.That(exit, Is.Not.EqualTo(0));
        Assert.That(stderr, Does.Contain("train, eval, kd, kernels or gemm"));
    }
}
