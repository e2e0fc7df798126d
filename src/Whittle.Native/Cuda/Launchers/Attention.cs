using Whittle.Native.Tensors;
using K = Whittle.Native.Tensors.KernelConstants;

namespace Whittle.Native.Cuda.Launchers;

/// <summary>
/// kernels/attention.cu (the f32 kernels), and the geometry of each (grid, block, dynamic shared memory) in one place,
/// derived from the tile constants the kernels are compiled with (<see cref="KernelConstants"/>).
/// </summary>
internal static class Attention
{
    public const string File = "attention.cu";
    const int F32 = sizeof(float);

    /// <summary>f32 forward: BR query rows per block (a warp each); K and V tiles of BC keys padded to D+1, BR rows of D.</summary>
    public static LaunchShape ForwardShape(int b, int t, int h, int d) =>
        new((t + K.AttentionRows - 1) / K.AttentionRows, b * h, K.AttentionRows * 32,
            (2 * K.AttentionKeys * (d + 1) + K.AttentionRows * d) * F32);

    /// <summary>f32 backward, dq: the forward's tiles plus BR rows of dO.</summary>
    public static LaunchShape BackwardDqShape(int b, int t, int h, int d) =>
        new((t + K.AttentionRows - 1) / K.AttentionRows, b * h, K.AttentionRows * 32,
            (2 * K.AttentionKeys * (d + 1) + 2 * K.AttentionRows * d) * F32);

    /// <summary>f32 backward, dk and dv: dq's tiles plus two rows of BC statistics; one block per BR key rows of a kv head.</summary>
    public static LaunchShape BackwardDkDvShape(int b, int t, int kv, int d) =>
        BackwardDqShape(b, t, kv, d) with { SharedBytes = BackwardDqShape(b, t, kv, d).SharedBytes + 2 * K.AttentionKeys * F32 };

    /// <summary>dO · O per row (B, H, T): a warp per row, 8 rows per block.</summary>
    public static LaunchShape BackwardDotShape(int b, int t, int h) => new(((long)b * h * t + 7) / 8, 1, 256, 0);

    [Kernels("attention_forward")]
    public static void Forward(IKernelLauncher l, nint q, nint k, nint v, nint output, nint lse, int b, int t, int h, int kv, int d,
        float scale, Bthd sq, Bthd sk, Bthd sv, Bthd so) =>
        l.Launch(File, "attention_forward", ForwardShape(b, t, h, d), l.Args().Add(q).Add(k).Add(v).Add(output).Add(lse)
            .Add(b).Add(t).Add(h).Add(kv).Add(d).Add(scale).Add(sq).Add(sk).Add(sv).Add(so));

    [Kernels("attention_backward_dot")]
    public static void BackwardDot(IKernelLauncher l, nint dOut, nint output, nint dt, int b, int t, int h, int d, Bthd sdo, Bthd so) =>
        l.Launch(File, "attention_backward_dot", BackwardDotShape(b, t, h),
            l.Args().Add(dOut).Add(output).Add(dt).Add(b).Add(t).Add(h).Add(d).Add(sdo).Add(so));

    [Kernels("attention_backward_dq")]
    public static void BackwardDq(IKernelLauncher l, nint dOut, nint q, nint k, nint v, nint lse, nint dt, nint dq, int b, int t, int h,
        int kv, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdq) =>
        l.Launch(File, "attention_backward_dq", BackwardDqShape(b, t, h, d), l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse).Add(dt)
            .Add(dq).Add(b).Add(t).Add(h).Add(kv).Add(d).Add(scale).Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdq));

    [Kernels("attention_backward_dkdv")]
    public static void BackwardDkDv(IKernelLauncher l, nint dOut, nint q, nint k, nint v, nint lse, nint dt, nint dk, nint dv, int b,
        int t, int h, int kv, int d, float scale, Bthd sdo, Bthd sq, Bthd sk, Bthd sv, Bthd sdk, Bthd sdv) =>
        l.Launch(File, "attention_backward_dkdv", BackwardDkDvShape(b, t, kv, d), l.Args().Add(dOut).Add(q).Add(k).Add(v).Add(lse)
            .Add(dt).Add(dk).Add(dv).Add(b).Add(t).Add(h).Add(kv).Add(d).Add(scale).Add(sdo).Add(sq).Add(sk).Add(sv).Add(sdk).Add(sdv));
}
