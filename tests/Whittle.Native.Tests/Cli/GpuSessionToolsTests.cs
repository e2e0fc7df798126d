using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Tests.Tokenization;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// The GPU-session tools that can be checked without a GPU: hf_compare.py's pure helpers (its own unittest file, run
/// with Debian's Python), its FLOPs-per-token formula against `whittle bench`'s (the two MFU columns must share a
/// denominator), and the session script's syntax.
/// </summary>
public class GpuSessionToolsTests
{
    const string Python = "/usr/bin/python3";

    static (int Exit, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Fixtures.RepoRoot };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }

    [Test]
    public void HfCompareHelpersPassTheirTests()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        var (exit, output) = Run(Python, "-m", "unittest", "discover", "-s", "bench/gpu", "-p", "test_*.py");
        Assert.That(exit, Is.EqualTo(0), output);
    }

    [Test]
    public void HfCompareCountsFlopsPerTokenAsWhittleBenchDoes()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        var (exit, stdout, stderr) = CliRunner.Run("bench", "train", "--config", "small", "--batch-size", "1", "--seq-len", "16", "--steps", "1", "--warmup", "0", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        long ours = JsonNode.Parse(stdout)!["flops_per_token"]!.GetValue<long>();
        var (pyExit, py) = Run(Python, "-c", "import sys; sys.path.insert(0, 'bench/gpu'); import hf_compare as h; " +
            "print(h.flops_per_token(dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024), 16, True))");
        Assert.That(pyExit, Is.EqualTo(0), py);
        Assert.That(long.Parse(py.Trim()), Is.EqualTo(ours));
    }

    [Test]
    public void TheSessionScriptParses()
    {
        var (exit, output) = Run("bash", "-n", "tools/gpu-session.sh");
        Assert.That(exit, Is.EqualTo(0), output);
    }
}
