namespace Whittle.Native.Model;

/// <summary>
/// The arithmetic a model's forward and backward passes run in. One policy, the same on every backend, so the CPU
/// (the ground truth) computes exactly what the GPU does up to the order of f32 additions:
///
/// <list type="bullet">
/// <item><b>F32</b>: everything in f32 (TF32 GEMMs only where a CUDA backend allows them).</item>
/// <item><b>Bf16</b> (mixed precision, PyTorch-autocast style for Linear layers):
///   <list type="bullet">
///   <item>master weights, gradients and AdamW moments stay f32 (<see cref="ParameterSet.Flat"/>);</item>
///   <item>every weight matrix that feeds a GEMM (query_key_value, attention.dense, dense_h_to_4h, dense_4h_to_h,
///     embed_out) also has a bf16 copy (<see cref="ParameterSet.LowPrecision"/>), rounded to nearest even from the master
///     after every optimizer step and every load; embed_in is gathered from f32 (a gather gains nothing from bf16);</item>
///   <item>every Linear GEMM (y = x Wᵀ + b, dx = g W, dW = gᵀ x) takes bf16 operands: activations and upstream gradients
///     are rounded to bf16 (RNE) at the GEMM's input; products of bf16 values are exact in f32, accumulation and output
///     are f32, bias added in f32; bias and weight gradients accumulate in f32;</item>
///   <item>a Linear keeps its input for the backward pass as bf16 (half the bytes of the f32 activation);</item>
///   <item>layernorm, GELU, residual adds and losses stay f32 (f32 statistics);</item>
///   <item>attention: f32 on the CPU; on CUDA the tensor-core kernels of attention.cu (head size 64: forward and backward,
///     128: forward) round q, k, v, dO and the probabilities P, dS to bf16 at each mma input and keep the softmax
///     statistics in f32. This is the one place the CPU does not emulate bf16 exactly (the online softmax rounds P
///     against a running max); the parity harness bounds the difference (2e-2 forward, 3e-2 backward, max-norm relative).
///     WHITTLE_ATTENTION=f32 (resolved once by the CLI into <see cref="GptNeoX.Attention"/>) keeps the f32 attention kernels.</item>
///   </list></item>
/// </list>
/// On CUDA the bf16 GEMMs are cuBLAS(Lt) calls with bf16 A/B, f32 C/D and CUBLAS_COMPUTE_32F (tensor cores), the bias
/// as a cuBLASLt epilogue. On the CPU, where it reports AVX512_BF16 (and --gemm is auto or ours), they run on vdpbf16ps
/// (Cpu/Avx512Bf16Kernel.cs: two exact products per lane and instruction, f32 accumulation, like tensor cores up to the
/// order of additions); elsewhere they are the f32 GEMM of the widened bf16 values (an exact emulation): our GEMM widens
/// while packing (Cpu/Gemm.cs Bf16Gemm; also every forced ours-* path), or, with --gemm openblas, OpenBLAS's sgemm runs
/// on widened copies.
/// </summary>
public enum Precision { F32, Bf16 }

public static class PrecisionNames
{
    /// <summary>The CLI spelling: fp32 or bf16.</summary>
    public static string Name(this Precision p) =>
        p switch { Precision.F32 => "fp32", Precision.Bf16 => "bf16", _ => throw new ArgumentOutOfRangeException(nameof(p)) };

    /// <summary>Parses fp32 (or f32) and bf16; <paramref name="option"/> names the flag in the error.</summary>
    public static Precision Parse(string value, string option) => value.ToLowerInvariant() switch
    {
        "fp32" or "f32" => Precision.F32,
        "bf16" => Precision.Bf16,
        _ => throw new WhittleException($"unknown {option} '{value}' (expected fp32 or bf16)"),
    };
}
