using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Native.Tensors;

/// <summary>Backend by name, as the CLI's --device takes it.</summary>
public static class Backends
{
    public static IBackend Create(string device) => device.ToLowerInvariant() switch
    {
        "cpu" => new CpuBackend(),
        "cuda" or "gpu" => new CudaBackend(),
        _ => throw new WhittleException($"unknown device '{device}' (expected cpu or cuda)"),
    };
}
