using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Cpu;

// Policy: causal attention in tiles (FlashAttention's scheme, arXiv 2205.14135 / 2307.08691), so no (T, T) matrix exists:
//  - Forward: one task per (batch, query head, tile of QueryTile queries) walks the key tiles up to its diagonal with an
//    online softmax (running row max m and row sum l; the output accumulates unnormalised and is rescaled by
//    exp(m_old - m_new) when the max moves, then divided by l). Key tiles that lie wholly after the tile's last query are
//    never visited; keys after a row's own position inside the diagonal tile get probability zero.
//  - Backward: delta = rowsum(dO ⊙ O) per row first. With B·KV ≥ FusedBackwardTasks, one task per (batch, kv head) owns
//    dk, dv and the group's dq and computes each block's probabilities once for all three. Otherwise (few tasks: B = 1,
//    few kv heads) two passes: one task per (batch, kv head, key tile) owns that tile's rows
//    of dk and dv and adds the contributions of the group's query heads, head by head and query tile by query tile in
//    increasing order; then one task per (batch, query head, query tile) owns its rows of dq. Both recompute the
//    probabilities from the saved lse, so nothing is shared between tasks: no atomics, no cross-thread reduction.
//  - Arithmetic: the tile products (scores, P V, dO V^T, P^T dO, dS^T Q, dS K) run through our GEMM (Gemm.cs; its
//    AVX-512 or AVX2 micro-kernel, or the one the backend pins) on the strided head views in place, serially inside the
//    task; exp, max and scaling are TensorPrimitives (Vector512/Vector256 where the CPU has them), or in the forward's
//    softmax one fused Vector256 pass (ExpShiftedSum); row sums and delta accumulate in double. An output element is one
//    fixed chain of operations whichever thread runs its task, so results are bit-identical run to run and for any
//    thread count (they depend only on the micro-kernel in use).
//  - Memory: per thread two (QueryTile, KeyTile) tiles, allocated once; per backward call delta (B, H, T): O(T·D) per
//    head, not O(T²).
public sealed unsafe partial class CpuBackend
{
    /// <summary>Queries per tile: a multiple of both GEMM micro-tile heights (6 and 12), so full tiles have no edge.</summary>
    internal const int AttentionQueryTile = 96;
    /// <summary>Keys per tile: a multiple of both micro-tile widths (16 and 32); (96, 64) floats = 24 KiB stays in L1/L2.</summary>
    internal const int AttentionKeyTile = 64;
    /// <summary>From this many (batch, kv head) pairs on, the backward pass runs one task per pair (each block's P and dS
    /// computed once) instead of two passes over finer tasks (each computed twice, but B·KV·T/64 tasks, for a B = 1 or
    /// few-kv-head call on many cores). The choice depends on the shape only, never on the thread count.</summary>
    internal const int FusedBackwardTasks = 8;

    public void AttentionForward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor lse, AttentionPrecision precision)
    {
        var (b, t, h, d) = ArgCheck.Heads(q, nameof(q));
        int group = h / KvHeads(q, k, v);   // query heads per kv head
        ArgCheck.SameShape(q, output, "attention output");
        ArgCheck.Contiguous(output, nameof(output));
        ArgCheck.Shape(lse, nameof(lse), b, h, t); ArgCheck.Contiguous(lse, nameof(lse));
        var heads = new AttentionHeads(q, k, v, scale, _kernel);
        var oa = new HeadAccess(output);
        float* pl = (float*)lse.Pointer;
        int queryTiles = (t + AttentionQueryTile - 1) / AttentionQueryTile;
        Parallel.For(0, checked(b * h * queryTiles), task =>
        {
            var scores = AttentionScratch();
            int qt = task % queryTiles, bi = task / queryTiles / h, hi = task / queryTiles % h, kvh = hi / group;
            int q0 = qt * AttentionQueryTile, rows = Math.Min(AttentionQueryTile, t - q0);
            float* o = oa.Head(bi, hi) + q0 * oa.Ld;   // (rows, D), leading dimension oa.Ld
            float* rowLse = pl + ((long)bi * h + hi) * t + q0;
            Span<float> rowMax = stackalloc float[AttentionQueryTile];
            Span<double> rowSum = stackalloc double[AttentionQueryTile];
            fixed (float* s = scores)   // (rows, w): scaled scores, then exp(score - running max), zero where masked
                for (int k0 = 0; k0 < q0 + rows; k0 += AttentionKeyTile)
                {
                    int w = Math.Min(AttentionKeyTile, q0 + rows - k0);
                    heads.Scores(bi, hi, kvh, q0, rows, k0, w, s);
                    for (int i = 0; i < rows; i++)
                    {
                        var row = new Span<float>(s + i * w, w);
                        int visible = Math.Min(w, q0 + i - k0 + 1);   // keys k0 .. q0 + i
                        if (visible <= 0) { row.Clear(); continue; }   // the row's max and sum stay as they are
                        var p = row[..visible];
                        row[visible..].Clear();
                        float mOld = k0 == 0 ? float.NegativeInfinity : rowMax[i];
                        float mNew = Math.Max(mOld, TensorPrimitives.Max(p));
                        double sum = ExpShiftedSum(s + i * w, s + i * w, visible, mNew);
                        if (k0 == 0) rowSum[i] = sum;
                        else
                        {
                            float c = MathF.Exp(mOld - mNew);   // the same factor for the sum and the accumulated output
                            rowSum[i] = rowSum[i] * c + sum;
                            if (c != 1f) { var orow = new Span<float>(o + i * oa.Ld, d); TensorPrimitives.Multiply(orow, c, orow); }
                        }
                        rowMax[i] = mNew;
                    }
                    // O (+)= P V over this key tile
                    Gemm.Sgemm(false, false, rows, d, w, 1f, s, w, heads.V.Head(bi, kvh) + k0 * heads.V.Ld, heads.V.Ld,
                        k0 == 0 ? 0f : 1f, o, oa.Ld, serial: true, kernel: heads.Kernel);
                }
            for (int i = 0; i < rows; i++)
            {
                var orow = new Span<float>(o + i * oa.Ld, d);
                TensorPrimitives.Multiply(orow, (float)(1.0 / rowSum[i]), orow);
                rowLse[i] = (float)(rowMax[i] + Math.Log(rowSum[i]));
            }
        });
    }

    public void AttentionBackward(
        Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Tensor dq, Tensor dk, Tensor dv,
        AttentionPrecision precision)
    {
        var (b, t, h, d) = ArgCheck.Heads(q, nameof(q));
        int kv = KvHeads(q, k, v), group = h / kv;
        foreach (var (x, name) in new[] { (dOut, nameof(dOut)), (output, nameof(output)), (dq, nameof(dq)) })
            ArgCheck.SameShape(q, x, "attention backward " + name);
        ArgCheck.SameShape(k, dk, "attention backward dk"); ArgCheck.SameShape(k, dv, "attention backward dv");
        ArgCheck.Shape(lse, nameof(lse), b, h, t); ArgCheck.Contiguous(lse, nameof(lse));
        var heads = new AttentionHeads(q, k, v, scale, _kernel);
        var ga = new HeadAccess(dOut); var oa = new HeadAccess(output);
        var dqa = new HeadAccess(dq); var dka = new HeadAccess(dk); var dva = new HeadAccess(dv);
        float* pl = (float*)lse.Pointer;

        var delta = new float[checked(b * h * t)];   // (B, H, T): Σ_e dO[t, e] O[t, e] = Σ_s P[t, s] dP[t, s]
        fixed (float* pd = delta)
        {
            float* deltaP = pd;
            Parallel.For(0, b * h, bh =>
            {
                int bi = bh / h, hi = bh % h;
                for (int ti = 0; ti < t; ti++)
                {
                    float* g = ga.Head(bi, hi) + ti * ga.Ld, o = oa.Head(bi, hi) + ti * oa.Ld;
                    double acc = 0; for (int e = 0; e < d; e++) acc += (double)g[e] * o[e];
                    deltaP[(long)bh * t + ti] = (float)acc;
                }
            });
            var rows = new BackwardRows(heads, ga, pl, deltaP, h, t);
            if ((long)b * kv >= FusedBackwardTasks)
            {
                // One task per (batch, kv head) owns dk and dv of that kv head and dq of its query heads, so each block's
                // P and dS are computed once and feed all three products. Key tiles in increasing order outside, the
                // group's heads and the query tiles (aligned at multiples of QueryTile, as the dq pass below) inside: each
                // dq tile receives its key tiles in the same order as there, so dq is bit-identical to the two-pass path.
                Parallel.For(0, b * kv, task =>
                {
                    var scratch = AttentionScratch();
                    int bi = task / kv, kvh = task % kv;
                    fixed (float* p = scratch)
                    {
                        float* ds = p + AttentionQueryTile * AttentionKeyTile;
                        for (int k0 = 0; k0 < t; k0 += AttentionKeyTile)
                        {
                            int w = Math.Min(AttentionKeyTile, t - k0);
                            float* kTile = heads.K.Head(bi, kvh) + k0 * heads.K.Ld;
                            float* dkTile = dka.Head(bi, kvh) + k0 * dka.Ld, dvTile = dva.Head(bi, kvh) + k0 * dva.Ld;
                            for (int hi = kvh * group; hi < (kvh + 1) * group; hi++)
                                for (int q0 = k0 / AttentionQueryTile * AttentionQueryTile; q0 < t; q0 += AttentionQueryTile)
                                {
                                    int n = Math.Min(AttentionQueryTile, t - q0);
                                    rows.ProbabilitiesAndScoreGradients(bi, hi, kvh, q0, n, k0, w, p, ds);
                                    // dV += P^T dO, dK += scale dS^T Q, dQ += scale dS K
                                    Gemm.Sgemm(true, false, w, d, n, 1f, p, w, ga.Head(bi, hi) + q0 * ga.Ld, ga.Ld, 1f, dvTile, dva.Ld,
                                        serial: true, kernel: heads.Kernel);
                                    Gemm.Sgemm(true, false, w, d, n, scale, ds, w, heads.Q.Head(bi, hi) + q0 * heads.Q.Ld, heads.Q.Ld,
                                        1f, dkTile, dka.Ld, serial: true, kernel: heads.Kernel);
                                    Gemm.Sgemm(false, false, n, d, w, scale, ds, w, kTile, heads.K.Ld, 1f, dqa.Head(bi, hi) + q0 * dqa.Ld,
                                        dqa.Ld, serial: true, kernel: heads.Kernel);
                                }
                        }
                    }
                });
                return;
            }
            int tiles = (t + AttentionKeyTile - 1) / AttentionKeyTile;
            // dk, dv: one task per (batch, kv head, key tile) over the queries at or after the tile's first key.
            Parallel.For(0, checked(b * kv * tiles), task =>
            {
                var scratch = AttentionScratch();
                int kt = task % tiles, bi = task / tiles / kv, kvh = task / tiles % kv;
                int k0 = kt * AttentionKeyTile, w = Math.Min(AttentionKeyTile, t - k0);
                float* dkTile = dka.Head(bi, kvh) + k0 * dka.Ld, dvTile = dva.Head(bi, kvh) + k0 * dva.Ld;
                fixed (float* p = scratch)
                {
                    float* ds = p + AttentionQueryTile * AttentionKeyTile;
                    for (int hi = kvh * group; hi < (kvh + 1) * group; hi++)
                        for (int q0 = k0; q0 < t; q0 += AttentionQueryTile)
                        {
                            int n = Math.Min(AttentionQueryTile, t - q0);
                            rows.ProbabilitiesAndScoreGradients(bi, hi, kvh, q0, n, k0, w, p, ds);
                            // dV += P^T dO, dK += scale dS^T Q
                            Gemm.Sgemm(true, false, w, d, n, 1f, p, w, ga.Head(bi, hi) + q0 * ga.Ld, ga.Ld, 1f, dvTile, dva.Ld,
                                serial: true, kernel: heads.Kernel);
                            Gemm.Sgemm(true, false, w, d, n, scale, ds, w, heads.Q.Head(bi, hi) + q0 * heads.Q.Ld, heads.Q.Ld, 1f,
                                dkTile, dka.Ld, serial: true, kernel: heads.Kernel);
                        }
                }
            });
            // dq: one task per (batch, query head, query tile) over the key tiles up to its diagonal.
            int queryTiles = (t + AttentionQueryTile - 1) / AttentionQueryTile;
            Parallel.For(0, checked(b * h * queryTiles), task =>
            {
                var scratch = AttentionScratch();
                int qt = task % queryTiles, bi = task / queryTiles / h, hi = task / queryTiles % h, kvh = hi / group;
                int q0 = qt * AttentionQueryTile, n = Math.Min(AttentionQueryTile, t - q0);
                float* dqTile = dqa.Head(bi, hi) + q0 * dqa.Ld;
                fixed (float* p = scratch)
                {
                    float* ds = p + AttentionQueryTile * AttentionKeyTile;
                    for (int k0 = 0; k0 < q0 + n; k0 += AttentionKeyTile)
                    {
                        int w = Math.Min(AttentionKeyTile, q0 + n - k0);
                        rows.ProbabilitiesAndScoreGradients(bi, hi, kvh, q0, n, k0, w, p, ds);
                        // dQ += scale dS K
                        Gemm.Sgemm(false, false, n, d, w, scale, ds, w, heads.K.Head(bi, kvh) + k0 * heads.K.Ld, heads.K.Ld, 1f,
                            dqTile, dqa.Ld, serial: true, kernel: heads.Kernel);
                    }
                }
            });
        }
    }

    /// <summary>This thread's two (QueryTile, KeyTile) tiles, allocated once per thread (as Gemm's pack buffers), so the
    /// steady state allocates nothing but Parallel.For's bookkeeping. A task uses them only while it runs.</summary>
    static float[] AttentionScratch() => t_attentionScratch ??= GC.AllocateArray<float>(2 * AttentionQueryTile * AttentionKeyTile,
        pinned: true);

    [ThreadStatic] static float[]? t_attentionScratch;

    /// <summary>KV, the kv heads of k and v (B, T, KV, D) for q (B, T, H, D): the same B, T, D, and KV dividing H.</summary>
    static int KvHeads(Tensor q, Tensor k, Tensor v)
    {
        var (b, t, h, d) = ArgCheck.Heads(q, nameof(q));
        var (kb, kt, kv, kd) = ArgCheck.Heads(k, nameof(k));
        ArgCheck.SameShape(k, v, "attention v");
        if (kb != b || kt != t || kd != d || kv < 1 || h % kv != 0)
            throw new ArgumentException($"attention: k {k.Describe()} must be (B, T, KV, D) for q {q.Describe()}, with KV dividing H");
        return kv;
    }

    /// <summary>Pointer arithmetic for one (B, T, H, D) view whose last dimension is dense.</summary>
    readonly struct HeadAccess(Tensor x)
    {
        readonly float* _p = (float*)x.Pointer;
        readonly long _sb = x.Stride(0), _sh = x.Stride(2);
        /// <summary>Head (b, h) as a row-dense (T, D) matrix starting here, with leading dimension <see cref="Ld"/>.</summary>
        public float* Head(int b, int h) => _p + b * _sb + h * _sh;
        public long Ld { get; } = x.Stride(1);
    }

    /// <summary>The inputs of one attention call and the GEMM kernel its tile products use.</summary>
    readonly struct AttentionHeads(Tensor q, Tensor k, Tensor v, float scale, Gemm.Kernel? kernel)
    {
        public HeadAccess Q { get; } = new(q);
        public HeadAccess K { get; } = new(k);
        public HeadAccess V { get; } = new(v);
        public int D { get; } = q.Size(3);
        public Gemm.Kernel? Kernel { get; } = kernel;

        /// <summary>s (rows, w) = scale · Q[q0 .. q0+rows) K[k0 .. k0+w)^T for query head hi and its kv head kvh.</summary>
        public void Scores(int bi, int hi, int kvh, int q0, int rows, int k0, int w, float* s) =>
            Gemm.Sgemm(false, true, rows, w, D, scale, Q.Head(bi, hi) + q0 * Q.Ld, Q.Ld, K.Head(bi, kvh) + k0 * K.Ld, K.Ld, 0f, s, w,
                serial: true, kernel: Kernel);
    }

    /// <summary>The backward pass's recomputation of one (query tile, key tile) block from the forward's lse.</summary>
    readonly struct BackwardRows(AttentionHeads heads, HeadAccess dOut, float* lse, float* delta, int h, int t)
    {
        /// <summary>p (rows, w) = P = exp(scores - lse) and ds (rows, w) = dS = P ⊙ (dO V^T - delta), both zero where a key
        /// comes after its query.</summary>
        public void ProbabilitiesAndScoreGradients(int bi, int hi, int kvh, int q0, int rows, int k0, int w, float* p, float* ds)
        {
            heads.Scores(bi, hi, kvh, q0, rows, k0, w, p);
            Gemm.Sgemm(false, true, rows, w, heads.D, 1f, dOut.Head(bi, hi) + q0 * dOut.Ld, dOut.Ld,
                heads.V.Head(bi, kvh) + k0 * heads.V.Ld, heads.V.Ld, 0f, ds, w, serial: true, kernel: heads.Kernel);
            long row0 = ((long)bi * h + hi) * t + q0;
            for (int i = 0; i < rows; i++)
            {
                var prow = new Span<float>(p + i * w, w);
                var drow = new Span<float>(ds + i * w, w);
                int visible = Math.Clamp(q0 + i - k0 + 1, 0, w);   // keys k0 .. q0 + i
                prow[visible..].Clear(); drow[visible..].Clear();
                ProbabilityAndGradientRow(p + i * w, ds + i * w, visible, lse[row0 + i], delta[row0 + i]);
            }
        }

        /// <summary>p[j] = exp(p[j] − lse), then ds[j] = (ds[j] − delta) p[j], for j in [0, n): one Vector256 pass instead of
        /// four TensorPrimitives calls per row (the same exponential as <see cref="ExpShiftedSum"/>, tail padded likewise).</summary>
        static void ProbabilityAndGradientRow(float* p, float* ds, int n, float lse, float delta)
        {
            var l = Vector256.Create(lse); var dl = Vector256.Create(delta);
            int j = 0;
            for (; j + 8 <= n; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(p + j) - l);
                e.Store(p + j);
                ((Vector256.Load(ds + j) - dl) * e).Store(ds + j);
            }
            if (j == n) return;
            float* tp = stackalloc float[8], td = stackalloc float[8];
            for (int t = 0; t < 8; t++) { tp[t] = j + t < n ? p[j + t] : float.NegativeInfinity; td[t] = j + t < n ? ds[j + t] : 0f; }
            var et = Vector256.Exp(Vector256.Load(tp) - l);
            var dt = (Vector256.Load(td) - dl) * et;
            for (int t = 0; j + t < n; t++) { p[j + t] = et[t]; ds[j + t] = dt[t]; }
        }
    }
}
