namespace Whittle.Native.Tensors;

/// <summary>Element types a tensor can hold. F16 exists only to read checkpoints; compute is F32 (and BF16 on CUDA).</summary>
public enum DType { F32, BF16, F16, I32 }

public enum Device { Cpu, Cuda }

public static class DTypeInfo
{
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 or DType.I32 => 4,
        DType.BF16 or DType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>The dtype names safetensors uses.</summary>
    public static string SafetensorsName(this DType t) => t switch
    {
        DType.F32 => "F32", DType.BF16 => "BF16", DType.F16 => "F16", DType.I32 => "I32",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static string Name(this DType t) => t.ToString().ToLowerInvariant();
}
