using K = Whittle.Native.Tensors.KernelConstants;

namespace Whittle.Native.Cuda.Launchers;

/// <summary>
/// kernels/attention_mma.cu (bf16 tensor cores: forward for head sizes 64 and 128, backward for 64), and each kernel's
/// geometry, derived from the tile constants the kernels are compiled with.
/// </summary>
internal static class AttentionMma
{
    public const string File = "attention_mma.cu";
    const int F32 = sizeof(float), Bf16 = sizeof(ushort);

    /// <summary>Head sizes with a tensor-core forward / backward.</summary>
    public static bool HasForward(int d) => d is 64 or 128;
    public static bool HasBackward(int d) => d == 64;

    /// <summary>bf16 forward (head size 64 or 128): MMA_BR query rows per block of four warps; bf16 Q and K tiles padded
    /// to D+8 and the transposed V tile padded to MMA_BC+8 (27 KB for D = 64, 53 KB for D = 128).</summary>
    public static LaunchShape ForwardShape(int b, int t, int h, int d) =>
        new((t + K.MmaAttentionRows - 1) / K.MmaAttentionRows, b * h, 128,
            (K.MmaAttentionRows * (d + 8) + K.MmaAttentionKeys * (d + 8) + d * (K.MmaAttentionKeys + 8)) * Bf16);

    /// <summary>One bf16 (MMA_BR, 64 + 8) tile: the unit of the D = 64 backward kernels' shared memory.</summary>
    const int MmaTile64 = K.MmaAttentionRows * (64 + 8) * Bf16;

    /// <summary>bf16 backward dq (D = 64): Q, dO, K, V and dS tiles.</summary>
    public static LaunchShape BackwardDqShape(int b, int t, int h) =>
        new((t + K.MmaAttentionRows - 1) / K.MmaAttentionRows, b * h, 128, 5 * MmaTile64);

    /// <summary>bf16 backward dk, dv (D = 64): six tiles, two rows of f32 statistics; a block per MMA_BC key rows of a kv head.</summary>
    public static LaunchShape BackwardDkDvShape(int b, int t, int kv) =>
        new((t + K.MmaAttentionKeys - 1) / K.MmaAttentionKeys, b * kv, 128, 6 * MmaTile64 + 2 * K.MmaAttentionRows * F32);

    [Kernels("attention_forward_mma_d64", "attention_forward_mma_d128")]
    public static void Forward(IKernelLauncher l, string kernel, nint q, nint k, nint v, nint output, nint lse, int b, int t, int h, int kv,
        int d, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) =>
        l.Launch(File, kernel, ForwardShape(b, t, h, d), l.Args().Add(q).Add(k).Add(v).Add(output).Add(lse).Add(b).Add(t).Add(h).Add(kv)
            .Add(d).Add(scale).Add(sq).Add(sk).Add(sv).Add(so));

    /// <summary>The forward kernel for head size <paramref name="d"/> (64 or 128).</summary>
    public static string ForwardKernel(int d) => $"attention_forward_mma_d{d}";

    [Kernels("attention_backward_dq_mma_d64")]
    public static void BackwardDq(IKernelLauncher l, nint dOut, nint q, nint k, nint v, nint lse, nint dt, nint dq, int b, int t, int h,
        int kv, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdq) =>
        l.Launch(File, "attention_backward_dq_mma_d64", BackwardDqShape(b, t, h), l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse).Add(dt)
            .Add(dq).Add(b).Add(t).Add(h).Add(kv).Add(d).Add(scale).Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdq));

    [Kernels("attention_backward_dkdv_mma_d64")]
    public static void BackwardDkDv(IKernelLauncher l, nint dOut, nint q, nint k, nint v, nint lse, nint dt, nint dk, nint dv, int b,
        int t, int h, int kv, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdk, Bthd sdv) =>
        l.Launch(File, "attention_backward_dkdv_mma_d64", BackwardDkDvShape(b, t, kv), l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse)
            .Add(dt).Add(dk).Add(dv).Add(b).Add(t).Add(h).Add(kv).Add(d).Add(scale).Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdk).Add(sdv));
}
