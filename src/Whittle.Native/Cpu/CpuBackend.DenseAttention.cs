using System.Numerics.Tensors;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

// Policy: the attention the CPU backend ran before the tiled one (CpuBackend.Attention.cs), kept as the baseline the
// attention benchmark (bench/Whittle.Native.Bench, `attention-quick`) measures the tiled kernels against, and as a second,
// differently structured computation in the tests. Not used by any model path.
// It runs per (b, h) as GEMMs on the (T, D) head slices, addressed in place through their row stride: the full (T, T) score
// block is computed and the causal part kept (twice the needed multiply-adds, and O(T²) memory per task). Softmax in f32
// with the row sum in double; P V and the gradient products accumulate in f32 FMA chains of length T. Each (b, h) (backward:
// each (b, kv head)) is one task that owns its output slices, so the result does not depend on the thread count.
public sealed unsafe partial class CpuBackend
{
    internal void DenseAttentionForward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor lse)
    {
        var (b, t, h, d) = ArgCheck.Heads(q, nameof(q));
        int group = h / KvHeads(q, k, v);   // query heads per kv head
        ArgCheck.SameShape(q, output, "attention output");
        ArgCheck.Contiguous(output, nameof(output));
        ArgCheck.Shape(lse, nameof(lse), b, h, t); ArgCheck.Contiguous(lse, nameof(lse));
        var qa = new HeadAccess(q); var ka = new HeadAccess(k); var va = new HeadAccess(v); var oa = new HeadAccess(output);
        float* pl = (float*)lse.Pointer;
        var kern = _kernel;
        Parallel.For(0, b * h, () => new float[(long)t * t], (bh, _, probs) =>
        {
            int bi = bh / h, hi = bh % h, kvh = hi / group;
            fixed (float* p = probs)   // (T, T): scores, then probabilities (zero above the diagonal)
            {
                Gemm.Sgemm(false, true, t, t, d, scale, qa.Head(bi, hi), qa.Ld, ka.Head(bi, kvh), ka.Ld, 0f, p, t, serial: true,
                    kernel: kern);
                for (int ti = 0; ti < t; ti++)
                {
                    var row = new Span<float>(p + (long)ti * t, ti + 1);
                    float max = TensorPrimitives.Max(row);
                    TensorPrimitives.Subtract(row, max, row);
                    TensorPrimitives.Exp(row, row);
                    double sum = 0; foreach (var e in row) sum += e;
                    TensorPrimitives.Multiply(row, (float)(1.0 / sum), row);
                    new Span<float>(p + (long)ti * t + ti + 1, t - ti - 1).Clear();
                    pl[((long)bi * h + hi) * t + ti] = (float)(max + Math.Log(sum));
                }
                // O = P V
                Gemm.Sgemm(false, false, t, d, t, 1f, p, t, va.Head(bi, kvh), va.Ld, 0f, oa.Head(bi, hi), oa.Ld, serial: true,
                    kernel: kern);
            }
            return probs;
        }, _ => { });
    }

    internal void DenseAttentionBackward(
        Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Tensor dq, Tensor dk, Tensor dv)
    {
        var (b, t, h, d) = ArgCheck.Heads(q, nameof(q));
        int kv = KvHeads(q, k, v), group = h / kv;
        foreach (var (x, name) in new[] { (dOut, nameof(dOut)), (output, nameof(output)), (dq, nameof(dq)) })
            ArgCheck.SameShape(q, x, "attention backward " + name);
        ArgCheck.SameShape(k, dk, "attention backward dk"); ArgCheck.SameShape(k, dv, "attention backward dv");
        ArgCheck.Shape(lse, nameof(lse), b, h, t);
        var qa = new HeadAccess(q); var ka = new HeadAccess(k); var va = new HeadAccess(v); var oa = new HeadAccess(output);
        var ga = new HeadAccess(dOut);
        var dqa = new HeadAccess(dq); var dka = new HeadAccess(dk); var dva = new HeadAccess(dv);
        float* pl = (float*)lse.Pointer;
        var kern = _kernel;
        // Each (b, kv head) task owns its slices of dk, dv and the dq slices of the query heads of its group, which it
        // visits in order: the group's sum into dk and dv has a fixed order and needs no atomics or cross-thread reduction.
        Parallel.For(0, b * kv, () => new float[2L * t * t], (bg, _, scratch) =>
        {
            int bi = bg / kv, kvh = bg % kv;
            fixed (float* p = scratch)
                for (int hi = kvh * group; hi < (kvh + 1) * group; hi++)
                {
                    float* ds = p + (long)t * t;   // (T, T) probabilities P, then (T, T) dP and dS = P ⊙ (dP − rowsum(dO ⊙ O))
                    Gemm.Sgemm(false, true, t, t, d, scale, qa.Head(bi, hi), qa.Ld, ka.Head(bi, kvh), ka.Ld, 0f, p, t, serial: true,
                        kernel: kern);
                    // dP = dO V^T
                    Gemm.Sgemm(false, true, t, t, d, 1f, ga.Head(bi, hi), ga.Ld, va.Head(bi, kvh), va.Ld, 0f, ds, t, serial: true,
                        kernel: kern);
                    for (int ti = 0; ti < t; ti++)
                    {
                        var prow = new Span<float>(p + (long)ti * t, ti + 1);
                        var drow = new Span<float>(ds + (long)ti * t, ti + 1);
                        TensorPrimitives.Subtract(prow, pl[((long)bi * h + hi) * t + ti], prow);
                        TensorPrimitives.Exp(prow, prow);
                        float delta = TensorPrimitives.Dot(new ReadOnlySpan<float>(ga.Head(bi, hi) + ti * ga.Ld, d),
                            new ReadOnlySpan<float>(oa.Head(bi, hi) + ti * oa.Ld, d));   // Σ_s p_s dP_s
                        TensorPrimitives.Subtract(drow, delta, drow);
                        TensorPrimitives.Multiply(drow, prow, drow);
                        new Span<float>(p + (long)ti * t + ti + 1, t - ti - 1).Clear();
                        new Span<float>(ds + (long)ti * t + ti + 1, t - ti - 1).Clear();
                    }
                    // dQ += scale dS K, dK += scale dS^T Q, dV += P^T dO
                    Gemm.Sgemm(false, false, t, d, t, scale, ds, t, ka.Head(bi, kvh), ka.Ld, 1f, dqa.Head(bi, hi), dqa.Ld, serial: true,
                        kernel: kern);
                    Gemm.Sgemm(true, false, t, d, t, scale, ds, t, qa.Head(bi, hi), qa.Ld, 1f, dka.Head(bi, kvh), dka.Ld, serial: true,
                        kernel: kern);
                    Gemm.Sgemm(true, false, t, d, t, 1f, p, t, ga.Head(bi, hi), ga.Ld, 1f, dva.Head(bi, kvh), dva.Ld, serial: true,
                        kernel: kern);
                }
            return scratch;
        }, _ => { });
    }
}
