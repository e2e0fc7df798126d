using System.CommandLine;
using System.Text.Json.Nodes;
using Whittle.Native.Verification;
using Whittle.Native;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;

namespace Whittle.Cli;

/// <summary>
/// <c>whittle doctor [--json]</c>: what this machine offers the engine. Reports the runtime, the CUDA libraries found (and
/// from where), driver/NVRTC/cuBLAS versions and devices; compiles every kernel (for the device's arch, or compute_80 and
/// compute_90 without one); runs the parity harness when a device and the CPU backend exist. <c>--model</c> adds
/// whole-model parity (<see cref="ModelParity"/>: logits, loss, every gradient and an AdamW step of small GPT-NeoX models,
/// CPU against CUDA) and the allocator's steady state (no driver allocation in training steps after warm-up); the hidden
/// <c>--model-candidate cpu</c> runs the model comparison CPU against CPU, so it can be exercised without a GPU.
/// Exit status: 0 when nothing failed (including "no CUDA device"), 1 on any kernel compile or parity failure.
/// </summary>
static class DoctorCommand
{
    public static Command Create()
    {
        var model = new Option<bool>("--model") { Description = "Also compare whole models, CPU against CUDA: logits, loss, every parameter gradient and one AdamW step of small GPT-NeoX models (both residual forms, partial rotary, a sub-network), and check that training steps after warm-up make no driver allocations." };
        var candidate = new Option<string>("--model-candidate") { Hidden = true, DefaultValueFactory = _ => "cuda", Description = "The backend compared with the CPU by --model (cpu: test the comparison itself)." };
        var cmd = new Command("doctor", "Check the CUDA runtime: libraries, devices, kernel compilation and CPU/GPU parity (per op; whole models with --model).");
        cmd.Options.Add(model);
        cmd.Options.Add(candidate);
        cmd.Options.Add(CliCommon.Json);
        cmd.SetAction(parse => Run(parse.GetValue(CliCommon.Json), parse.GetValue(model), parse.GetValue(candidate)!));
        return cmd;
    }

    static int Run(bool json, bool modelParity, string modelCandidate)
    {
        if (modelCandidate is not ("cuda" or "cpu")) throw new WhittleException($"--model-candidate must be cuda or cpu, got '{modelCandidate}'");
        var report = new JsonObject
        {
            ["runtime"] = $".NET {Environment.Version} {System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}",
        };
        var libs = new JsonObject();
        foreach (var lib in new[] { CudaLibraries.Driver, CudaLibraries.Nvrtc, CudaLibraries.Cublas, CudaLibraries.CublasLt })
            libs[lib.Library.Replace("whittle-", "")] = lib.Path ?? lib.Problem;
        report["libraries"] = libs;

        bool failed = false;
        if (CudaLibraries.DriverVersion() is { } dv) report["driver_version"] = dv;
        int nvrtcOk = CudaLibraries.Nvrtc.Handle != 0 ? 1 : 0;
        if (nvrtcOk == 1) { var (ma, mi) = KernelCompiler.NvrtcVersion(); report["nvrtc_version"] = $"{ma}.{mi}"; }
        if (CudaLibraries.CublasLtVersion() is { } lt) report["cublaslt_version"] = lt;

        int count = CudaBackend.DeviceCount(out var noDevice);
        var devices = new JsonArray();
        if (count > 0)
            foreach (var d in DeviceInfo.All())
                devices.Add((JsonNode)new JsonObject { ["ordinal"] = d.Ordinal, ["name"] = d.Name, ["compute_capability"] = $"{d.ComputeCapability / 10}.{d.ComputeCapability % 10}", ["multiprocessors"] = d.Multiprocessors, ["memory_bytes"] = d.TotalMemory });
        report["devices"] = devices;
        if (count == 0) report["device_status"] = $"no CUDA device ({noDevice})";
        if (SoftwareGpu.IsActive)
            report["software_gpu"] = $"softgpu v{SoftwareGpu.Version}: the CUDA driver, cuBLAS and the kernels run on the CPU. This checks "
                + "the kernels' logic and the backend against the CPU; only a real GPU shows its numerics (tensor cores, TF32), speed and occupancy";

        // kernels: for the first device's arch, or the CI pair without a device
        int[] archs = count > 0 ? [DeviceInfo.All()[0].ComputeCapability] : [80, 90];
        int compiled = 0;
        var failures = new JsonArray();
        if (nvrtcOk == 1)
        {
            var compiler = new KernelCompiler();
            foreach (var arch in archs)
                foreach (var file in KernelCompiler.KernelFiles)
                    try { compiler.Compile(file, arch, KernelBinary.Ptx); compiled++; }
                    catch (Exception e) when (e is KernelCompileException or CudaException) { failures.Add((JsonNode)JsonValue.Create($"{file} compute_{arch}: {e.Message}")); failed = true; }
        }
        else report["kernels_status"] = "NVRTC not found: kernels not compiled";
        report["kernels_compiled"] = compiled;
        report["kernels_failed"] = failures;

        if (count > 0)
        {
            using var cpu = CreateReference();
            {
                using var gpu = Backends.Cuda();
                var results = new ParityHarness(cpu, gpu).Run();
                var arr = new JsonArray();
                foreach (var r in results)
                    arr.Add((JsonNode)new JsonObject { ["op"] = r.Op, ["case"] = r.Case, ["max_rel_error"] = double.IsFinite(r.MaxRelativeError) ? r.MaxRelativeError : -1, ["tolerance"] = r.Tolerance, ["passed"] = r.Passed });
                report["parity"] = arr;
                report["parity_failed"] = results.Count(r => !r.Passed);
                if (results.Any(r => !r.Passed)) failed = true;
                if (modelParity && modelCandidate == "cuda")
                {
                    failed |= ReportModelParity(report, new ModelParity(cpu, gpu, gpu.AllowTf32).Run());
                    if (gpu.Allocator.Mode == DeviceAllocatorMode.Caching)
                    {
                        var alloc = ModelParity.SteadyStateAllocations(gpu);
                        report["steady_state"] = new JsonObject { ["check"] = alloc.Case, ["driver_allocations"] = alloc.MaxRelativeError, ["passed"] = alloc.Passed };
                        failed |= !alloc.Passed;
                    }
                    else report["steady_state_status"] = $"not checked: {DeviceAllocator.ModeVariable}=exact allocates from the driver on every request";
                }
            }
        }
        if (modelParity && modelCandidate == "cpu")
        {
            using var a = CreateReference(); using var b = CreateReference();
            failed |= ReportModelParity(report, new ModelParity(a, b).Run());
        }
        else if (modelParity && count == 0) report["model_parity_status"] = "no CUDA device: whole-model parity not run";
        report["ok"] = !failed;

        if (json) Console.Out.WriteLine(report.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        else PrintText(report, count);
        return failed ? 1 : 0;
    }

    /// <summary>Adds the whole-model results (one row per case and tensor); true when any failed.</summary>
    static bool ReportModelParity(JsonObject report, IReadOnlyList<ParityResult> results)
    {
        var arr = new JsonArray();
        foreach (var r in results)
            arr.Add((JsonNode)new JsonObject { ["case"] = r.Op, ["check"] = r.Case, ["max_rel_error"] = double.IsFinite(r.MaxRelativeError) ? r.MaxRelativeError : -1, ["tolerance"] = r.Tolerance, ["passed"] = r.Passed });
        report["model_parity"] = arr;
        report["model_parity_failed"] = results.Count(r => !r.Passed);
        return results.Any(r => !r.Passed);
    }

    /// <summary>The parity reference: the CPU backend, the ground truth.</summary>
    static IBackend CreateReference() => Backends.Cpu();

    static void PrintText(JsonObject report, int devices)
    {
        Console.WriteLine($"runtime           {report["runtime"]}");
        foreach (var (name, path) in report["libraries"]!.AsObject()) Console.WriteLine($"{name,-17} {path}");
        foreach (var key in new[] { "driver_version", "nvrtc_version", "cublaslt_version" })
            if (report[key] is { } v) Console.WriteLine($"{key,-17} {v}");
        if (devices == 0) Console.WriteLine(report["device_status"]);
        foreach (var d in report["devices"]!.AsArray()) Console.WriteLine($"device {d!["ordinal"]}          {d["name"]} (sm {d["compute_capability"]}, {d["multiprocessors"]} SMs)");
        if (report["software_gpu"] is { } soft) Console.WriteLine($"software GPU      {soft}");
        Console.WriteLine($"kernels compiled  {report["kernels_compiled"]}{(report["kernels_status"] is { } s ? $" ({s})" : "")}");
        foreach (var f in report["kernels_failed"]!.AsArray()) Console.WriteLine($"kernel FAILED     {f}");
        if (report["parity"] is JsonArray parity)
            foreach (var r in parity) Console.WriteLine($"parity {r!["op"],-22} {r["case"],-44} {(double)r["max_rel_error"]!:0.00e+00} {((bool)r["passed"]! ? "ok" : "FAIL")}");
        else if (report["parity"] is { } p) Console.WriteLine($"parity            {p}");
        if (report["model_parity"] is JsonArray model)
            // per case and kind of check (logits, loss, grad.*, adamw.*): the worst tensor, and every failure
            foreach (var g in model.GroupBy(r => (Case: r!["case"]!.ToString(), Kind: r!["check"]!.ToString().Split('.')[0])))
            {
                var worst = g.MaxBy(r => (double)r!["max_rel_error"]! < 0 ? double.PositiveInfinity : (double)r!["max_rel_error"]!)!;
                int bad = g.Count(r => !(bool)r!["passed"]!);
                Console.WriteLine($"model  {g.Key.Case,-62} {g.Key.Kind,-7} worst {(double)worst["max_rel_error"]!:0.00e+00} ({worst["check"]}) tol {(double)worst["tolerance"]!:0e+00} {(bad == 0 ? "ok" : $"{bad} FAILED")}");
            }
        if (report["model_parity_status"] is { } ms) Console.WriteLine($"model parity      {ms}");
        if (report["steady_state"] is { } ss) Console.WriteLine($"allocator         {ss["check"]}: {ss["driver_allocations"]} {((bool)ss["passed"]! ? "ok" : "FAIL")}");
        if (report["steady_state_status"] is { } sss) Console.WriteLine($"allocator         {sss}");
        Console.WriteLine((bool)report["ok"]! ? "ok" : "FAILED");
    }
}
