using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Tests.Tokenization;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// The GPU-session tools that can be checked without a GPU: hf_compare.py's helpers and partial-result writing (its own
/// unittest file, run with Debian's Python), its FLOPs-per-token formula against `whittle bench`'s (the two MFU columns
/// must share a denominator), the session script's own tests (tools/test-gpu-session.sh: deadline arithmetic, dry-run
/// budget, timed-out and skipped steps leaving marked files, a stubbed first plan), doctor's JSON when the CUDA backend
/// cannot be built, and — on the software GPU — the first plan end to end with the real whittle.
/// </summary>
[NonParallelizable]
public class GpuSessionToolsTests
{
    const string Python = "/usr/bin/python3";

    static (int Exit, string Output) Run(string file, params string[] args) => RunEnv(null, file, args);

    static (int Exit, string Output) RunEnv(IReadOnlyDictionary<string, string?>? env, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = Fixtures.RepoRoot };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) psi.Environment[k] = v;
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
        var (exit, stdout, stderr) = CliRunner.Run("bench", "train", "--config", "small", "--batch-size", "1", "--seq-len", "16", "--steps",
            "1", "--warmup", "0", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        long ours = JsonNode.Parse(stdout)!["flops_per_token"]!.GetValue<long>();
        var (pyExit, py) = Run(Python, "-c", "import sys; sys.path.insert(0, 'bench/gpu'); import hf_compare as h; " +
            "print(h.flops_per_token(dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, " +
                "intermediate_size=1024), 16, True))");
        Assert.That(pyExit, Is.EqualTo(0), py);
        Assert.That(long.Parse(py.Trim()), Is.EqualTo(ours));
    }

    /// <summary>
    /// The Llama-family shapes the kit measures are counted alike on both sides: tiny-llama's FLOPs per token from a real
    /// `whittle bench` run, and SmolLM2-135M's and Qwen3-0.6B's parameters and FLOPs from whittle's shape definitions
    /// (too large to build in a test) against hf_compare's, which builds transformers' models from the same values.
    /// </summary>
    [Test]
    public void HfCompareCountsLlamaShapesAsWhittleBenchDoes()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        var (exit, stdout, stderr) = CliRunner.Run("bench", "eval", "--config", "tiny-llama", "--batch-size", "1", "--seq-len", "16",
            "--steps", "1", "--warmup", "0", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        long tiny = JsonNode.Parse(stdout)!["flops_per_token"]!.GetValue<long>();
        var (pyExit, py) = Run(Python, "-c", "import sys; sys.path.insert(0, 'bench/gpu'); import hf_compare as h; " +
            "print(h.flops_per_token(h.SHAPES['tiny-llama'], 16, False)); " +
            "[print(sum(h.param_counts(h.SHAPES[m])), h.flops_per_token(h.SHAPES[m], 2048, True)) " +
            "for m in ('smollm2-135m', 'qwen3-0.6b')]");
        Assert.That(pyExit, Is.EqualTo(0), py);
        var lines = py.Trim().Split('\n');
        Assert.That(long.Parse(lines[0]), Is.EqualTo(tiny));
        foreach (var (name, line) in new[] { ("smollm2-135m", lines[1]), ("qwen3-0.6b", lines[2]) })
        {
            var shape = Whittle.Cli.BenchCommand.Shape(name);
            long flops = Whittle.Cli.BenchCommand.FlopsPerToken(shape, 2048, true);
            Assert.That(line, Is.EqualTo($"{shape.CountParameters().Total} {flops}"), name);
        }
    }

    /// <summary>check_with_transformers.py's comparison logic, with the fixtures' own reference model standing in for
    /// transformers (tools/fixtures/test_check_with_transformers.py): it must pass a faithful model and fail a wrong one.</summary>
    [Test]
    public void TheTransformersFixtureCheckPassesAFaithfulModelAndFailsAWrongOne()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        var (probe, _) = Run(Python, "-c", "import torch");
        if (probe != 0) Assert.Ignore("Debian's python3-torch is not installed");
        var (exit, output) = Run(Python, "-m", "unittest", "discover", "-s", "tools/fixtures", "-p", "test_*.py");
        Assert.That(exit, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("Ran 5 tests"));
    }

    [Test]
    public void TheSessionScriptParses()
    {
        var (exit, output) = Run("bash", "-n", "tools/gpu-session.sh");
        Assert.That(exit, Is.EqualTo(0), output);
    }

    [Test]
    public void TheSessionScriptsOwnTestsPass()
    {
        if (!File.Exists(Python)) Assert.Ignore($"{Python} not found");
        var (exit, output) = Run("bash", "tools/test-gpu-session.sh");
        Assert.That(exit, Is.EqualTo(0), output);
        Assert.That(output, Does.Match(@"\d+ passed, 0 failed"));
    }

    [Test]
    public void TheFirstPlansDryRunFitsTheWindow()
    {
        var (exit, output) = Run("bash", "tools/gpu-session.sh", "first", "--dry-run");
        Assert.That(exit, Is.EqualTo(0), output);
        // 450 s of work inside a 560 s command; with 8 steps each killed at most 10 s late: 530 s; GPT-NeoX and a Llama model
        Assert.That(output, Does.Contain("shape: pythia-160m and smollm2-135m, batch 8 x seq 2048"));
        Assert.That(
            output, Does.Contain("budget: plan 450 s of work, deadline 450 s; worst case with a 10 s kill grace per step 530 s; command " +
            "limit 560 s; 8 output files"));
        Assert.That(output.TrimEnd(), Does.EndWith("fits"));
    }

    /// <summary>A CUDA driver without cuBLAS: doctor still prints its JSON, with the stage and the library in `error`, and exits
    /// 1.</summary>
    [Test]
    public void DoctorPrintsJsonNamingTheFailureWhenTheBackendCannotBeBuilt()
    {
        var softgpu = Path.Combine(Fixtures.RepoRoot, "softgpu", "build", "lib", "libcuda.so.1");
        if (!File.Exists(softgpu)) Assert.Ignore("the software GPU is not built (bash softgpu/build.sh)");
        var dir = Directory.CreateTempSubdirectory("whittle-doctor-nocublas-").FullName;
        try
        {
            // the driver and NVRTC (so the backend gets as far as cublasCreate), no cuBLAS
            foreach (var lib in Directory.GetFiles(Path.GetDirectoryName(softgpu)!).Where(
                f => Path.GetFileName(f).StartsWith("libcuda.so") || Path.GetFileName(f).StartsWith("libnvrtc")))
                File.CreateSymbolicLink(Path.Combine(dir, Path.GetFileName(lib)), lib);
            var (exit, stdout, stderr) = CliRunner.RunWith(
                null, null, new Dictionary<string, string?> { ["WHITTLE_CUDA_LIB_DIR"] = dir }, "doctor", "--json", "--verbose");
            Assert.That(exit, Is.EqualTo(1), stderr);
            var report = JsonNode.Parse(stdout)!.AsObject();
            Assert.That((bool)report["ok"]!, Is.False);
            Assert.That(report["error"]!.ToString(), Does.StartWith("CUDA backend: ").And.Contain("cuBLAS"));
            Assert.That(report["devices"]!.AsArray(), Has.Count.EqualTo(1), "what ran before the failure is reported");
            Assert.That(
                report["mapped_libraries"]!.AsArray().Select(n => n!.ToString()), Has.Some.Contains("softgpu"),
                "the libraries actually mapped");
            Assert.That(stderr, Does.Contain("DllNotFoundException").And.Contain(" at "), "--verbose: the stack trace on stderr");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>
    /// The first plan on the CPU machine with the software GPU standing in: every promised file exists, the whittle
    /// steps succeed, HF steps skip with the reason. Small shapes (tiny and tiny-llama, 1 × 64). The deadline is an hour,
    /// not the H200's 450 s: this test checks what the plan produces, not how fast a CPU emulating a GPU runs it (the step
    /// limits are derived from the deadline, and at 450 s a loaded CI machine cut doctor --model and the last runs). The
    /// deadline arithmetic itself is tested by tools/test-gpu-session.sh.
    /// </summary>
    [Test]
    public void TheFirstPlanRunsEndToEndOnTheSoftwareGpu()
    {
        if (!File.Exists(Python) || OperatingSystem.IsWindows()) Assert.Ignore($"{Python} not found");
        Whittle.Native.Tests.SoftGpu.SoftGpuKernel.RequireSoftwareGpu();
        var dir = Directory.CreateTempSubdirectory("whittle-first-plan-").FullName;
        try
        {
            var whittle = Path.Combine(dir, "whittle");
            var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll");
            File.WriteAllText(whittle, $"#!/bin/sh\nexec dotnet '{dll}' \"$@\"\n");
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(whittle, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            var outDir = Path.Combine(dir, "out");
            var env = new Dictionary<string, string?>
            {
                ["OUT"] = outDir, ["WHITTLE"] = whittle, ["PYTHON"] = Python, ["DEADLINE"] = "3600", ["COMMAND_LIMIT"] = "4000",
                ["MODEL"] = "tiny", ["LLAMA_MODEL"] = "tiny-llama", ["KD_TEACHER"] = "tiny",
                ["BATCH"] = "1", ["SEQ_LEN"] = "64", ["BENCH_STEPS"] = "1", ["BENCH_WARMUP"] = "0",
                ["WHITTLE_CACHE_DIR"] = Path.Combine(Path.GetTempPath(), "whittle-softgpu-doctor-cache"),
            };
            var (exit, output) = RunEnv(env, "bash", "tools/gpu-session.sh", "first");
            Assert.That(exit, Is.EqualTo(0), output);
            var files = Directory.GetFiles(outDir).Select(Path.GetFileName).Order().ToArray();
            Assert.That(
                files, Is.EqualTo(
                new[] { "doctor-model.json", "doctor.json", "fixtures.log", "hf_compare-compile.json", "hf_compare-eval.json",
                "hf_compare-train.json", "kernels.json", "session.log" }));
            string log = File.ReadAllText(Path.Combine(outDir, "session.log"));
            JsonObject Json(string f) => JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, f)))!.AsObject();
            Assert.That((bool)Json("doctor.json")["ok"]!, Is.True, log);
            Assert.That((bool)Json("doctor-model.json")["ok"]!, Is.True, log);
            Assert.That(
                Json("doctor-model.json")["parity"]!.ToString(), Does.StartWith("skipped"), "--skip-ops: doctor already ran the op parity");
            Assert.That(Json("kernels.json")["ops"]!.AsArray(), Is.Not.Empty, log);
            foreach (var (f, pair) in new[] { ("hf_compare-eval.json", "tiny/eval"), ("hf_compare-train.json", "tiny/train"),
                ("hf_compare-train.json", "tiny/kd"), ("hf_compare-eval.json", "tiny-llama/eval"),
                ("hf_compare-train.json", "tiny-llama/train") })
            {
                var r = Json(f)["results"]![pair]!;
                Assert.That((string?)r["ours"]!["loss_check"], Is.EqualTo("ok"), $"{f} {pair}: {r}\n{log}");
                Assert.That(r["hf_eager"]!["skipped"]!.ToString(), Does.Contain("not importable"), $"{f} {pair}");
            }
            Assert.That(Json("hf_compare-compile.json")["results"]!["tiny/eval"]!["hf_compile"]!["skipped"], Is.Not.Null);
            Assert.That(
                File.ReadAllText(Path.Combine(outDir, "fixtures.log")), Does.StartWith("skipped: torch/transformers not importable"));
            Assert.That(log, Does.Contain("== first plan done"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
