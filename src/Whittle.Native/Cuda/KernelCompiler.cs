using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Whittle.Native.Cuda.Native;
using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>What NVRTC is asked to produce: PTX for a virtual arch (compute_XY, JIT-compiled by the driver) or a CUBIN for a real one
/// (sm_XY).</summary>
public enum KernelBinary { Ptx, Cubin }

/// <summary>One compiled kernel file: the image handed to cuModuleLoadData (PTX is NUL-terminated).
/// <see cref="Warnings"/> is NVRTC's log of a clean but warned compile ("" otherwise, and for a cache hit).</summary>
public sealed record CompiledKernel(
    string File, int Arch, KernelBinary Kind, byte[] Image, bool FromCache, string Key, string Warnings = "");

/// <summary>NVRTC rejected a kernel file or warned about it; <see cref="Log"/> is NVRTC's own text.</summary>
public sealed class KernelCompileException(string file, string target, string log)
    : Exception($"NVRTC could not compile kernels/{file} for {target} cleanly:\n{log}")
{
    public string File { get; } = file;
    public string Target { get; } = target;
    public string Log { get; } = log;
}

/// <summary>
/// Compiles the embedded <c>kernels/*.cu</c> with NVRTC and caches the result on disk.
/// Policy:
///  - options are fixed: <c>--gpu-architecture=compute_XY</c> (PTX) or <c>sm_XY</c> (CUBIN), <c>-default-device</c>,
/// <c>--std=c++17</c>, and the <see cref="KernelConstants"/> as <c>-D</c> defines; every <c>kernels/*.cuh</c> is passed as an NVRTC header,
/// so no toolkit headers are needed;
///  - any error fails the compile with NVRTC's log. A warning (the log is non-empty only on an error or a warning) is
///    logged through <see cref="WarningSink"/> and kept in <see cref="CompiledKernel.Warnings"/>: a new NVRTC (13 on the
///    GPU machine; CI has 11.8) may warn where ours did not, and that must not cost a GPU session. Strict mode
///    (<c>strict: true</c>, or <c>WHITTLE_NVRTC_STRICT=1</c>) keeps a warning fatal: the kernel compile tests use it, so CI
///    still rejects any warning its NVRTC gives;
///  - cache: <c>$WHITTLE_CACHE_DIR</c> or <c>~/.cache/whittle/kernels</c>, file <c>&lt;key&gt;.ptx|.cubin</c> where key =
///    SHA-256 of (sources, options, NVRTC version, arch). A file holds SHA-256(image) followed by the image, is written
///    to a unique temporary name and renamed into place (atomic, so concurrent processes at worst compile twice), and is
///    rebuilt when its hash does not match (a torn or corrupted entry is never trusted).
/// </summary>
public sealed class KernelCompiler
{
    const string ResourcePrefix = "kernels/";
    static readonly Assembly Self = typeof(KernelCompiler).Assembly;

    public KernelCompiler(string? cacheDir = null, bool? strict = null)
    {
        CacheDir = cacheDir ?? DefaultCacheDir();
        Strict = strict ?? StrictFromEnvironment;
    }

    public const string StrictVariable = "WHITTLE_NVRTC_STRICT";
    static bool StrictFromEnvironment => Environment.GetEnvironmentVariable(StrictVariable) is "1" or "true";

    /// <summary>Where a non-strict compile reports NVRTC's warnings (stderr unless replaced).</summary>
    public static Action<string> WarningSink { get; set; } = m => Console.Error.WriteLine(m);

    public string CacheDir { get; }
    public bool Strict { get; }
    public int CacheHits { get; private set; }
    public int Compilations { get; private set; }
    public int CorruptEntriesRebuilt { get; private set; }

    public static string DefaultCacheDir()
    {
        var env = Environment.GetEnvironmentVariable("WHITTLE_CACHE_DIR");
        if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "kernels");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home.Length > 0 ? home : Path.GetTempPath(), ".cache", "whittle", "kernels");
    }

    /// <summary>The kernel files embedded in the library (e.g. "attention.cu"), sorted.</summary>
    public static IReadOnlyList<string> KernelFiles { get; } = Self.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    static IReadOnlyList<string> HeaderFiles { get; } = Self.GetManifestResourceNames()
        .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".cuh", StringComparison.Ordinal))
        .Select(n => n[ResourcePrefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    public static string ReadSource(string file)
    {
        using var s = Self.GetManifestResourceStream(ResourcePrefix + file)
            ?? throw new ArgumentException($"no embedded kernel source kernels/{file} (embedded: {string.Join(", ", KernelFiles)})");
        using var r = new StreamReader(s, Encoding.UTF8);
        return r.ReadToEnd();
    }

    public static (int Major, int Minor) NvrtcVersion()
    {
        CudaException.CheckNvrtc(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>The real architectures (e.g. 80, 90) this NVRTC can target.</summary>
    public static unsafe int[] SupportedArchs()
    {
        CudaException.CheckNvrtc(Nvrtc.nvrtcGetNumSupportedArchs(out int n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs) CudaException.CheckNvrtc(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    static string[] Options(int arch, KernelBinary kind) =>
        [$"--gpu-architecture={(kind == KernelBinary.Ptx ? "compute" : "sm")}_{arch}", "-default-device", "--std=c++17",
            .. KernelConstants.Defines];

    /// <summary>Compiles (or fetches from the cache) one kernel file for one architecture.</summary>
    public CompiledKernel Compile(string file, int arch, KernelBinary kind)
    {
        var source = ReadSource(file);
        var headers = HeaderFiles.Select(h => (Name: h, Text: ReadSource(h))).ToArray();
        var options = Options(arch, kind);
        var (major, minor) = NvrtcVersion();
        var key = CacheKey(file, source, headers, options, major, minor, arch);
        var path = Path.Combine(CacheDir, key + (kind == KernelBinary.Ptx ? ".ptx" : ".cubin"));

        switch (TryReadCache(path))
        {
            case { } cached: CacheHits++; return new CompiledKernel(file, arch, kind, cached, true, key);
            case null when File.Exists(path): CorruptEntriesRebuilt++; break;
        }
        var (image, warnings) = RunNvrtc(file, source, headers, options, kind, $"{options[0][("--gpu-architecture=".Length)..]}", Strict);
        Compilations++;
        WriteCache(path, image);
        return new CompiledKernel(file, arch, kind, image, false, key, warnings);
    }

    /// <summary>Compiles free-standing source (no cache, the kernel headers available): for tests of the failure paths.</summary>
    internal static byte[] CompileSource(string name, string source, int arch, KernelBinary kind = KernelBinary.Ptx, bool strict = true)
    {
        var headers = HeaderFiles.Select(h => (Name: h, Text: ReadSource(h))).ToArray();
        var options = Options(arch, kind);
        return RunNvrtc(name, source, headers, options, kind, options[0]["--gpu-architecture=".Length..], strict).Image;
    }

    static string CacheKey(
        string file, string source, (string Name, string Text)[] headers, string[] options, int major, int minor, int arch)
    {
        var sb = new StringBuilder();
        sb.Append("whittle-kernel-cache-v1\n").Append(file).Append('\n').Append(source).Append('\n');
        foreach (var (name, text) in headers) sb.Append(name).Append('\n').Append(text).Append('\n');
        sb.Append(string.Join(' ', options)).Append('\n').Append($"nvrtc {major}.{minor}\narch {arch}\n");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>The image if the file exists and its stored hash matches, else null.</summary>
    static byte[]? TryReadCache(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        catch (IOException) { return null; }
        if (bytes.Length <= 32) return null;
        var image = bytes[32..];
        return SHA256.HashData(image).AsSpan().SequenceEqual(bytes.AsSpan(0, 32)) ? image : null;
    }

    static void WriteCache(string path, byte[] image)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var tmp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            using (var f = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                f.Write(SHA256.HashData(image));
                f.Write(image);
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException) { /* a read-only or full cache costs a recompile next time, nothing else */ }
        catch (UnauthorizedAccessException) { }
    }

    static unsafe (byte[] Image, string Warnings) RunNvrtc(
        string file, string source, (string Name, string Text)[] headers, string[] options, KernelBinary kind, string target, bool strict)
    {
        var pinned = new List<nint>();
        nint Utf8(string s) { var p = Marshal.StringToCoTaskMemUTF8(s); pinned.Add(p); return p; }
        nint prog = 0;
        try
        {
            var hdr = stackalloc byte*[Math.Max(1, headers.Length)];
            var inc = stackalloc byte*[Math.Max(1, headers.Length)];
            for (int i = 0; i < headers.Length; i++) { hdr[i] = (byte*)Utf8(headers[i].Text); inc[i] = (byte*)Utf8(headers[i].Name); }
            CudaException.CheckNvrtc(Nvrtc.nvrtcCreateProgram(out prog, (byte*)Utf8(source), (byte*)Utf8(file), headers.Length, hdr, inc),
                "nvrtcCreateProgram", $"kernels/{file}");
            var opts = stackalloc byte*[options.Length];
            for (int i = 0; i < options.Length; i++) opts[i] = (byte*)Utf8(options[i]);
            int result = Nvrtc.nvrtcCompileProgram(prog, options.Length, opts);
            string log = ProgramLog(prog);
            if (result != Nvrtc.NVRTC_SUCCESS)
                throw new KernelCompileException(file, target, $"{CudaException.NvrtcErrorName(result)}\n{log}");
            if (log.Length > 0 && strict) throw new KernelCompileException(file, target, log);  // strict: a warning is a failure too
            if (log.Length > 0)
                WarningSink($"warning: NVRTC warned on kernels/{file} for {target} (compiled; {StrictVariable}=1 makes this " +
                $"fatal):\n{log}");

            nuint size;
            byte[] image;
            if (kind == KernelBinary.Ptx)
            {
                CudaException.CheckNvrtc(Nvrtc.nvrtcGetPTXSize(prog, out size), "nvrtcGetPTXSize", $"kernels/{file}");
                image = new byte[(int)size];
                fixed (byte* p = image) CudaException.CheckNvrtc(Nvrtc.nvrtcGetPTX(prog, p), "nvrtcGetPTX", $"kernels/{file}");
            }
            else
            {
                CudaException.CheckNvrtc(Nvrtc.nvrtcGetCUBINSize(prog, out size), "nvrtcGetCUBINSize", $"kernels/{file}");
                image = new byte[(int)size];
                fixed (byte* p = image) CudaException.CheckNvrtc(Nvrtc.nvrtcGetCUBIN(prog, p), "nvrtcGetCUBIN", $"kernels/{file}");
            }
            return (image, log);
        }
        finally
        {
            if (prog != 0) Nvrtc.nvrtcDestroyProgram(ref prog);
            foreach (var p in pinned) Marshal.FreeCoTaskMem(p);
        }
    }

    static unsafe string ProgramLog(nint prog)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(prog, out var size) != 0 || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) if (Nvrtc.nvrtcGetProgramLog(prog, p) != 0) return "";
        return Encoding.UTF8.GetString(buf).TrimEnd('\0').Trim();
    }
}
