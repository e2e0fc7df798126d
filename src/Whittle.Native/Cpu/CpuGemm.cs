using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Whittle.Native.Cpu;

/// <summary>Which single-precision GEMM <see cref="CpuBackend.MatMul"/> runs.</summary>
public enum CpuGemm
{
    /// <summary>OpenBLAS when it loads, else ours (see <see cref="CpuGemmChoice.Resolve"/> for the measurements behind this).</summary>
    Auto,
    /// <summary>Gemm.cs with the widest micro-kernel the CPU runs: always available, bit-identical for any thread count.</summary>
    Ours,
    /// <summary>OpenBLAS's cblas_sgemm; an error when the library is not found.</summary>
    OpenBlas,
    /// <summary>Gemm.cs forced onto its scalar micro-kernel (every x86-64 CPU).</summary>
    OursScalar,
    /// <summary>Gemm.cs forced onto its 6x16 Vector256 micro-kernel; an error on a CPU without AVX.</summary>
    OursAvx2,
    /// <summary>Gemm.cs forced onto its 12x32 Vector512 micro-kernel; an error on a CPU without AVX-512F. bf16 operands are
    /// widened while packing (bit-identical on every CPU that runs it).</summary>
    OursAvx512,
    /// <summary>As <see cref="OursAvx512"/> for f32, and bf16 operands on the AVX512-BF16 kernel (Avx512Bf16Kernel); an
    /// error where that kernel cannot run.</summary>
    OursAvx512Bf16,
}

/// <summary>
/// Which GEMM <see cref="CpuBackend.MatMul"/> runs on bf16 operands (--precision bf16: bf16 inputs, f32 accumulation and
/// output). The first two compute the f32 FMA chain of the exactly widened values; the third uses AVX512-BF16's
/// vdpbf16ps where the CPU has it (bench/RESULTS.md, "CPU bf16 GEMM"). AMX is not used (no machine here to test it on).
/// </summary>
public enum CpuBf16Gemm
{
    /// <summary>Gemm.Bf16Gemm: bf16 widened while packing, on the micro-kernel of the f32 choice (bit-identical to our
    /// f32 GEMM of widened copies, without making them).</summary>
    OursPacked,
    /// <summary>f32 copies of both operands, then OpenBLAS's cblas_sgemm (Debian's OpenBLAS exports no cblas_sbgemm).</summary>
    OpenBlasWidened,
    /// <summary>Gemm.Bf16DotGemm: bf16 pairs on vdpbf16ps (Avx512Bf16Kernel), f32 accumulation in another association
    /// than the FMA chain; chosen by auto and ours when the CPU reports AVX512_BF16, forced by ours-avx512bf16.</summary>
    OursAvx512Bf16,
}

/// <summary>
/// Parsing and resolving the GEMM choice (constructor argument, or WHITTLE_CPU_GEMM = auto | ours | openblas |
/// ours-scalar | ours-avx2 | ours-avx512). The forced paths exist so CI can run the numerics-sensitive tests under every
/// GEMM this CPU has (tools/gemm-matrix.sh): a path the CPU lacks is refused, never silently replaced by another.
/// </summary>
public static class CpuGemmChoice
{
    public const string Variable = "WHITTLE_CPU_GEMM";

    /// <summary>Every value <see cref="Parse"/> accepts, in the order tools/gemm-matrix.sh tries them.</summary>
    public static readonly IReadOnlyList<string> Names =
        ["auto", "ours", "openblas", "ours-scalar", "ours-avx2", "ours-avx512", "ours-avx512bf16"];

    public static CpuGemm Parse(string? text, string source) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => CpuGemm.Auto,
        "ours" => CpuGemm.Ours,
        "openblas" => CpuGemm.OpenBlas,
        "ours-scalar" => CpuGemm.OursScalar,
        "ours-avx2" => CpuGemm.OursAvx2,
        "ours-avx512" => CpuGemm.OursAvx512,
        "ours-avx512bf16" => CpuGemm.OursAvx512Bf16,
        _ => throw new WhittleException($"{source}: unknown CPU GEMM '{ErrorText.Clip(text)}' (expected {string.Join(", ", Names)})"),
    };

    public static CpuGemm FromEnvironment() => Parse(Environment.GetEnvironmentVariable(Variable), Variable);

    /// <summary>The option value that selects <paramref name="gemm"/> (a resolved choice prints as what it runs).</summary>
    public static string Name(CpuGemm gemm) => gemm switch
    {
        CpuGemm.Auto => "auto",
        CpuGemm.Ours => "ours",
        CpuGemm.OpenBlas => "openblas",
        CpuGemm.OursScalar => "ours-scalar",
        CpuGemm.OursAvx2 => "ours-avx2",
        CpuGemm.OursAvx512 => "ours-avx512",
        _ => "ours-avx512bf16",
    };

    /// <summary>The option-style name of a bf16 GEMM: ours-packed, openblas-widened or ours-avx512bf16.</summary>
    public static string Name(CpuBf16Gemm gemm) => gemm switch
    {
        CpuBf16Gemm.OursPacked => "ours-packed",
        CpuBf16Gemm.OpenBlasWidened => "openblas-widened",
        _ => "ours-avx512bf16",
    };

    /// <summary>
    /// The bf16 GEMM for a requested and a resolved f32 choice. Auto and ours take the AVX512-BF16 dot-product kernel
    /// when this process can run it (Avx512Bf16Kernel.IsAvailable), ours packed otherwise; a forced path runs what it
    /// names (tools/gemm-matrix.sh): ours-scalar/avx2/avx512 their f32 kernel on widened panels, openblas its sgemm on
    /// widened copies. Auto takes ours even where it resolves to OpenBLAS, because OpenBLAS has no bf16 GEMM here and its
    /// widened copies cost more than they save: at the small config's eval shapes ours packed ran 0.95–1.14× our f32
    /// GEMM and ~2× OpenBLAS on widened copies (bench/RESULTS.md, "CPU bf16 GEMM", AMD EPYC with AVX-512, OpenBLAS on its
    /// Haswell kernels).
    /// </summary>
    public static CpuBf16Gemm ResolveBf16(CpuGemm requested, CpuGemm resolved) => requested switch
    {
        CpuGemm.OpenBlas when resolved == CpuGemm.OpenBlas => CpuBf16Gemm.OpenBlasWidened,
        CpuGemm.OursAvx512Bf16 => CpuBf16Gemm.OursAvx512Bf16,   // Resolve refused it where the kernel cannot run
        CpuGemm.Auto or CpuGemm.Ours when Avx512Bf16Kernel.IsAvailable => CpuBf16Gemm.OursAvx512Bf16,
        _ => CpuBf16Gemm.OursPacked,
    };

    /// <summary>OpenBLAS core names (openblas_get_corename) whose sgemm kernels are AVX2 or older: known, so that an
    /// unknown or newer core keeps OpenBLAS (Zen is left out: newer OpenBLAS builds run AVX-512 kernels for Zen 4).</summary>
    static readonly string[] PreAvx512Cores =
        ["haswell", "sandybridge", "nehalem", "core2", "penryn", "dunnington", "atom", "prescott", "barcelona", "bulldozer",
            "piledriver", "steamroller", "excavator", "opteron"];

    /// <summary>
    /// Whether Auto takes ours over a loadable OpenBLAS: when our AVX-512 micro-kernel runs here and OpenBLAS names a core
    /// whose kernels are AVX2 or older (see <see cref="Resolve"/> for the measurements).
    /// </summary>
    public static bool PrefersOurs(bool oursHasAvx512, string? openBlasCore) =>
        oursHasAvx512 && openBlasCore is not null && PreAvx512Cores.Contains(openBlasCore.ToLowerInvariant());

    /// <summary>The micro-kernel a forced ours-* path pins (null: Gemm.Best, or not ours at all).</summary>
    internal static Gemm.Kernel? KernelOf(CpuGemm gemm) => gemm switch
    {
        CpuGemm.OursScalar => Gemm.Kernel.Scalar,
        CpuGemm.OursAvx2 => Gemm.Kernel.Avx256,
        CpuGemm.OursAvx512 or CpuGemm.OursAvx512Bf16 => Gemm.Kernel.Avx512,
        _ => null,
    };

    /// <summary>Whether this process can run a micro-kernel: the same tests Gemm.Best makes (the JIT must accelerate
    /// the vector width, not merely emulate it, and the ISA must be present; DOTNET_EnableAVX512F=0 and the like turn
    /// them off).</summary>
    internal static bool Supports(Gemm.Kernel kernel) => kernel switch
    {
        Gemm.Kernel.Avx512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported,
        Gemm.Kernel.Avx256 => Vector256.IsHardwareAccelerated && Avx.IsSupported,
        _ => true,
    };

    /// <summary>The values of <see cref="Names"/> this process can run, Auto and Ours aside (they are aliases of one of
    /// these): what tools/gemm-matrix.sh iterates over. OpenBLAS is listed when the library loads.</summary>
    public static IReadOnlyList<string> SupportedPaths()
    {
        var paths = new List<string> { "ours-scalar" };
        if (Supports(Gemm.Kernel.Avx256)) paths.Add("ours-avx2");
        if (Supports(Gemm.Kernel.Avx512)) paths.Add("ours-avx512");
        if (Supports(Gemm.Kernel.Avx512) && Avx512Bf16Kernel.IsAvailable) paths.Add("ours-avx512bf16");
        if (OpenBlas.TryLoad(out _)) paths.Add("openblas");
        return paths;
    }

    /// <summary>
    /// The GEMM a backend will actually run: Ours, OursScalar/Avx2/Avx512 or OpenBlas (Auto resolved). An explicit
    /// OpenBlas that cannot load, or a forced micro-kernel the CPU lacks, is an error naming what was tried; Auto
    /// without the library is ours, silently (absence is normal).
    /// What Auto means comes from measurements. On a 2-core AVX-512 Xeon (bench/RESULTS.md, 2026-11-22) OpenBLAS 0.3.21's
    /// sgemm was faster than ours on the small config's training shapes (ours/OpenBLAS 0.71-0.95, geometric mean ~0.8 in
    /// BenchmarkDotNet) and the whole train step ran ~10% faster with it (once its workers no longer spin between calls,
    /// see OpenBlas.ShortenSpinWait); without AVX ours is a scalar loop at ~2% of OpenBLAS. So Auto takes OpenBLAS when it
    /// loads, except where OpenBLAS runs the kernels of an AVX2-or-older core on a CPU where ours runs AVX-512
    /// (<see cref="PrefersOurs"/>): on the AMD EPYC machines of this workplace, whose environment pins
    /// OPENBLAS_CORETYPE=Haswell, ours ran the model's shapes at 1.28–1.79× OpenBLAS (bench/RESULTS.md, "The AVX512-BF16
    /// kernel (session 5)", f32 columns) and the train step and eval at 1.27× and 1.48× ("Idle rerun (the lead, after
    /// all of session 4's merges)"). Ours stays the choice for exact reproducibility: it is bit-identical for any thread
    /// count by construction, which OpenBLAS does not promise.
    /// </summary>
    public static CpuGemm Resolve(CpuGemm choice, int threads)
    {
        if (KernelOf(choice) is { } kernel)
        {
            if (!Supports(kernel))
                throw new WhittleException($"CPU GEMM '{Name(choice)}' requested but this CPU (or the .NET runtime's settings) lacks " +
                    $"{(kernel == Gemm.Kernel.Avx512 ? "AVX-512F" : "AVX")}; this machine supports {string.Join(", ", SupportedPaths())}");
            if (choice == CpuGemm.OursAvx512Bf16 && !Avx512Bf16Kernel.TryGet(out var why))
                throw new WhittleException($"CPU GEMM '{Name(choice)}' requested but the AVX512-BF16 kernel cannot run: {why}; this " +
                    $"machine supports {string.Join(", ", SupportedPaths())}");
            return choice;
        }
        if (choice == CpuGemm.Ours) return CpuGemm.Ours;
        if (!OpenBlas.TryLoad(out var problem))
        {
            if (choice == CpuGemm.OpenBlas) throw new WhittleException($"CPU GEMM 'openblas' requested but {problem}");
            return CpuGemm.Ours;
        }
        if (choice == CpuGemm.Auto && PrefersOurs(Supports(Gemm.Kernel.Avx512), OpenBlas.CoreName)) return CpuGemm.Ours;
        // One pool size for the process: OpenBLAS's workers and ours (the .NET pool) then share the cores evenly.
        OpenBlas.SetThreads(threads);
        return CpuGemm.OpenBlas;
    }
}
