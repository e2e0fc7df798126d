using System.CommandLine;
using System.Text.Json.Nodes;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;

namespace Whittle.Cli;

/// <summary>
/// <c>whittle doctor [--json]</c>: what this machine offers the engine. Reports the runtime, the CUDA libraries found (and
/// from where), driver/NVRTC/cuBLAS versions and devices; compiles every kernel (for the device's arch, or compute_80 and
/// compute_90 without one); runs the parity harness when a device and the CPU backend exist.
/// Exit status: 0 when nothing failed (including "no CUDA device"), 1 on any kernel compile or parity failure.
/// </summary>
static class DoctorCommand
{
    public static Command Create()
    {
        var cmd = new Command("doctor", "Check the CUDA runtime: libraries, devices, kernel compilation and CPU/GPU parity.");
        cmd.Options.Add(CliCommon.Json);
        cmd.SetAction(parse => Run(parse.GetValue(CliCommon.Json)));
        return cmd;
    }

    static int Run(bool json)
    {
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
                using var gpu = new CudaBackend();
                var results = new ParityHarness(cpu, gpu).Run();
                var arr = new JsonArray();
                foreach (var r in results)
                    arr.Add((JsonNode)new JsonObject { ["op"] = r.Op, ["case"] = r.Case, ["max_rel_error"] = double.IsFinite(r.MaxRelativeError) ? r.MaxRelativeError : -1, ["tolerance"] = r.Tolerance, ["passed"] = r.Passed });
                report["parity"] = arr;
                report["parity_failed"] = results.Count(r => !r.Passed);
                if (results.Any(r => !r.Passed)) failed = true;
            }
        }
        report["ok"] = !failed;

        if (json) Console.Out.WriteLine(report.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        else PrintText(report, count);
        return failed ? 1 : 0;
    }

    /// <summary>The parity reference: the CPU backend, the ground truth.</summary>
    static IBackend CreateReference() => new Whittle.Native.Cpu.CpuBackend();

    static void PrintText(JsonObject report, int devices)
    {
        Console.WriteLine($"runtime           {report["runtime"]}");
        foreach (var (name, path) in report["libraries"]!.AsObject()) Console.WriteLine($"{name,-17} {path}");
        foreach (var key in new[] { "driver_version", "nvrtc_version", "cublaslt_version" })
            if (report[key] is { } v) Console.WriteLine($"{key,-17} {v}");
        if (devices == 0) Console.WriteLine(report["device_status"]);
        foreach (var d in report["devices"]!.AsArray()) Console.WriteLine($"device {d!["ordinal"]}          {d["name"]} (sm {d["compute_capability"]}, {d["multiprocessors"]} SMs)");
        Console.WriteLine($"kernels compiled  {report["kernels_compiled"]}{(report["kernels_status"] is { } s ? $" ({s})" : "")}");
        foreach (var f in report["kernels_failed"]!.AsArray()) Console.WriteLine($"kernel FAILED     {f}");
        if (report["parity"] is JsonArray parity)
            foreach (var r in parity) Console.WriteLine($"parity {r!["op"],-22} {r["case"],-44} {(double)r["max_rel_error"]!:0.00e+00} {((bool)r["passed"]! ? "ok" : "FAIL")}");
        else if (report["parity"] is { } p) Console.WriteLine($"parity            {p}");
        Console.WriteLine((bool)report["ok"]! ? "ok" : "FAILED");
    }
}
