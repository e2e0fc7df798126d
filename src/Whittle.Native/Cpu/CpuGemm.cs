namespace Whittle.Native.Cpu;

/// <summary>Which single-precision GEMM <see cref="CpuBackend.MatMul"/> runs.</summary>
public enum CpuGemm
{
    /// <summary>OpenBLAS when it loads, else ours (see <see cref="CpuGemmChoice.Resolve"/> for the measurements behind this).</summary>
    Auto,
    /// <summary>Gemm.cs: always available, bit-identical for any thread count.</summary>
    Ours,
    /// <summary>OpenBLAS's cblas_sgemm; an error when the library is not found.</summary>
    OpenBlas,
}

/// <summary>Parsing and resolving the GEMM choice (constructor argument, or WHITTLE_CPU_GEMM = ours | openblas | auto).</summary>
public static class CpuGemmChoice
{
    public const string Variable = "WHITTLE_CPU_GEMM";

    public static CpuGemm Parse(string? text, string source) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => CpuGemm.Auto,
        "ours" => CpuGemm.Ours,
        "openblas" => CpuGemm.OpenBlas,
        _ => throw new WhittleException($"{source}: unknown CPU GEMM '{text}' (expected ours, openblas or auto)"),
    };

    public static CpuGemm FromEnvironment() => Parse(Environment.GetEnvironmentVariable(Variable), Variable);

    /// <summary>
    /// The GEMM a backend will actually run: Ours or OpenBlas (Auto resolved). An explicit OpenBlas that cannot load is
    /// an error naming what was tried; Auto without the library is ours, silently (absence is normal).
    /// What Auto means comes from measurements (bench/RESULTS.md, 2-core AVX-512 Xeon, 2026-11-22): OpenBLAS 0.3.21's
    /// sgemm is faster than ours on the small config's training shapes (ours/OpenBLAS 0.71-0.95, geometric mean ~0.8 in BenchmarkDotNet)
    /// and the whole train step ran ~10% faster with it (once its workers no longer spin between calls, see
    /// OpenBlas.ShortenSpinWait); without AVX ours is a scalar loop at ~2% of OpenBLAS. So Auto takes OpenBLAS when it
    /// loads. Ours stays the choice for exact reproducibility: it is bit-identical for any thread count by construction,
    /// which OpenBLAS does not promise.
    /// </summary>
    public static CpuGemm Resolve(CpuGemm choice, int threads)
    {
        if (choice == CpuGemm.Ours) return CpuGemm.Ours;
        if (!OpenBlas.TryLoad(out var problem))
        {
            if (choice == CpuGemm.OpenBlas) throw new WhittleException($"CPU GEMM 'openblas' requested but {problem}");
            return CpuGemm.Ours;
        }
        // One pool size for the process: OpenBLAS's workers and ours (the .NET pool) then share the cores evenly.
        OpenBlas.SetThreads(threads);
        return CpuGemm.OpenBlas;
    }
}
