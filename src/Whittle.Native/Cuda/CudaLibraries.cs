using System.Reflection;
using System.Runtime.InteropServices;

namespace Whittle.Native.Cuda;

/// <summary>
/// Finds the CUDA shared libraries at run time. Policy: the first hit in this order wins, and the path loaded is
/// remembered for <c>whittle doctor</c>:
///   1. the folder in WHITTLE_CUDA_LIB_DIR (an explicit override: when set, nothing else is searched);
///   2. CUDA_HOME / CUDA_PATH (lib64, lib, bin);
///   3. /usr/local/cuda/lib64;
///   4. the system loader path (bare sonames: ldconfig, LD_LIBRARY_PATH);
///   5. Python wheels: site-packages/nvidia/*/lib (VIRTUAL_ENV, CONDA_PREFIX, ~/.local, /usr/local/lib, /usr/lib).
/// Each library is tried under its versioned names, newest first. The driver (libcuda.so.1) comes with the GPU driver,
/// not the toolkit, and is never taken from a toolkit's stubs folder. NVRTC's builtins library is preloaded from the
/// folder NVRTC came from, so NVRTC's own dlopen of it finds the matching version.
/// </summary>
public static class CudaLibraries
{
    internal const string DriverName = "whittle-cuda";
    internal const string NvrtcName = "whittle-nvrtc";
    internal const string CublasName = "whittle-cublas";
    internal const string CublasLtName = "whittle-cublasLt";
    public const string OverrideVariable = "WHITTLE_CUDA_LIB_DIR";

    static readonly object Gate = new();
    static bool _installed;
    static readonly Dictionary<string, LoadResult> Results = new();

    /// <summary>The outcome of loading one library: the path loaded, or why none could be.</summary>
    public sealed record LoadResult(string Library, string? Path, nint Handle, string? Problem);

    /// <summary>Candidate file names, newest first.</summary>
    internal static string[] FileNames(string logical) => logical switch
    {
        DriverName => OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"],
        NvrtcName => OperatingSystem.IsWindows()
            ? ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"]
            : ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
        CublasName => OperatingSystem.IsWindows() ? ["cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll"]
            : ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
        CublasLtName => OperatingSystem.IsWindows() ? ["cublasLt64_13.dll", "cublasLt64_12.dll", "cublasLt64_11.dll"]
            : ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"],
        _ => throw new ArgumentException($"unknown CUDA library '{logical}'"),
    };

    /// <summary>Folders to search, in order; null stands for "ask the system loader".</summary>
    internal static List<string?> SearchFolders(string logical)
    {
        var dirs = new List<string?>();
        var over = Environment.GetEnvironmentVariable(OverrideVariable);
        if (!string.IsNullOrEmpty(over)) { dirs.Add(over); return dirs; }
        if (logical != DriverName)
        {
            foreach (var v in new[] { "CUDA_HOME", "CUDA_PATH" })
                if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } root)
                    foreach (var sub in new[] { "lib64", "lib", "bin", Path.Combine("targets", "x86_64-linux", "lib") })
                        dirs.Add(Path.Combine(root, sub));
            dirs.Add("/usr/local/cuda/lib64");
        }
        dirs.Add(null);
        if (logical != DriverName) dirs.AddRange(PythonWheelFolders());
        return dirs;
    }

    static IEnumerable<string> PythonWheelFolders()
    {
        var prefixes = new List<string>();
        foreach (var v in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
            if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } p) prefixes.Add(Path.Combine(p, "lib"));
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (home.Length > 0) prefixes.Add(Path.Combine(home, ".local", "lib"));
        prefixes.Add("/usr/local/lib"); prefixes.Add("/usr/lib");
        foreach (var prefix in prefixes)
        {
            if (!Directory.Exists(prefix)) continue;
            string[] pythons;
            try { pythons = Directory.GetDirectories(prefix,
                "python3*"); } catch (IOException) { continue; } catch (UnauthorizedAccessException) { continue; }
            foreach (var py in pythons.OrderDescending(StringComparer.Ordinal))
                foreach (var sp in new[] { "site-packages", "dist-packages" })
                {
                    var nvidia = Path.Combine(py, sp, "nvidia");
                    if (!Directory.Exists(nvidia)) continue;
                    foreach (var pkg in Directory.GetDirectories(nvidia).Order(StringComparer.Ordinal))
                    {
                        var lib = Path.Combine(pkg, "lib");
                        if (Directory.Exists(lib)) yield return lib;
                    }
                }
        }
    }

    /// <summary>Loads (once) and reports one library. Never throws: a failure is described in <see cref="LoadResult.Problem"/>.</summary>
    public static LoadResult Load(string logical)
    {
        lock (Gate)
        {
            if (Results.TryGetValue(logical, out var r)) return r;
            r = Resolve(logical);
            Results[logical] = r;
            return r;
        }
    }

    /// <summary>Forgets what was found (tests of the search order use it; handles already loaded stay loaded).</summary>
    internal static void ResetForTests() { lock (Gate) Results.Clear(); }

    static LoadResult Resolve(string logical)
    {
        var tried = new List<string>();
        foreach (var dir in SearchFolders(logical))
            foreach (var file in FileNames(logical))
            {
                if (dir is null)
                {
                    tried.Add(file);
                    if (NativeLibrary.TryLoad(file, out var h)) return new LoadResult(logical, file + " (system loader)", h, null);
                    continue;
                }
                var full = Path.Combine(dir, file);
                if (!File.Exists(full)) continue;
                tried.Add(full);
                if (logical == NvrtcName) PreloadNvrtcBuiltins(dir);
                if (NativeLibrary.TryLoad(full, out var handle)) return new LoadResult(logical, full, handle, null);
            }
        string what = logical switch { DriverName => "the CUDA driver (libcuda.so.1)", NvrtcName => "NVRTC", CublasName => "cuBLAS",
            _ => "cuBLASLt" };
        return new LoadResult(
            logical, null, 0, $"{what} not found (tried {string.Join(", ", tried)}); set {OverrideVariable} to its folder");
    }

    static void PreloadNvrtcBuiltins(string dir)
    {
        foreach (var f in Directory.GetFiles(dir, OperatingSystem.IsWindows() ? "nvrtc-builtins*.dll" : "libnvrtc-builtins.so*"))
            NativeLibrary.TryLoad(f, out _);
    }

    /// <summary>Registers the resolver for this assembly's [LibraryImport]s (idempotent; the runtime allows one per assembly).</summary>
    internal static void InstallResolver()
    {
        lock (Gate)
        {
            if (_installed) return;
            _installed = true;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolver);
        }
    }

    static nint Resolver(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name is not (DriverName or NvrtcName or CublasName or CublasLtName)) return 0;
        var r = Load(name);
        if (r.Handle == 0) throw new DllNotFoundException(r.Problem);
        return r.Handle;
    }

    /// <summary>True when the library can be loaded; <paramref name="problem"/> says why not otherwise.</summary>
    public static bool TryLoad(string logical, out string? problem)
    {
        var r = Load(logical);
        problem = r.Problem;
        return r.Handle != 0;
    }

    /// <summary>The driver's CUDA version ("13.0"), or null without a driver.</summary>
    public static string? DriverVersion() =>
        Driver.Handle != 0 && Native.CuDriver.cuDriverGetVersion(out int v) == 0 ? $"{v / 1000}.{v % 1000 / 10}" : null;

    /// <summary>cuBLASLt's version number (e.g. 130000), or null when it is not found.</summary>
    public static long? CublasLtVersion() => CublasLt.Handle != 0 ? (long)Native.Cublas.cublasLtGetVersion() : null;

    public static LoadResult Driver => Load(DriverName);
    public static LoadResult Nvrtc => Load(NvrtcName);
    public static LoadResult Cublas => Load(CublasName);
    public static LoadResult CublasLt => Load(CublasLtName);
}
