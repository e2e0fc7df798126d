using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Cli;

/// <summary>
/// The one place backends are built (the composition root): --device, --gemm and the environment's backend choices
/// (WHITTLE_CPU_GEMM, WHITTLE_CUDA_ALLOCATOR) are resolved here and passed to the backends as arguments.
/// </summary>
static class Backends
{
    /// <summary>The backend --device names (cpu or cuda), with an explicit CPU GEMM choice or the environment's.</summary>
    public static IBackend Create(string device, string? cpuGemm = null) => device.ToLowerInvariant() switch
    {
        "cpu" => Cpu(cpuGemm),
        "cuda" or "gpu" => Cuda(),
        _ => throw new WhittleException($"unknown device '{ErrorText.Clip(device, 40)}' (expected cpu or cuda)"),
    };

    /// <summary>A CPU backend whose MatMul runs <paramref name="gemm"/> (--gemm), else WHITTLE_CPU_GEMM, else auto.</summary>
    public static CpuBackend Cpu(string? gemm = null) =>
        gemm is null ? new CpuBackend() : new CpuBackend(CpuGemmChoice.Parse(gemm, "--gemm"));

    /// <summary>The first CUDA device, with the allocator WHITTLE_CUDA_ALLOCATOR asks for.</summary>
    public static CudaBackend Cuda() => new(allocatorMode: DeviceAllocator.ModeFromEnvironment());
}
