using System.Runtime.InteropServices;

namespace Whittle.Native.Cpu;

/// <summary>
/// A thin binding to OpenBLAS's cblas_sgemm, found at run time. Policy:
///  - Absence is normal (the engine has its own GEMM): <see cref="TryLoad"/> never throws, it says what was tried.
///  - The path in WHITTLE_OPENBLAS wins when set (and then nothing else is tried); otherwise the system loader is asked
///    for libopenblas.so.0 / libopenblas.so (ldconfig, LD_LIBRARY_PATH), then Debian's and the usual prefixes' folders.
///  - Entry points are taken as unmanaged function pointers from the handle rather than through [LibraryImport]: the
///    assembly's single DllImport resolver belongs to CudaLibraries, and a declared library name could not honour the
///    override path. All arguments are blittable, so the calls are as direct as a LibraryImport stub.
///  - OpenBLAS keeps its own thread pool: <see cref="SetThreads"/> sizes it to the engine's thread count, so a
///    comparison of the two GEMMs is at equal threads and the two pools do not oversubscribe the cores.
/// </summary>
public static unsafe class OpenBlas
{
    public const string OverrideVariable = "WHITTLE_OPENBLAS";

    // CBLAS enums (cblas.h): row-major order, no transpose / transpose.
    const int RowMajor = 101, NoTrans = 111, Trans = 112;

    static readonly object Gate = new();
    static bool _tried;
    static string? _path, _problem;
    static delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> _sgemm;
    static delegate* unmanaged[Cdecl]<int, void> _setThreads;
    static delegate* unmanaged[Cdecl]<int> _getThreads;
    static delegate* unmanaged[Cdecl]<byte*> _getConfig;
    static delegate* unmanaged[Cdecl]<byte*> _getCoreName;

    /// <summary>Candidate library paths in search order (a bare name is resolved by the system loader).</summary>
    internal static string[] Candidates()
    {
        var over = Environment.GetEnvironmentVariable(OverrideVariable);
        if (!string.IsNullOrEmpty(over)) return [over];
        if (OperatingSystem.IsWindows()) return ["libopenblas.dll", "openblas.dll"];
        if (OperatingSystem.IsMacOS())
            return ["libopenblas.dylib", "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
            "/usr/local/opt/openblas/lib/libopenblas.dylib"];
        return
        [
            "libopenblas.so.0", "libopenblas.so",
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
            "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
            "/usr/lib64/libopenblas.so.0", "/usr/local/lib/libopenblas.so.0", "/opt/OpenBLAS/lib/libopenblas.so.0",
        ];
    }

    /// <summary>True when cblas_sgemm is available; otherwise <paramref name="problem"/> says what was tried.</summary>
    public static bool TryLoad(out string? problem)
    {
        lock (Gate)
        {
            if (!_tried) { _tried = true; Resolve(); }
            problem = _problem;
            return _sgemm != null;
        }
    }

    public static bool IsAvailable => TryLoad(out _);

    /// <summary>The library file that was loaded, or null.</summary>
    public static string? LoadedPath => TryLoad(out _) ? _path : null;

    static void Resolve()
    {
        ShortenSpinWait();
        var tried = new List<string>();
        foreach (var candidate in Candidates())
        {
            tried.Add(candidate);
            if (!NativeLibrary.TryLoad(candidate, out var handle)) continue;
            if (!NativeLibrary.TryGetExport(handle, "cblas_sgemm", out var sgemm))
            {
                tried[^1] += " (no cblas_sgemm)";
                continue;
            }
            _sgemm = (delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int,
                void>)sgemm;
            if (NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", out var set))
                _setThreads = (delegate* unmanaged[Cdecl]<int, void>)set;
            if (NativeLibrary.TryGetExport(handle, "openblas_get_num_threads", out var get))
                _getThreads = (delegate* unmanaged[Cdecl]<int>)get;
            if (NativeLibrary.TryGetExport(handle, "openblas_get_config", out var cfg)) _getConfig = (delegate* unmanaged[Cdecl]<byte*>)cfg;
            if (NativeLibrary.TryGetExport(handle, "openblas_get_corename", out var core))
                _getCoreName = (delegate* unmanaged[Cdecl]<byte*>)core;
            _path = candidate;
            return;
        }
        _problem = $"OpenBLAS not found (tried {string.Join(", ", tried)}); install libopenblas0-pthread or set {OverrideVariable} to " +
            $"the library file";
    }

    /// <summary>
    /// After each call OpenBLAS's workers spin for 2^OPENBLAS_THREAD_TIMEOUT cycles (default 2^28, ~0.1 s) before
    /// sleeping. Here GEMMs alternate with ops on .NET's own pool, which would then share the cores with spinning
    /// workers (measured: our GEMM ran ~25% slower right after an OpenBLAS call). The library reads the variable when it
    /// is loaded, from the C environment (which Environment.SetEnvironmentVariable does not change on Unix), so it is
    /// set there first to 2^4 cycles, unless the user set it.
    /// </summary>
    static void ShortenSpinWait()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("OPENBLAS_THREAD_TIMEOUT") is not null) return;
        if (!NativeLibrary.TryLoad("libc.so.6", out var libc) || !NativeLibrary.TryGetExport(libc, "setenv", out var setenv)) return;
        fixed (byte* name = "OPENBLAS_THREAD_TIMEOUT\0"u8, value = "4\0"u8)
            ((delegate* unmanaged[Cdecl]<byte*, byte*, int, int>)setenv)(name, value, 0);
    }

    static void Require()
    {
        if (!TryLoad(out var problem)) throw new DllNotFoundException(problem);
    }

    /// <summary>Sizes OpenBLAS's thread pool (process-wide); a no-op for builds without the call.</summary>
    public static void SetThreads(int threads)
    {
        Require();
        if (_setThreads != null) _setThreads(Math.Max(1, threads));
    }

    /// <summary>OpenBLAS's current thread count, or 0 when the build does not say.</summary>
    public static int Threads
    {
        get { Require(); return _getThreads != null ? _getThreads() : 0; }
    }

    /// <summary>The build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64"), or null.</summary>
    public static string? Config
    {
        get
        {
            Require();
            return _getConfig != null ? Marshal.PtrToStringUTF8((nint)_getConfig())?.Trim() : null;
        }
    }

    /// <summary>The core whose kernels this OpenBLAS runs ("Haswell", "SkylakeX"; OPENBLAS_CORETYPE can pin it), or null
    /// when the build does not say.</summary>
    public static string? CoreName
    {
        get
        {
            Require();
            return _getCoreName != null ? Marshal.PtrToStringUTF8((nint)_getCoreName())?.Trim() : null;
        }
    }

    /// <summary>
    /// Row-major C (m, n) = alpha op(A) op(B) + beta C with the same argument convention as <see cref="Gemm.Sgemm"/>.
    /// CBLAS takes 32-bit leading dimensions; larger ones are refused rather than truncated.
    /// </summary>
    public static void Sgemm(
        bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc)
    {
        Require();
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentOutOfRangeException(nameof(m), $"OpenBLAS sgemm: sizes must be non-negative, got m={m}, n={n}, k={k}");
        if (lda > int.MaxValue || ldb > int.MaxValue || ldc > int.MaxValue)
            throw new ArgumentOutOfRangeException(
                nameof(lda), $"OpenBLAS sgemm: leading dimensions must fit in 32 bits (lda {lda}, ldb {ldb}, ldc {ldc})");
        if (m == 0 || n == 0) return;
        // Degenerate products go to our GEMM (C = beta C, never reading C when beta == 0), where CBLAS would insist on
        // leading dimensions for an empty operand.
        if (k == 0 || alpha == 0f) { Gemm.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return; }
        Check(nameof(lda), lda, transA ? m : k);
        Check(nameof(ldb), ldb, transB ? k : n);
        Check(nameof(ldc), ldc, n);
        _sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    }

    // CBLAS reports a bad leading dimension by printing to stderr and returning; refuse it here with a real error.
    static void Check(string name, long ld, int columns)
    {
        if (ld < Math.Max(1, columns))
            throw new ArgumentOutOfRangeException(
                name, $"OpenBLAS sgemm: {name} = {ld} is smaller than the {columns} columns of the stored matrix");
    }
}
