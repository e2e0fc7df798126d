using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Native.Tests;

/// <summary>
/// Policy: numerics in the suite are either pinned or bounded. A test that asserts two arrangements of one computation
/// agree more tightly than float32 rounding of the GEMMs allows (chunked vs whole LM head, resume vs uninterrupted)
/// runs on <see cref="PinnedCpu"/>: our GEMM produces every C element as the same FMA chain in increasing k for any
/// shape, tile, kernel and thread count (Cpu/Gemm.cs), so the arrangements differ only where the test says they do.
/// OpenBLAS picks a CPU-specific kernel and may sum in a shape-dependent order, so it is not used for such tests.
/// Every other test runs on the backend WHITTLE_CPU_GEMM selects (CpuBackend.Instance) with a tolerance derived from
/// float32 rounding, and carries <see cref="GemmSensitive"/> so tools/gemm-matrix.sh runs it under every GEMM path.
/// </summary>
static class TestBackends
{
    /// <summary>NUnit category of the tests whose results go through the CPU GEMM (tools/gemm-matrix.sh runs them once per path).</summary>
    public const string GemmSensitive = "GemmSensitive";

    /// <summary>Our GEMM: the micro-kernel WHITTLE_CPU_GEMM forces (ours-scalar | ours-avx2 | ours-avx512), else the
    /// widest. Under WHITTLE_CPU_GEMM=openblas the pinned tests still run ours, which is the point of pinning.</summary>
    public static readonly CpuBackend PinnedCpu = new(PinnedChoice());

    static CpuGemm PinnedChoice()
    {
        var env = CpuGemmChoice.FromEnvironment();
        return env is CpuGemm.OursScalar or CpuGemm.OursAvx2 or CpuGemm.OursAvx512 or CpuGemm.OursAvx512Bf16 ? env : CpuGemm.Ours;
    }

    /// <summary>A CUDA backend for a fixture's OneTimeSetUp, or the fixture is ignored naming why there is no device.</summary>
    public static CudaBackend CudaOrIgnore()
    {
        if (CudaBackend.DeviceCount(out var why) == 0) Assert.Ignore($"no CUDA device: {why}");
        return new CudaBackend();
    }
}
