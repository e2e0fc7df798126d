using Whittle.Native.Tensors;

namespace Whittle.Native.Verification;

/// <summary>One op on one case: the max relative error of the candidate against the reference, and the bound it must meet.</summary>
public sealed record ParityResult(string Op, string Case, double MaxRelativeError, double Tolerance)
{
    public bool Passed => MaxRelativeError <= Tolerance;  // NaN fails
    public override string ToString() =>
        $"{Op,-22} {Case,-44} {MaxRelativeError,10:0.00e+00} <= {Tolerance:0e+00} {(Passed ? "ok" : "FAIL")}";
}

/// <summary>
/// Runs every <see cref="IBackend"/> op, forward and backward, on the same fresh random inputs on two backends (a
/// reference, normally the CPU, and a candidate) and reports the max relative error per op and case.
/// Policy:
///  - error = max_i |candidate_i - reference_i| / max_i |reference_i| (max-norm relative error of the whole output;
///    a NaN or infinity anywhere makes it infinite). Outputs are compared in full: a strided output is compared as
///    its whole parent buffer, so writes outside the view are caught too;
///  - forward outputs are poisoned with NaN before the op (an element the op fails to write fails the case);
///    accumulated (backward) outputs start from the same random values on both sides (so "=" instead of "+=" fails);
///  - shapes include sizes that are not multiples of 32 or 128 and sub-network views (a Narrow'ed weight whose row
///    stride is the parent's, q/k/v inside a fused qkv buffer, per-head RMSNorm on k inside one); grouped-query attention
///    runs with KV = 1, KV = H/2 and KV = H/3 kv heads (KV = H is the multi-head cases), f32 and bf16, forward and backward;
///  - tolerances (<see cref="Tolerance"/>): 1e-5 for f32 ops; TF32 matmuls (when the candidate allows them) 5e-3;
///    reductions read back in double 1e-6; bf16 conversion exact; bf16 MatMul (bf16 operands, f32 accumulate and output)
///    1e-5 like f32, since products of bf16 values are exact in f32 and only the order of additions differs (never TF32).
///    MatMul with beta = 0 does not read c (BLAS rule);
///  - the bf16 tensor-core attention also runs at the long context it is timed at (<see cref="LongSeqLen"/>, T = 2048 on
///    hardware), head sizes 64 and 128, forward and (D = 64, the only mma backward) backward: its error bound does not
///    grow with T (each output is a convex combination of bf16-rounded values; the score rounding depends on |s|, not on
///    T), so the short-T tolerances apply. The software GPU runs it at a smaller T by default (doctor --long-seq-len).
/// </summary>
public sealed class ParityHarness(IBackend reference, IBackend candidate, int seed = 20240601, bool tf32 = false)
{
    readonly Random _rng = new(seed);
    readonly List<ParityResult> _results = new();

    /// <summary>T of the long-context bf16 attention cases (0: not run). Each case is B = 1, H = 2, so it costs 2·T² per head.</summary>
    public int LongSeqLen { get; init; }

    /// <summary>Called with each result as soon as it exists (doctor streams them, so a killed run still leaves its cases).</summary>
    public Action<ParityResult>? Progress { get; init; }

    /// <summary>T = 2048: what the GPU kit times (Pythia's context).</summary>
    public const int HardwareLongSeqLen = 2048;

    public const double F32Tolerance = 1e-5, Tf32Tolerance = 5e-3, ReductionTolerance = 1e-6;

    /// <summary>
    /// The bf16 tensor-core attention forward rounds q, k, v and the probabilities to bf16 (relative 2^-9 each): a score
    /// |s| &lt;= a few units moves by ~|s|·2^-8, so outputs and lse move by ~1e-2 of their max at most on these inputs.
    /// </summary>
    public const double Bf16AttentionTolerance = 2e-2;
    /// <summary>The backward also rounds dO, P and dS; dS = P (dP - Dt) cancels, so its bound is looser (an estimate to confirm on
    /// hardware).</summary>
    public const double Bf16AttentionBackwardTolerance = 3e-2;

    public static double Tolerance(string op, bool tf32) => op switch
    {
        "AttentionForward(bf16 mma)" => Bf16AttentionTolerance,
        "AttentionBackward(bf16 mma)" => Bf16AttentionBackwardTolerance,
        "MatMul" when tf32 => Tf32Tolerance,
        "MatMul(bf16)" => F32Tolerance,
        "Sum" or "SumOfSquares" => ReductionTolerance,
        "Copy(f32->bf16)" => 0,
        _ => F32Tolerance,
    };

    public IReadOnlyList<ParityResult> Run()
    {
        _results.Clear();
        Memory();
        Embedding(50, 33, 7, 33); Embedding(131, 129, 64, 160);
        LayerNorm(5, 37, 37); LayerNorm(64, 256, 300);
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
            MatMul(7, 33, 65, ta, tb, bias: tb, 1f, 0f);
        MatMul(64, 128, 96, false, true, bias: true, 0.5f, 1f);
        MatMulSubNetwork(37, 96, 70, 128, 100);
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
            MatMulBf16(7, 33, 65, ta, tb, bias: tb, 1f, 0f, fullK: 33);
        MatMulBf16(64, 128, 96, false, true, bias: true, 0.5f, 1f, fullK: 128);
        // a sub-network Linear: W[:70, :96] of a (70, 100) bf16 copy
        MatMulBf16(37, 96, 70, false, true, bias: true, 1f, 0f, fullK: 100);
        SumRows(37, 70, 90); SumRows(300, 33, 33);
        Rotary(2, 13, 3, 16, 8); Rotary(1, 40, 2, 64, 64);
        Attention(2, 37, 3, 16); Attention(1, 70, 2, 64); Attention(1, 33, 2, 80);
        Attention(2, 37, 4, 16, kv: 1); Attention(1, 70, 4, 64, kv: 2); Attention(1, 33, 6, 80, kv: 3);   // grouped-query
        if (candidate.Device == Device.Cuda)
        {
            Attention(2, 130, 3, 64, AttentionPrecision.Bf16); Attention(1, 77, 2, 128, AttentionPrecision.Bf16);
            Attention(1, 64, 1, 64, AttentionPrecision.Bf16);
            Attention(1, 130, 4, 64, AttentionPrecision.Bf16, kv: 1); Attention(2, 77, 4, 64, AttentionPrecision.Bf16, kv: 2);
            Attention(1, 77, 4, 128, AttentionPrecision.Bf16, kv: 2);
        }
        RunLongContext();
        foreach (var tanh in new[] { false, true }) { Gelu(37, tanh); Gelu(4099, tanh); }
        RmsNorm(5, 37, 37); RmsNorm(64, 256, 300); RmsNormHeads(2, 13, 3, 16); RmsNormHeads(1, 9, 4, 128);
        SwiGlu(7, 33); SwiGlu(64, 4099);
        FusedNorms(5, 37, 37, withDelta: true, withBias: true); FusedNorms(64, 256, 300, withDelta: true, withBias: false);
        FusedNorms(9, 70, 70, withDelta: false, withBias: false);
        foreach (var tanh in new[] { false, true }) { BiasGelu(7, 33, tanh, bias: true); BiasGelu(64, 300, tanh, bias: false); }
        Elementwise(1029);
        CrossEntropy(9, 131, withGrad: true); CrossEntropy(16, 1000, withGrad: true); CrossEntropy(5, 77, withGrad: false);
        foreach (var kind in Enum.GetValues<DistillKind>())
        {
            Distillation(9, 131, kind, 2f, 0);
            Distillation(6, 1000, kind, 1f, 0);
            Distillation(7, 300, kind, 1.5f, 17);
        }
        Distillation(4, 77, DistillKind.ForwardKl, 1f, 77);
        Distillation(4, 77, DistillKind.JensenShannon, 1f, 77);
        AdamW(1000, 600, 1); AdamW(333, 100, 3);
        Reductions(100_003);
        return _results;
    }

    /// <summary>The long-context bf16 attention cases alone (nothing when <see cref="LongSeqLen"/> is 0 or the candidate is not
    /// CUDA).</summary>
    public IReadOnlyList<ParityResult> RunLongContext()
    {
        if (candidate.Device != Device.Cuda || LongSeqLen <= 0) return [];
        int before = _results.Count;
        foreach (int d in new[] { 64, 128 }) Attention(1, LongSeqLen, 2, d, AttentionPrecision.Bf16);
        return _results.Skip(before).ToList();
    }

    // ---------------------------------------------------------------- inputs and comparison

    float[] Random(long n, float scale = 1f, float offset = 0f)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = offset + scale * (float)(_rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>The same host values on both backends.</summary>
    (Tensor R, Tensor C) Pair(float[] data, params int[] shape)
    {
        using var host = Tensor.FromArray(data, shape);
        return (reference.FromHost(host), candidate.FromHost(host));
    }

    (Tensor R, Tensor C) PairInt(int[] data, params int[] shape)
    {
        using var host = Tensor.FromArray(data, shape);
        return (reference.FromHost(host), candidate.FromHost(host));
    }

    (Tensor R, Tensor C) Poisoned(params int[] shape)
    {
        var r = reference.Empty(DType.F32, shape); var c = candidate.Empty(DType.F32, shape);
        reference.Fill(r, float.NaN); candidate.Fill(c, float.NaN);
        return (r, c);
    }

    public static double RelativeError(float[] reference, float[] candidate)
    {
        if (reference.Length != candidate.Length) return double.PositiveInfinity;
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double r = reference[i], c = candidate[i];
            if (!double.IsFinite(r) || !double.IsFinite(c)) return double.PositiveInfinity;
            maxDiff = Math.Max(maxDiff, Math.Abs(c - r));
            maxRef = Math.Max(maxRef, Math.Abs(r));
        }
        return maxDiff == 0 ? 0 : maxDiff / Math.Max(maxRef, 1e-30);
    }

    void Compare(string op, string name, params (Tensor R, Tensor C)[] outputs)
    {
        reference.Synchronize(); candidate.Synchronize();
        double err = 0;
        foreach (var (r, c) in outputs) err = Math.Max(err, RelativeError(r.ToFloatArray(), c.ToFloatArray()));
        Add(new ParityResult(op, name, err, Tolerance(op, tf32)));
    }

    void Add(ParityResult r) { _results.Add(r); Progress?.Invoke(r); }

    static void Free(params (Tensor R, Tensor C)[] pairs) { foreach (var (r, c) in pairs) { r.Dispose(); c.Dispose(); } }

    // ---------------------------------------------------------------- cases

    void Memory()
    {
        var x = Pair(Random(6 * 35), 6, 35);
        var (dr, dc) = Poisoned(35, 6);
        reference.Copy(x.R.Transpose(0, 1), dr); candidate.Copy(x.C.Transpose(0, 1), dc);
        Compare("Copy(strided)", "(6, 35)^T", (dr, dc));
        var br = reference.Empty(DType.BF16, 6, 35); var bc = candidate.Empty(DType.BF16, 6, 35);
        reference.Copy(x.R, br); candidate.Copy(x.C, bc);
        Compare("Copy(f32->bf16)", "(6, 35)", (br, bc));
        var f = Poisoned(7, 9);
        reference.Fill(f.R, 1.25f); candidate.Fill(f.C, 1.25f);
        Compare("Fill", "(7, 9)", f);
        Free(x, (dr, dc), (br, bc), f);
    }

    void Embedding(int v, int c, int n, int fullC)
    {
        string name = $"V={v} C={c} N={n}{(fullC > c ? $" view of C={fullC}" : "")}";
        var ids = PairInt(Enumerable.Range(0, n).Select(i => i % 5 == 4 ? 3 : _rng.Next(v)).ToArray(), n);  // repeats on purpose
        var w = Pair(Random((long)v * fullC), v, fullC);
        var out_ = Poisoned(n, c);
        reference.EmbeddingForward(ids.R, w.R.Narrow(1, 0, c), out_.R); candidate.EmbeddingForward(ids.C, w.C.Narrow(1, 0, c), out_.C);
        Compare("EmbeddingForward", name, out_);
        var dOut = Pair(Random((long)n * c), n, c);
        reference.EmbeddingBackward(ids.R, dOut.R, w.R.Narrow(1, 0, c)); candidate.EmbeddingBackward(ids.C, dOut.C, w.C.Narrow(1, 0, c));
        Compare("EmbeddingBackward", name, w);
        Free(ids, w, out_, dOut);
    }

    /// <summary>Activations are contiguous (N, C); a sub-network's weight and bias are the first C of the full width.</summary>
    void LayerNorm(int n, int c, int fullC)
    {
        string name = $"N={n} C={c}{(fullC > c ? $" weights of C={fullC}" : "")}";
        var x = Pair(Random((long)n * c, 2f, 3f), n, c);
        var w = Pair(Random(fullC, 0.5f, 1f), fullC); var b = Pair(Random(fullC), fullC);
        var y = Poisoned(n, c); var mean = Poisoned(n); var rstd = Poisoned(n);
        reference.LayerNormForward(x.R, w.R.Narrow(0, 0, c), b.R.Narrow(0, 0, c), 1e-5f, y.R, mean.R, rstd.R);
        candidate.LayerNormForward(x.C, w.C.Narrow(0, 0, c), b.C.Narrow(0, 0, c), 1e-5f, y.C, mean.C, rstd.C);
        Compare("LayerNormForward", name, y, mean, rstd);
        var dy = Pair(Random((long)n * c), n, c);
        var dx = Pair(Random((long)n * c), n, c); var dw = Pair(Random(fullC), fullC); var db = Pair(Random(fullC), fullC);
        reference.LayerNormBackward(dy.R, x.R, w.R.Narrow(0, 0, c), mean.R, rstd.R, dx.R, dw.R.Narrow(0, 0, c), db.R.Narrow(0, 0, c));
        candidate.LayerNormBackward(dy.C, x.C, w.C.Narrow(0, 0, c), mean.C, rstd.C, dx.C, dw.C.Narrow(0, 0, c), db.C.Narrow(0, 0, c));
        Compare("LayerNormBackward", name, dx, dw, db);
        Free(x, w, b, y, mean, rstd, dy, dx, dw, db);
    }

    void MatMul(int m, int k, int n, bool ta, bool tb, bool bias, float alpha, float beta)
    {
        string name = $"M={m} K={k} " +
            $"N={n}{(ta ? " aT" : "")}{(tb ? " bT" : "")}{(bias ? " +bias" : "")}{(beta != 0 ? $" a={alpha} b={beta}" : "")}";
        var a = ta ? Pair(Random((long)k * m), k, m) : Pair(Random((long)m * k), m, k);
        var b = tb ? Pair(Random((long)n * k), n, k) : Pair(Random((long)k * n), k, n);
        var bi = Pair(Random(n), n);
        var c = beta == 0 ? Poisoned(m, n) : Pair(Random((long)m * n), m, n);
        reference.MatMul(a.R, ta, b.R, tb, c.R, alpha, beta, bias ? bi.R : null);
        candidate.MatMul(a.C, ta, b.C, tb, c.C, alpha, beta, bias ? bi.C : null);
        Compare("MatMul", name, c);
        Free(a, b, bi, c);
    }

    /// <summary>A linear layer of a sub-network: y = x W[:out, :in]^T + b[:out], W a view with the parent's row stride.</summary>
    void MatMulSubNetwork(int rows, int inF, int outF, int fullIn, int fullOut)
    {
        var x = Pair(Random((long)rows * inF), rows, inF);
        var w = Pair(Random((long)fullOut * fullIn), fullOut, fullIn);
        var b = Pair(Random(fullOut), fullOut);
        var y = Poisoned(rows, outF);
        reference.MatMul(x.R, false, w.R.Narrow(0, 0, outF).Narrow(1, 0, inF), true, y.R, bias: b.R.Narrow(0, 0, outF));
        candidate.MatMul(x.C, false, w.C.Narrow(0, 0, outF).Narrow(1, 0, inF), true, y.C, bias: b.C.Narrow(0, 0, outF));
        Compare("MatMul", $"linear {rows}x{inF} -> {outF}, W view of ({fullOut}, {fullIn})", y);
        // and the weight gradient into the view: dW[:out, :in] += dy^T x (beta = 1 accumulates)
        var dy = Pair(Random((long)rows * outF), rows, outF);
        var dw = Pair(Random((long)fullOut * fullIn), fullOut, fullIn);
        reference.MatMul(dy.R, true, x.R, false, dw.R.Narrow(0, 0, outF).Narrow(1, 0, inF), 1f, 1f);
        candidate.MatMul(dy.C, true, x.C, false, dw.C.Narrow(0, 0, outF).Narrow(1, 0, inF), 1f, 1f);
        Compare("MatMul", $"dW += dy^T x into a view of ({fullOut}, {fullIn})", dw);
        Free(x, w, b, y, dy, dw);
    }

    /// <summary>
    /// Both operands rounded to bf16 on each side (by Copy, checked exact above), then a bf16 GEMM into f32 c; with
    /// <paramref name="fullK"/> &gt; k and tb, b is the leading (n, k) block of an (n, fullK) matrix, a sub-network weight view.
    /// </summary>
    void MatMulBf16(int m, int k, int n, bool ta, bool tb, bool bias, float alpha, float beta, int fullK)
    {
        string name = $"M={m} K={k} N={n}{(ta ? " aT" : "")}{(tb ? " bT" : "")}{(bias ? " +bias" : "")}" +
            $"{(beta != 0 ? $" a={alpha} b={beta}" : "")}{(fullK > k ? $" b view of K={fullK}" : "")}";
        int[] aShape = ta ? [k, m] : [m, k];
        int[] bShape = tb ? [n, fullK] : [k, n];
        var a = Pair(Random((long)m * k), aShape); var b = Pair(Random((long)bShape[0] * bShape[1]), bShape);
        var a16 = (R: reference.Empty(DType.BF16, aShape), C: candidate.Empty(DType.BF16, aShape));
        var b16 = (R: reference.Empty(DType.BF16, bShape), C: candidate.Empty(DType.BF16, bShape));
        reference.Copy(a.R, a16.R); candidate.Copy(a.C, a16.C);
        reference.Copy(b.R, b16.R); candidate.Copy(b.C, b16.C);
        Tensor B(Tensor t) => fullK > k ? t.Narrow(1, 0, k) : t;
        var bi = Pair(Random(n), n);
        var c = beta == 0 ? Poisoned(m, n) : Pair(Random((long)m * n), m, n);
        reference.MatMul(a16.R, ta, B(b16.R), tb, c.R, alpha, beta, bias ? bi.R : null);
        candidate.MatMul(a16.C, ta, B(b16.C), tb, c.C, alpha, beta, bias ? bi.C : null);
        Compare("MatMul(bf16)", name, c);
        Free(a, b, a16, b16, bi, c);
    }

    void SumRows(int m, int n, int fullN)
    {
        var dy = Pair(Random((long)m * fullN), m, fullN);
        var db = Pair(Random(n), n);
        reference.SumRows(dy.R.Narrow(1, 0, n), db.R); candidate.SumRows(dy.C.Narrow(1, 0, n), db.C);
        Compare("SumRows", $"M={m} N={n} view of N={fullN}", db);
        Free(dy, db);
    }

    /// <summary>Rotary on q inside a GPT-NeoX fused qkv buffer (B, T, H, 3*D).</summary>
    void Rotary(int b, int t, int h, int d, int r)
    {
        string name = $"B={b} T={t} H={h} D={d} R={r} q in fused qkv";
        var qkv = Pair(Random((long)b * t * h * 3 * d), b, t, h, 3 * d);
        var angles = Enumerable.Range(0, t * r / 2).Select(i => (i / (r / 2)) * MathF.Pow(10000f, -2f * (i % (r / 2)) / r)).ToArray();
        var cos = Pair(angles.Select(MathF.Cos).ToArray(), t, r / 2); var sin = Pair(angles.Select(MathF.Sin).ToArray(), t, r / 2);
        reference.RotaryForward(qkv.R.Narrow(3, 0, d), cos.R, sin.R); candidate.RotaryForward(qkv.C.Narrow(3, 0, d), cos.C, sin.C);
        Compare("RotaryForward", name, qkv);
        reference.RotaryBackward(qkv.R.Narrow(3, d, d), cos.R, sin.R); candidate.RotaryBackward(qkv.C.Narrow(3, d, d), cos.C, sin.C);
        Compare("RotaryBackward", name.Replace("q in", "k in"), qkv);
        Free(qkv, cos, sin);
    }

    /// <summary>
    /// Attention of the candidate at <paramref name="precision"/> against the CPU's f32 (Bf16: the tensor-core kernels,
    /// with T not a multiple of the 64-row tile to cover a partial last tile; their backward exists for D = 64 only).
    /// q, k, v are strided views of one fused buffer: (B, T, H, 3D) for multi-head, (B, T, H + 2·KV, D) with
    /// <paramref name="kv"/> &lt; H kv heads (grouped-query; each kv head's dk, dv sum its H/KV query heads). The GQA cases
    /// keep the multi-head tolerances: a kv head's gradient is a sum of H/KV independent per-head terms, each with the
    /// per-head error bound relative to its own size, so the sum's error and magnitude grow alike (both as √(H/KV)).
    /// </summary>
    void Attention(int b, int t, int h, int d, AttentionPrecision precision = AttentionPrecision.F32, int? kv = null)
    {
        int g = kv ?? h;
        string name = $"B={b} T={t} H={h}{(g < h ? $" KV={g}" : "")} D={d} fused qkv";
        string kind = precision == AttentionPrecision.Bf16 ? "(bf16 mma)" : "";
        int[] fused = g < h ? [b, t, h + 2 * g, d] : [b, t, h, 3 * d];
        long count = (long)b * t * (h + 2 * g) * d;
        var qkv = Pair(Random(count, 2f), fused);
        var o = Poisoned(b, t, h, d); var lse = Poisoned(b, h, t);
        float scale = 1f / MathF.Sqrt(d);
        Tensor Q(Tensor x) => g < h ? x.Narrow(2, 0, h) : x.Narrow(3, 0, d);
        Tensor K(Tensor x) => g < h ? x.Narrow(2, h, g) : x.Narrow(3, d, d);
        Tensor V(Tensor x) => g < h ? x.Narrow(2, h + g, g) : x.Narrow(3, 2 * d, d);
        reference.AttentionForward(Q(qkv.R), K(qkv.R), V(qkv.R), scale, o.R, lse.R, AttentionPrecision.F32);
        candidate.AttentionForward(Q(qkv.C), K(qkv.C), V(qkv.C), scale, o.C, lse.C, precision);
        Compare("AttentionForward" + kind, name, o, lse);
        if (precision == AttentionPrecision.Bf16 && d != 64) { Free(qkv, o, lse); return; }
        var dOut = Pair(Random((long)b * t * h * d), b, t, h, d);
        var dqkv = Pair(Random(count), fused);
        reference.AttentionBackward(dOut.R, Q(qkv.R), K(qkv.R), V(qkv.R), o.R, lse.R, scale, Q(dqkv.R), K(dqkv.R), V(dqkv.R),
            AttentionPrecision.F32);
        candidate.AttentionBackward(dOut.C, Q(qkv.C), K(qkv.C), V(qkv.C), o.C, lse.C, scale, Q(dqkv.C), K(dqkv.C), V(dqkv.C), precision);
        Compare("AttentionBackward" + kind, name, dqkv);
        Free(qkv, o, lse, dOut, dqkv);
    }

    /// <summary>
    /// RMSNorm over rows: x (N, C) a row-dense view of an (N, fullC) buffer, dx (+=) a view of another (both compared
    /// whole, so writes past C are caught); weight and dWeight the first C of the full width (a sub-network's).
    /// </summary>
    void RmsNorm(int n, int c, int fullC)
    {
        string name = $"N={n} C={c}{(fullC > c ? $" views of C={fullC}" : "")}";
        var x = Pair(Random((long)n * fullC, 2f, 0.5f), n, fullC);
        var w = Pair(Random(fullC, 0.5f, 1f), fullC);
        var y = Poisoned(n, c); var rstd = Poisoned(n);
        reference.RmsNormForward(x.R.Narrow(1, 0, c), w.R.Narrow(0, 0, c), 1e-6f, y.R, rstd.R);
        candidate.RmsNormForward(x.C.Narrow(1, 0, c), w.C.Narrow(0, 0, c), 1e-6f, y.C, rstd.C);
        Compare("RmsNormForward", name, y, rstd);
        var dy = Pair(Random((long)n * c), n, c);
        var dx = Pair(Random((long)n * fullC), n, fullC); var dw = Pair(Random(fullC), fullC);
        reference.RmsNormBackward(dy.R, x.R.Narrow(1, 0, c), w.R.Narrow(0, 0, c), rstd.R, dx.R.Narrow(1, 0, c), dw.R.Narrow(0, 0, c));
        candidate.RmsNormBackward(dy.C, x.C.Narrow(1, 0, c), w.C.Narrow(0, 0, c), rstd.C, dx.C.Narrow(1, 0, c), dw.C.Narrow(0, 0, c));
        Compare("RmsNormBackward", name, dx, dw);
        Free(x, w, y, rstd, dy, dx, dw);
    }

    /// <summary>
    /// Per-head RMSNorm (Qwen3's QK-norm) on k inside a fused (B, T, H, 3D) buffer: rows run over (b, t, h), C = D; dy is
    /// the strided q slot of another fused buffer and dx (+=) the k slot of a third, compared whole.
    /// </summary>
    void RmsNormHeads(int b, int t, int h, int d)
    {
        string name = $"B={b} T={t} H={h} D={d} per head, k in fused qkv";
        long count = (long)b * t * h * 3 * d;
        var qkv = Pair(Random(count, 3f), b, t, h, 3 * d);
        var w = Pair(Random(d, 0.5f, 1f), d);
        var y = Poisoned(b, t, h, d); var rstd = Poisoned(b * t * h);
        Tensor K(Tensor x) => x.Narrow(3, d, d);
        reference.RmsNormForward(K(qkv.R), w.R, 1e-6f, y.R, rstd.R); candidate.RmsNormForward(K(qkv.C), w.C, 1e-6f, y.C, rstd.C);
        Compare("RmsNormForward", name, y, rstd);
        var dy = Pair(Random(count), b, t, h, 3 * d);
        var dx = Pair(Random(count), b, t, h, 3 * d); var dw = Pair(Random(d), d);
        reference.RmsNormBackward(dy.R.Narrow(3, 0, d), K(qkv.R), w.R, rstd.R, K(dx.R), dw.R);
        candidate.RmsNormBackward(dy.C.Narrow(3, 0, d), K(qkv.C), w.C, rstd.C, K(dx.C), dw.C);
        Compare("RmsNormBackward", name, dx, dw);
        Free(qkv, w, y, rstd, dy, dx, dw);
    }

    /// <summary>SwiGLU on (N, M): gates over [-8, 8] (the sigmoid's saturation) plus ±100 (exp overflows: limits 0 and g).</summary>
    void SwiGlu(int n, int m)
    {
        string name = $"N={n} M={m}";
        var gv = Random((long)n * m, 8f);
        gv[0] = -100f; gv[^1] = 100f;
        var gate = Pair(gv, n, m); var up = Pair(Random((long)n * m, 2f), n, m);
        var y = Poisoned(n, m);
        reference.SwiGluForward(gate.R, up.R, y.R); candidate.SwiGluForward(gate.C, up.C, y.C);
        Compare("SwiGluForward", name, y);
        var dy = Pair(Random((long)n * m), n, m);
        var dGate = Pair(Random((long)n * m), n, m); var dUp = Pair(Random((long)n * m), n, m);
        reference.SwiGluBackward(dy.R, gate.R, up.R, dGate.R, dUp.R); candidate.SwiGluBackward(dy.C, gate.C, up.C, dGate.C, dUp.C);
        Compare("SwiGluBackward", name, dGate, dUp);
        Free(gate, up, y, dy, dGate, dUp);
    }

    void Gelu(int n, bool tanh)
    {
        string name = $"n={n} {(tanh ? "tanh" : "exact")}";
        var x = Pair(Random(n, 5f), n); var y = Poisoned(n);
        reference.GeluForward(x.R, y.R, tanh); candidate.GeluForward(x.C, y.C, tanh);
        Compare("GeluForward", name, y);
        var dy = Pair(Random(n), n); var dx = Pair(Random(n), n);
        reference.GeluBackward(dy.R, x.R, dx.R, tanh); candidate.GeluBackward(dy.C, x.C, dx.C, tanh);
        Compare("GeluBackward", name, dx);
        Free(x, y, dy, dx);
    }

    /// <summary>
    /// The fused no-grad norms (evaluation): x (N, C) += delta + deltaBias in place, then the norm into y; both x and y are
    /// compared. Weights are the first C of the full width (a sub-network's); delta and its bias each optional.
    /// </summary>
    void FusedNorms(int n, int c, int fullC, bool withDelta, bool withBias)
    {
        string name = $"N={n} C={c}{(fullC > c ? $" weights of C={fullC}" : "")}{(withDelta ? " +delta" : "")}{(withBias ? " +bias" : "")}";
        var w = Pair(Random(fullC, 0.5f, 1f), fullC); var b = Pair(Random(fullC), fullC);
        var delta = Pair(Random((long)n * c), n, c); var deltaBias = Pair(Random(c), c);
        foreach (bool rms in new[] { false, true })
        {
            var x = Pair(Random((long)n * c, 2f, 3f), n, c);
            var y = Poisoned(n, c);
            Tensor? D(Tensor t) => withDelta ? t : null;
            Tensor? DB(Tensor t) => withBias ? t : null;
            if (rms)
            {
                reference.AddRmsNormForward(x.R, D(delta.R), DB(deltaBias.R), w.R.Narrow(0, 0, c), 1e-6f, y.R);
                candidate.AddRmsNormForward(x.C, D(delta.C), DB(deltaBias.C), w.C.Narrow(0, 0, c), 1e-6f, y.C);
            }
            else
            {
                reference.AddLayerNormForward(x.R, D(delta.R), DB(deltaBias.R), w.R.Narrow(0, 0, c), b.R.Narrow(0, 0, c), 1e-5f, y.R);
                candidate.AddLayerNormForward(x.C, D(delta.C), DB(deltaBias.C), w.C.Narrow(0, 0, c), b.C.Narrow(0, 0, c), 1e-5f, y.C);
            }
            Compare(rms ? "AddRmsNormForward" : "AddLayerNormForward", name, x, y);
            Free(x, y);
        }
        Free(w, b, delta, deltaBias);
    }

    /// <summary>gelu(x + bias) over (N, M), in place as evaluation runs it; inputs over [-5, 5] as the GELU cases.</summary>
    void BiasGelu(int n, int m, bool tanh, bool bias)
    {
        string name = $"N={n} M={m} {(tanh ? "tanh" : "exact")}{(bias ? " +bias" : "")}";
        var x = Pair(Random((long)n * m, 4f), n, m); var bv = Pair(Random(m), m);
        reference.BiasGeluForward(x.R, bias ? bv.R : null, x.R, tanh); candidate.BiasGeluForward(x.C, bias ? bv.C : null, x.C, tanh);
        Compare("BiasGeluForward", name, x);
        Free(x, bv);
    }

    void Elementwise(int n)
    {
        var a = Pair(Random(n), n); var b = Pair(Random(n), n); var y = Poisoned(n);
        reference.Add(a.R, b.R, y.R); candidate.Add(a.C, b.C, y.C);
        Compare("Add", $"n={n}", y);
        reference.Add(a.R, b.R, a.R); candidate.Add(a.C, b.C, a.C);
        Compare("Add", $"n={n} in place (y = a)", a);
        reference.Axpy(-0.75f, b.R, y.R); candidate.Axpy(-0.75f, b.C, y.C);
        Compare("Axpy", $"n={n}", y);
        reference.Scale(y.R, 3.5f); candidate.Scale(y.C, 3.5f);
        Compare("Scale", $"n={n}", y);
        // row-dense views: x (7, 33) inside a (7, 50) buffer into y (7, 33) inside a (7, 40) one (compared whole)
        var xw = Pair(Random(7 * 50), 7, 50); var yw = Pair(Random(7 * 40), 7, 40);
        reference.Axpy(0.5f, xw.R.Narrow(1, 0, 33), yw.R.Narrow(1, 0, 33));
        candidate.Axpy(0.5f, xw.C.Narrow(1, 0, 33), yw.C.Narrow(1, 0, 33));
        Compare("Axpy", "(7, 33) row-dense views", yw);
        Free(a, b, y, xw, yw);
    }

    void CrossEntropy(int n, int v, bool withGrad)
    {
        string name = $"N={n} V={v}{(withGrad ? "" : " loss only")}";
        var logits = Pair(Random((long)n * v, 5f), n, v);
        var targets = PairInt(Enumerable.Range(0, n).Select(i => i == 2 ? -100 : _rng.Next(v)).ToArray(), n);
        var losses = Poisoned(n);
        var d = Pair(Random((long)n * v), n, v);
        reference.CrossEntropy(logits.R, targets.R, -100, losses.R, withGrad ? d.R : null, 0.25f);
        candidate.CrossEntropy(logits.C, targets.C, -100, losses.C, withGrad ? d.C : null, 0.25f);
        Compare("CrossEntropy", name, losses, d);
        Free(logits, targets, losses, d);
    }

    /// <summary>Distillation with a full teacher (k = 0) or a top-k teacher (k ids drawn at random, random tail mass, 0 when k = V); row 2
    /// is ignored.</summary>
    void Distillation(int n, int v, DistillKind kind, float tau, int k)
    {
        string name = $"N={n} V={v} {kind} tau={tau}{(k > 0 ? $" top-{k}" : "")}";
        var student = Pair(Random((long)n * v, 4f), n, v);
        var targets = PairInt(Enumerable.Range(0, n).Select(i => i == 2 ? -100 : _rng.Next(v)).ToArray(), n);
        var teacherLogits = Pair(Random((long)n * v, 4f), n, v);
        var topLogProbs = Pair(Random((long)n * Math.Max(k, 1), 1f, -3f), n, Math.Max(k, 1));
        var topIds = PairInt(
            Enumerable.Range(0, n).SelectMany(_ => Enumerable.Range(0, v).OrderBy(_ => _rng.Next()).Take(Math.Max(k, 1))).ToArray(), n,
            Math.Max(k, 1));
        var tail = Pair(k == v ? new float[n] : Random(n, 0.2f, 0.3f), n);   // with k = V nothing is left for a tail
        DistillTeacher Teacher(bool r) => k > 0
            ? DistillTeacher.TopK(r ? topLogProbs.R : topLogProbs.C, r ? topIds.R : topIds.C, r ? tail.R : tail.C)
            : DistillTeacher.Full(r ? teacherLogits.R : teacherLogits.C);
        var losses = Poisoned(n, 2);
        var d = Pair(Random((long)n * v), n, v);
        var s = new DistillSettings(kind, tau, 0.3f, 0.7f, -100, 0.25f);
        reference.Distillation(student.R, Teacher(true), targets.R, s, losses.R, d.R);
        candidate.Distillation(student.C, Teacher(false), targets.C, s, losses.C, d.C);
        Compare("Distillation", name, losses, d);
        Free(student, targets, teacherLogits, topLogProbs, topIds, tail, losses, d);
    }

    void AdamW(int p, long decay, int step)
    {
        var param = Pair(Random(p), p); var grad = Pair(Random(p, 3f), p);
        var m = Pair(step == 1 ? new float[p] : Random(p, 0.1f), p);
        var v = Pair(step == 1 ? new float[p] : Random(p, 0.01f, 0.01f), p);
        var s = new AdamWSettings(1e-3f, WeightDecay: 0.1f);
        reference.AdamW(param.R, grad.R, m.R, v.R, decay, s, step, 0.5f); candidate.AdamW(param.C, grad.C, m.C, v.C, decay, s, step, 0.5f);
        Compare("AdamW", $"P={p} decay={decay} step={step}", param, m, v);
        Free(param, grad, m, v);
    }

    void Reductions(int n)
    {
        var x = Pair(Random(n, 1f, 0.1f), n);
        double r = reference.Sum(x.R), c = candidate.Sum(x.C);
        Add(new ParityResult("Sum", $"n={n}", Math.Abs(c - r) / Math.Max(Math.Abs(r), 1e-30), Tolerance("Sum", tf32)));
        r = reference.SumOfSquares(x.R); c = candidate.SumOfSquares(x.C);
        Add(new ParityResult("SumOfSquares", $"n={n}", Math.Abs(c - r) / Math.Max(Math.Abs(r), 1e-30), Tolerance("SumOfSquares", tf32)));
        Free(x);
    }
}
