using Whittle.Native.Verification;
using Whittle.Native.Cuda;

namespace Whittle.Cli;

/// <summary>
/// <c>whittle doctor [--json]</c>: what this machine offers the engine. Reports the runtime, the CUDA libraries found (and
/// from where), driver/NVRTC/cuBLAS versions and devices; compiles every kernel (for the device's arch, or compute_80 and
/// compute_90 without one); runs the parity harness when a device and the CPU backend exist. <c>--model</c> adds
/// whole-model parity (<see cref="ModelParity"/>: logits, loss, every gradient and an AdamW step of small GPT-NeoX and
/// Llama-family models, CPU against CUDA) and the allocator's steady state (no driver allocation in training steps after
/// warm-up); the hidden
/// <c>--model-candidate cpu</c> runs the model comparison CPU against CPU, so it can be exercised without a GPU.
/// Exit status: 0 when nothing failed (including "no CUDA device"), 1 on any kernel compile or parity failure, and on
/// anything that throws on the way (a library that does not load, cublasCreate, a launch): the report is printed all the
/// same, with <c>error</c> naming the stage and the call, so a GPU session never gets an empty doctor.json.
/// </summary>
static class DoctorCommand
{
    public static Command Create()
    {
        var model = new Option<bool>("--model")
        {
            Description = "Also compare whole models, CPU against CUDA: logits, loss, every parameter gradient and one AdamW step " +
                "of small GPT-NeoX models (both residual forms, partial rotary, a sub-network, bf16 at head size 64) and " +
                "Llama-family ones (llama with GQA, qwen3 with QK-norm and MQA, f32 and bf16 attention), and check that " +
                "training steps after warm-up make no driver allocations.",
        };
        var skipOps = new Option<bool>("--skip-ops") { Description = "Skip the per-op parity harness (with --model: when `doctor` " +
            "already ran it in this session)." };
        var longSeqLen = new Option<int?>("--long-seq-len") { Description = $"T of the long-context bf16 tensor-core attention parity " +
            $"cases (head sizes 64 and 128; 0: skip). Default {ParityHarness.HardwareLongSeqLen} on a GPU, {SoftwareGpuLongSeqLen} on " +
            $"the software GPU (where T = 2048 takes minutes)." };
        var candidate = new Option<string>("--model-candidate") { Hidden = true, DefaultValueFactory = _ => "cuda",
            Description = "The backend compared with the CPU by --model (cpu: test the comparison itself)." };
        var cmd = new Command("doctor",
            "Check the CUDA runtime: libraries, devices, kernel compilation and CPU/GPU parity (per op; whole models with --model).");
        cmd.Options.Add(model);
        cmd.Options.Add(skipOps);
        cmd.Options.Add(longSeqLen);
        cmd.Options.Add(candidate);
        cmd.Options.Add(CliCommon.Json);
        cmd.SetAction(
            parse => Run(parse.GetValue(CliCommon.Json), parse.GetValue(model), parse.GetValue(candidate)!, parse.GetValue(skipOps),
            parse.GetValue(longSeqLen), parse.GetValue(CliCommon.Verbose)));
        return cmd;
    }

    /// <summary>
    /// The software GPU's default long-context T. The three T = 2048 cases cost about 50 s there (2 cores; the rest of
    /// doctor about 4 s) and far more in race mode, and CI runs doctor in five variants, so doctor's default there is
    /// T = 330 (five full 64-row tiles and a partial one, about 1 s); CI runs T = 2048 once
    /// (SoftGpuLongContextParityTests), and the GPU kit runs it on hardware (the default on a GPU).
    /// </summary>
    public const int SoftwareGpuLongSeqLen = 330;

    static int Run(bool json, bool modelParity, string modelCandidate, bool skipOps, int? longSeqLen, bool verbose)
    {
        if (modelCandidate is not ("cuda" or "cpu"))
            throw new WhittleException($"--model-candidate must be cuda or cpu, got '{modelCandidate}'");
        if (longSeqLen is < 0) throw new WhittleException($"--long-seq-len must be >= 0, got {longSeqLen}");
        var report = new JsonObject
        {
            ["runtime"] = $".NET {Environment.Version} {System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}",
        };
        int count = 0;
        // Every stage inside one try: whatever throws (a library that does not load, cublasCreate, an NVRTC or launch
        // error in the middle of parity), the report so far is still printed, with `error` naming the stage and the
        // failing call; the stack trace goes to stderr with --verbose.
        string stage = "libraries";
        bool failed = false;
        try { failed = Check(report, modelParity, modelCandidate, skipOps, longSeqLen, verbose, ref stage, out count); }
        catch (Exception e)
        {
            failed = true;
            report["error"] = ErrorText.OneLine($"{stage}: {e.GetType().Name}: {e.Message}");
            if (verbose) Console.Error.WriteLine($"doctor: {stage} failed:\n{e}");
        }
        report["mapped_libraries"] = MappedLibraries();
        report["ok"] = !failed;

        if (json) Console.Out.WriteLine(report.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        else PrintText(report);
        return failed ? 1 : 0;
    }

    /// <summary>The stages; <paramref name="stage"/> names the one running, for the error field.</summary>
    static bool Check(
        JsonObject report, bool modelParity, string modelCandidate, bool skipOps, int? longSeqLen, bool verbose, ref string stage,
        out int count)
    {
        var libs = new JsonObject();
        foreach (var lib in new[] { CudaLibraries.Driver, CudaLibraries.Nvrtc, CudaLibraries.Cublas, CudaLibraries.CublasLt })
            libs[lib.Library.Replace("whittle-", "")] = lib.Path ?? lib.Problem;
        report["libraries"] = libs;

        bool failed = false;
        stage = "versions";
        if (CudaLibraries.DriverVersion() is { } dv) report["driver_version"] = dv;
        int nvrtcOk = CudaLibraries.Nvrtc.Handle != 0 ? 1 : 0;
        if (nvrtcOk == 1) { var (ma, mi) = KernelCompiler.NvrtcVersion(); report["nvrtc_version"] = $"{ma}.{mi}"; }
        if (CudaLibraries.CublasLtVersion() is { } lt) report["cublaslt_version"] = lt;

        stage = "devices";
        count = CudaBackend.DeviceCount(out var noDevice);
        var devices = new JsonArray();
        if (count > 0)
            foreach (var d in DeviceInfo.All())
                devices.Add(
                    (JsonNode)new JsonObject { ["ordinal"] = d.Ordinal, ["name"] = d.Name,
                    ["compute_capability"] = $"{d.ComputeCapability / 10}.{d.ComputeCapability % 10}",
                    ["multiprocessors"] = d.Multiprocessors, ["memory_bytes"] = d.TotalMemory });
        report["devices"] = devices;
        if (count == 0) report["device_status"] = $"no CUDA device ({noDevice})";
        if (SoftwareGpu.IsActive)
            report["software_gpu"] = $"softgpu v{SoftwareGpu.Version}: the CUDA driver, cuBLAS and the kernels run on the CPU. This checks "
                + "the kernels' logic and the backend against the CPU; only a real GPU shows its numerics (tensor cores, TF32), speed " +
                    "and occupancy";

        // kernels: for the first device's arch, as the binary the backend loads (so the backend's own compile, and every
        // later command's, is a cache hit: a GPU session pays NVRTC once), or the CI pair as PTX without a device
        stage = "kernel compilation";
        int[] archs = count > 0 ? [DeviceInfo.All()[0].ComputeCapability] : [80, 90];
        var kind = count > 0 && nvrtcOk == 1 && CudaBackend.SupportsCubin(archs[0]) ? KernelBinary.Cubin : KernelBinary.Ptx;
        report["kernels_binary"] = kind == KernelBinary.Cubin ? $"sm_{archs[0]} " +
            $"CUBIN" : string.Join(", ", archs.Select(a => $"compute_{a}")) + " PTX";
        int compiled = 0;
        var failures = new JsonArray();
        var warnings = new JsonArray();
        if (nvrtcOk == 1)
        {
            var compiler = new KernelCompiler();
            foreach (var arch in archs)
                foreach (var file in KernelCompiler.KernelFiles)
                    try
                    {
                        var k = compiler.Compile(file, arch, kind); compiled++;
                        if (k.Warnings.Length > 0) warnings.Add((JsonNode)JsonValue.Create($"{file} {arch}: {k.Warnings}"));
                    }
                    catch (Exception e) when (e is KernelCompileException or CudaException)
                    {
                        failures.Add((JsonNode)JsonValue.Create($"{file} {arch}: {e.Message}"));
                        failed = true;
                    }
        }
        else report["kernels_status"] = "NVRTC not found: kernels not compiled";
        report["kernels_compiled"] = compiled;
        report["kernels_failed"] = failures;
        report["kernel_warnings"] = warnings;

        Action<ParityResult>? progress = verbose ? r => Console.Error.WriteLine($"doctor: {r}") : null;
        if (count > 0)
        {
            using var cpu = CreateReference();
            stage = "CUDA backend";
            using var gpu = Backends.Cuda();
            int longT = longSeqLen ?? (SoftwareGpu.IsActive ? SoftwareGpuLongSeqLen : ParityHarness.HardwareLongSeqLen);
            if (!skipOps)
            {
                stage = "op parity";
                var results = new ParityHarness(cpu, gpu) { LongSeqLen = longT, Progress = progress }.Run();
                var arr = new JsonArray();
                foreach (var r in results)
                    arr.Add((JsonNode)new JsonObject { ["op"] = r.Op, ["case"] = r.Case,
                        ["max_rel_error"] = double.IsFinite(r.MaxRelativeError) ? r.MaxRelativeError : -1, ["tolerance"] = r.Tolerance,
                        ["passed"] = r.Passed });
                report["parity"] = arr;
                report["parity_long_seq_len"] = longT;
                report["parity_failed"] = results.Count(r => !r.Passed);
                if (results.Any(r => !r.Passed)) failed = true;
            }
            else report["parity"] = "skipped (--skip-ops)";
            if (modelParity && modelCandidate == "cuda")
            {
                stage = "model parity";
                failed |= ReportModelParity(report, new ModelParity(cpu, gpu, gpu.AllowTf32) { Progress = progress }.Run());
                if (gpu.Allocator.Mode == DeviceAllocatorMode.Caching)
                {
                    stage = "allocator steady state";
                    var alloc = ModelParity.SteadyStateAllocations(gpu);
                    report["steady_state"] = new JsonObject { ["check"] = alloc.Case, ["driver_allocations"] = alloc.MaxRelativeError,
                        ["passed"] = alloc.Passed };
                    failed |= !alloc.Passed;
                }
                else report["steady_state_status"] = $"not checked: {DeviceAllocator.ModeVariable}=exact allocates from the driver on " +
                    $"every request";
            }
            report["cublaslt_algorithms_cached"] = gpu.CublasLtAlgorithmsCached;
        }
        if (modelParity && modelCandidate == "cpu")
        {
            stage = "model parity (cpu against cpu)";
            using var a = CreateReference(); using var b = CreateReference();
            failed |= ReportModelParity(report, new ModelParity(a, b) { Progress = progress }.Run());
        }
        else if (modelParity && count == 0) report["model_parity_status"] = "no CUDA device: whole-model parity not run";
        return failed;
    }

    /// <summary>
    /// The CUDA libraries this process actually mapped (from /proc/self/maps; Linux only): what the search settled on,
    /// which can differ from the paths searched when a library pulls in another (cuBLAS loads cuBLASLt by soname).
    /// </summary>
    static JsonArray MappedLibraries()
    {
        var arr = new JsonArray();
        try
        {
            if (!File.Exists("/proc/self/maps")) return arr;
            var names = new[] { "libcuda", "libnvrtc", "libcublas", "libsoftgpu", "libnvJitLink", "libcudart" };
            foreach (var path in File.ReadLines("/proc/self/maps").Select(
                l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length == 6)
                         .Select(f => f[5].Trim()).Where(
                             p => names.Any(
                             n => Path.GetFileName(p).StartsWith(n, StringComparison.Ordinal))).Distinct().Order(StringComparer.Ordinal))
                arr.Add((JsonNode)JsonValue.Create(path));
        }
        catch (IOException) { /* a report without the list, never a failed doctor */ }
        return arr;
    }

    /// <summary>Adds the whole-model results (one row per case and tensor); true when any failed.</summary>
    static bool ReportModelParity(JsonObject report, IReadOnlyList<ParityResult> results)
    {
        var arr = new JsonArray();
        foreach (var r in results)
            arr.Add((JsonNode)new JsonObject { ["case"] = r.Op, ["check"] = r.Case,
                ["max_rel_error"] = double.IsFinite(r.MaxRelativeError) ? r.MaxRelativeError : -1, ["tolerance"] = r.Tolerance,
                ["passed"] = r.Passed });
        report["model_parity"] = arr;
        report["model_parity_failed"] = results.Count(r => !r.Passed);
        return results.Any(r => !r.Passed);
    }

    /// <summary>The parity reference: the CPU backend, the ground truth.</summary>
    static IBackend CreateReference() => Backends.Cpu();

    static void PrintText(JsonObject report)
    {
        Console.WriteLine($"runtime           {report["runtime"]}");
        // a report cut short by an error lacks the later fields: print what is there
        foreach (var (name, path) in report["libraries"]?.AsObject() ?? []) Console.WriteLine($"{name,-17} {path}");
        foreach (var key in new[] { "driver_version", "nvrtc_version", "cublaslt_version" })
            if (report[key] is { } v) Console.WriteLine($"{key,-17} {v}");
        if (report["device_status"] is { } status) Console.WriteLine(status);
        foreach (var d in report["devices"]?.AsArray() ?? [])
            Console.WriteLine($"device {d!["ordinal"]}          {d["name"]} (sm {d["compute_capability"]}, {d["multiprocessors"]} SMs)");
        if (report["software_gpu"] is { } soft) Console.WriteLine($"software GPU      {soft}");
        if (report["kernels_compiled"] is { } compiled)
            Console.WriteLine($"kernels compiled  {compiled}{(report["kernels_status"] is { } s ? $" ({s})" : "")}");
        foreach (var f in report["kernels_failed"]?.AsArray() ?? []) Console.WriteLine($"kernel FAILED     {f}");
        foreach (var w in report["kernel_warnings"]?.AsArray() ?? []) Console.WriteLine($"kernel warning    {w}");
        if (report["parity"] is JsonArray parity)
            foreach (var r in parity)
                Console.WriteLine($"parity {r!["op"],-22} {r["case"],-44} {(double)r["max_rel_error"]!:0.00e+00} " +
                $"{((bool)r["passed"]! ? "ok" : "FAIL")}");
        else if (report["parity"] is { } p) Console.WriteLine($"parity            {p}");
        if (report["model_parity"] is JsonArray model)
            // per case and kind of check (logits, loss, grad.*, adamw.*): the worst tensor, and every failure
            foreach (var g in model.GroupBy(r => (Case: r!["case"]!.ToString(), Kind: r!["check"]!.ToString().Split('.')[0])))
            {
                var worst = g.MaxBy(r => (double)r!["max_rel_error"]! < 0 ? double.PositiveInfinity : (double)r!["max_rel_error"]!)!;
                int bad = g.Count(r => !(bool)r!["passed"]!);
                Console.WriteLine($"model  {g.Key.Case,-62} {g.Key.Kind,-7} worst {(double)worst["max_rel_error"]!:0.00e+00} " +
                    $"({worst["check"]}) tol {(double)worst["tolerance"]!:0e+00} {(bad == 0 ? "ok" : $"{bad} FAILED")}");
            }
        if (report["model_parity_status"] is { } ms) Console.WriteLine($"model parity      {ms}");
        if (report["steady_state"] is { } ss)
            Console.WriteLine($"allocator         {ss["check"]}: {ss["driver_allocations"]} {((bool)ss["passed"]! ? "ok" : "FAIL")}");
        if (report["steady_state_status"] is { } sss) Console.WriteLine($"allocator         {sss}");
        foreach (var m in report["mapped_libraries"]?.AsArray() ?? []) Console.WriteLine($"mapped            {m}");
        if (report["error"] is { } error) Console.WriteLine($"error             {error}");
        Console.WriteLine((bool)report["ok"]! ? "ok" : "FAILED");
    }
}
