namespace Whittle.Native.Tensors;

/// <summary>
/// The numbers the C# side and <c>kernels/*.cu</c> must agree on, defined here and nowhere else. Policy: each constant
/// marked <see cref="KernelDefineAttribute"/> is a literal; <see cref="Cuda.KernelCompiler"/> passes it to NVRTC as
/// <c>-DNAME=value</c> (so it is part of the kernel cache key) and <c>softgpu/build.sh</c> reads this file and passes the
/// same to g++. The kernels never define them; a kernel compiled without them does not compile.
/// </summary>
public static class KernelConstants
{
    // attention.cu, f32 kernels: query rows per block (one warp each), keys per shared-memory tile, the largest head size
    [KernelDefine("BR")] public const int AttentionRows = 8;
    [KernelDefine("BC")] public const int AttentionKeys = 32;
    [KernelDefine("MAX_D")] public const int AttentionMaxHeadSize = 256;
    // attention.cu, bf16 tensor-core kernels: query rows and keys per tile (four warps of 16 rows)
    [KernelDefine("MMA_BR")] public const int MmaAttentionRows = 64;
    [KernelDefine("MMA_BC")] public const int MmaAttentionKeys = 64;

    // common.cuh: codes a kernel writes into the device error word (CudaBackend reports them by name)
    [KernelDefine("ERR_EMBEDDING_ID")] public const int ErrorEmbeddingId = 1;
    [KernelDefine("ERR_CE_TARGET")] public const int ErrorCrossEntropyTarget = 2;
    [KernelDefine("ERR_KD_TOPK_ID")] public const int ErrorTopKId = 3;

    // distillation.cu: the Jensen–Shannon kind (DistillKind.JensenShannon) and the floor of the teacher's tail mass
    // inside a log (the CPU backend uses the same floor)
    [KernelDefine("KIND_JS")] public const int KindJensenShannon = 3;
    [KernelDefine("TAIL_FLOOR")] public const float TailFloor = 1e-30f;

    /// <summary>Every constant as NVRTC's -D options, in declaration order.</summary>
    public static IReadOnlyList<string> Defines { get; } = typeof(KernelConstants).GetFields()
        .Select(f => (Field: f, Attribute: (KernelDefineAttribute?)Attribute.GetCustomAttribute(f, typeof(KernelDefineAttribute))))
        .Where(x => x.Attribute is not null)
        .Select(x => $"-D{x.Attribute!.Name}={Literal(x.Field.GetValue(null)!)}")
        .ToArray();

    static string Literal(object value) => value switch
    {
        float f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture).ToLowerInvariant() + "f",
        IFormattable v => v.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => throw new InvalidOperationException($"kernel constant of type {value.GetType()}"),
    };
}

/// <summary>Marks a <see cref="KernelConstants"/> field as the kernels' macro <paramref name="name"/>.</summary>
[AttributeUsage(AttributeTargets.Field)]
public sealed class KernelDefineAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}
