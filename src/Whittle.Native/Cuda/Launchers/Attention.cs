using Whittle.Native.Tensors;
using K = Whittle.Native.Tensors.KernelConstants;

namespace Whittle.Native.Cuda.Launchers;

/// <summary>
/// kernels/attention.cu, and the geometry of each of its kernels (grid, block, dynamic shared memory) in one place,
/// derived from the tile constants the kernels are compiled with (<see cref="KernelConstants"/>).
/// </summary>
internal static class Attention
{
    public const string File = "attention.cu";
    const int F32 = sizeof(float), Bf16 = sizeof(ushort);

    /// <summary>f32 forward: BR query rows per block (a warp each); K and V tiles of BC keys padded to D+1, BR rows of D.</summary>
    public static LaunchShape ForwardShape(int b, int t, int h, int d) =>
        new((t + K.AttentionRows - 1) / K.AttentionRows, b * h, K.AttentionRows * 32, (2 * K.AttentionKeys * (d + 1) + K.AttentionRows * d) * F32);

    /// <summary>f32 backward, dq: the forward's tiles plus BR rows of dO.</summary>
    public static LaunchShape BackwardDqShape(int b, int t, int h, int d) =>
        new((t + K.AttentionRows - 1) / K.AttentionRows, b * h, K.AttentionRows * 32, (2 * K.AttentionKeys * (d + 1) + 2 * K.AttentionRows * d) * F32);

    /// <summary>f32 backward, dk and dv: dq's tiles plus two rows of BC statistics.</summary>
    public static LaunchShape BackwardDkDvShape(int b, int t, int h, int d) =>
        BackwardDqShape(b, t, h, d) with { SharedBytes = BackwardDqShape(b, t, h, d).SharedBytes + 2 * K.AttentionKeys * F32 };

    /// <summary>dO · O per row (B, H, T): a warp per row, 8 rows per block.</summary>
    public static LaunchShape BackwardDotShape(int b, int t, int h) => new(((long)b * h * t + 7) / 8, 1, 256, 0);

    /// <summary>bf16 forward (head size 64 or 128): MMA_BR query rows per block of four warps; bf16 Q and K tiles padded
    /// to D+8 and the transposed V tile padded to MMA_BC+8 (27 KB for D = 64, 53 KB for D = 128).</summary>
    public static LaunchShape MmaForwardShape(int b, int t, int h, int d) =>
        new((t + K.MmaAttentionRows - 1) / K.MmaAttentionRows, b * h, 128,
            (K.MmaAttentionRows * (d + 8) + K.MmaAttentionKeys * (d + 8) + d * (K.MmaAttentionKeys + 8)) * Bf16);

    /// <summary>One bf16 (MMA_BR, 64 + 8) tile: the unit of the D = 64 backward kernels' shared memory.</summary>
    const int MmaTile64 = K.MmaAttentionRows * (64 + 8) * Bf16;

    /// <summary>bf16 backward dq (D = 64): Q, dO, K, V and dS tiles.</summary>
    public static LaunchShape MmaBackwardDqShape(int b, int t, int h) =>
        new((t + K.MmaAttentionRows - 1) / K.MmaAttentionRows, b * h, 128, 5 * MmaTile64);

    /// <summary>bf16 backward dk, dv (D = 64): six tiles and two rows of f32 statistics.</summary>
    public static LaunchShape MmaBackwardDkDvShape(int b, int t, int h) =>
        new((t + K.MmaAttentionKeys - 1) / K.MmaAttentionKeys, b * h, 128, 6 * MmaTile64 + 2 * K.MmaAttentionRows * F32);

    [Kernels("attention_forward", "attention_forward_mma_d64", "attention_forward_mma_d128")]
    public static void Forward(IKernelLauncher l, string kernel, LaunchShape shape, nint q, nint k, nint v, nint output, nint lse, int b, int t, int h,
        int d, float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) =>
        l.Launch(File, kernel, shape, l.Args().Add(q).Add(k).Add(v).Add(output).Add(lse).Add(b).Add(t).Add(h).Add(d).Add(scale)
            .Add(sq).Add(sk).Add(sv).Add(so));

    [Kernels("attention_backward_dot")]
    public static void BackwardDot(IKernelLauncher l, nint dOut, nint output, nint dt, int b, int t, int h, int d, Bthd sdo, Bthd so) =>
        l.Launch(File, "attention_backward_dot", BackwardDotShape(b, t, h),
            l.Args().Add(dOut).Add(output).Add(dt).Add(b).Add(t).Add(h).Add(d).Add(sdo).Add(so));

    [Kernels("attention_backward_dq", "attention_backward_dq_mma_d64")]
    public static void BackwardDq(IKernelLauncher l, string kernel, LaunchShape shape, nint dOut, nint q, nint k, nint v, nint lse, nint dt, nint dq,
        int b, int t, int h, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdq) =>
        l.Launch(File, kernel, shape, l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse).Add(dt).Add(dq).Add(b).Add(t).Add(h).Add(d).Add(scale)
            .Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdq));

    [Kernels("attention_backward_dkdv", "attention_backward_dkdv_mma_d64")]
    public static void BackwardDkDv(IKernelLauncher l, string kernel, LaunchShape shape, nint dOut, nint q, nint k, nint v, nint lse, nint dt,
        nint dk, nint dv, int b, int t, int h, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdk, Bthd sdv) =>
        l.Launch(File, kernel, shape, l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse).Add(dt).Add(dk).Add(dv).Add(b).Add(t).Add(h).Add(d)
            .Add(scale).Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdk).Add(sdv));
}
