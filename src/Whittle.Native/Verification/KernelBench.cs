using System.Diagnostics;
using Whittle.Native.Cuda;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Verification;

/// <summary>The tensor sizes of one training step: B, T, C, H, D, rotary dims R, MLP width I, vocabulary V, layers L, parameters
/// P.</summary>
public sealed record KernelShape(
    int Batch, int SeqLen, int Hidden, int Heads, int HeadSize, int RotaryDims, int Intermediate, int Vocab, int Layers, long Parameters)
{
    public int Rows => Batch * SeqLen;

    public static KernelShape Of(GptNeoXConfig c, int batch, int seqLen) =>
        new(batch, seqLen, c.HiddenSize, c.NumHeads, c.HeadSize, c.RotaryDims, c.IntermediateSize, c.VocabSize, c.NumLayers,
            ParameterCount.Of(c).Total);
}

/// <summary>A measured ceiling of the device: a large copy (GB/s, bytes read + written) or a large GEMM (TFLOP/s).</summary>
public sealed record DeviceCeiling(string Name, double Value, string Unit, string How);

/// <summary>One GEMM of a step: its FLOPs, calls per training step and median milliseconds.</summary>
public sealed record GemmShapeRate(string Case, double Flops, int Calls, double Milliseconds)
{
    public double Gflops => Flops / (Milliseconds * 1e6);
}

/// <summary>
/// The measured f32 GEMM ceiling (<see cref="KernelBench.MeasureGemmCeiling"/>): a square GEMM's GFLOP/s, the step's linear
/// GEMMs' GFLOP/s (total FLOPs over total time), and the ceiling, the larger of the two.
/// </summary>
public sealed record GemmCeiling(double SquareGflops, int SquareSize, double ModelShapesGflops, IReadOnlyList<GemmShapeRate> Shapes)
{
    public double Gflops => Math.Max(SquareGflops, ModelShapesGflops);
    public string Source => SquareGflops >= ModelShapesGflops ? $"square {SquareSize}³" : "the model's GEMM shapes";
}

/// <summary>
/// One op at one shape: median time, the bytes it must move or the FLOPs it must do (<see cref="Formula"/> says which
/// and how they are counted), the ceiling it is compared with and how often a training step calls it.
/// </summary>
public sealed record KernelTiming(
    string Op, string Case, double Milliseconds, double Bytes, double Flops, string Formula, string Ceiling, int CallsPerTrainStep)
{
    public double GigabytesPerSecond => Bytes / (Milliseconds * 1e6);
    public double TeraflopsPerSecond => Flops / (Milliseconds * 1e9);
    /// <summary>Achieved rate over the named ceiling's rate: GB/s over the copy bandwidth, or TFLOP/s over the GEMM rate.</summary>
    public double FractionOf(IReadOnlyList<DeviceCeiling> ceilings)
    {
        var c = ceilings.FirstOrDefault(x => x.Name == Ceiling);
        if (c is null || c.Value <= 0) return double.NaN;
        return (Ceiling == KernelBench.CopyCeiling ? GigabytesPerSecond : TeraflopsPerSecond) / c.Value;
    }
}

/// <summary>
/// Times every <see cref="IBackend"/> op at the shapes of a training step, and the device's own ceilings, for
/// <c>whittle bench kernels</c>. Policy:
///  - each op runs <c>warmup</c> untimed times, then <c>repeats</c> timed times; the median is reported. On CUDA a pair
///    of events brackets each call (device time); on the CPU a stopwatch does;
///  - inputs are random (a block of host random numbers tiled over the tensor, never zeros: zeros run faster on some
///    hardware and hide unwritten outputs), allocated per op and freed after it, so the peak is one op's working set;
///  - memory-bound ops count the fewest bytes they must move: each input read once, each output written once, an
///    accumulated (+=) output read and written; compute-bound ops (matmul, attention) count FLOPs (2 per multiply-add,
///    causal attention only the unmasked half of the T×T scores);
///  - ceilings are measured, not taken from a datasheet: a device-to-device copy of a large buffer (bytes read + written)
///    and large square GEMMs (f32, TF32 and bf16 on CUDA; our f32 GEMM on the CPU);
///  - <see cref="KernelTiming.CallsPerTrainStep"/> is how often one step of GptNeoX training calls the op at that shape
///    (from the model's forward pass and the tape ops' backward passes), so Σ calls × time estimates the kernel time of a step.
/// </summary>
public sealed class KernelBench : IDisposable
{
    public const string CopyCeiling = "copy", Fp32Gemm = "fp32_gemm", Tf32Gemm = "tf32_gemm", Bf16Gemm = "bf16_gemm";

    readonly IBackend _backend;
    readonly int _repeats, _warmup;
    readonly CudaEventTimer? _events;
    readonly Rng _rng = new(20241122);
    Tensor? _randomBlock;   // (RandomBlock) f32 on the backend, tiled into every input

    const int RandomBlock = 1 << 20;

    public KernelBench(IBackend backend, int repeats, int warmup)
    {
        if (repeats < 1 || warmup < 0) throw new ArgumentOutOfRangeException(nameof(repeats), "repeats must be ≥ 1 and warmup ≥ 0");
        _backend = backend; _repeats = repeats; _warmup = warmup;
        if (backend is CudaBackend cuda) _events = new CudaEventTimer(cuda);
    }

    bool IsCuda => _backend is CudaBackend;

    // ---------------------------------------------------------------- timing

    /// <summary>Median milliseconds of one call of <paramref name="op"/>.</summary>
    public double Time(Action op)
    {
        for (int i = 0; i < _warmup; i++) op();
        _backend.Synchronize();
        var ms = new double[_repeats];
        for (int i = 0; i < _repeats; i++)
        {
            if (_events is not null) ms[i] = _events.Milliseconds(op);
            else
            {
                var sw = Stopwatch.StartNew();
                op();
                _backend.Synchronize();
                ms[i] = sw.Elapsed.TotalMilliseconds;
            }
        }
        _backend.Synchronize();   // surfaces device-side errors of the timed calls
        Array.Sort(ms);
        return ms[_repeats / 2];
    }

    // ---------------------------------------------------------------- inputs

    /// <summary>An f32 tensor of uniform values in [offset - scale, offset + scale].</summary>
    Tensor Random(float scale, float offset, params int[] shape)
    {
        if (_randomBlock is null)
        {
            var data = new float[RandomBlock];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(_rng.NextDouble() * 2 - 1);
            using var host = Tensor.FromArray(data, RandomBlock);
            _randomBlock = _backend.FromHost(host);
        }
        var t = _backend.Empty(DType.F32, shape);
        var flat = t.Reshape(checked((int)t.Count));
        for (long done = 0; done < t.Count; done += RandomBlock)
        {
            int n = (int)Math.Min(RandomBlock, t.Count - done);
            _backend.Copy(_randomBlock.Narrow(0, 0, n), flat.Narrow(0, (int)done, n));
        }
        if (scale != 1f) _backend.Scale(t, scale);
        if (offset != 0f) { using var o = _backend.Empty(DType.F32, shape); _backend.Fill(o, offset); _backend.Add(t, o, t); }
        return t;
    }

    Tensor Random(params int[] shape) => Random(1f, 0f, shape);

    Tensor RandomIds(int count, int below)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++) ids[i] = _rng.NextInt(below);
        using var host = Tensor.FromArray(ids, count);
        return _backend.FromHost(host);
    }

    Tensor Bf16Of(Tensor f32)
    {
        var b = _backend.Empty(DType.BF16, f32.ShapeArray);
        _backend.Copy(f32, b);
        return b;
    }

    // ---------------------------------------------------------------- ceilings

    /// <summary>
    /// The device's measured ceilings. CUDA: a 1 GiB device-to-device copy and 8192³ GEMMs in f32, TF32 and bf16 (bf16
    /// operands, f32 output, f32 accumulation). CPU: a 256 MiB copy and a 1024³ f32 GEMM (ours).
    /// </summary>
    public IReadOnlyList<DeviceCeiling> MeasureCeilings(int? gemmSize = null, long? copyBytes = null)
    {
        var list = new List<DeviceCeiling>();
        long bytes = copyBytes ?? (IsCuda ? 1L << 30 : 256L << 20);
        int count = checked((int)(bytes / 4));
        using (var src = Random(count))
        using (var dst = _backend.Empty(DType.F32, count))
        {
            double ms = Time(() => _backend.Copy(src, dst));
            list.Add(new DeviceCeiling(CopyCeiling, 2.0 * count * 4 / (ms * 1e6), "GB/s",
                $"{(IsCuda ? "cuMemcpyDtoDAsync" : "Copy")} of {bytes >> 20} MiB, bytes read + written, median of {_repeats}"));
        }
        int n = gemmSize ?? (IsCuda ? 8192 : 1024);
        double flops = 2.0 * n * n * n;
        using var a = Random(n, n); using var b = Random(n, n); using var c = _backend.Empty(DType.F32, n, n);
        if (_backend is CudaBackend cuda)
        {
            bool tf32 = cuda.AllowTf32;
            try
            {
                cuda.AllowTf32 = false;
                list.Add(Gemm(Fp32Gemm, () => _backend.MatMul(a, false, b, true, c), flops, $"cuBLAS f32 GEMM {n}³ (CUBLAS_COMPUTE_32F)"));
                cuda.AllowTf32 = true;
                list.Add(Gemm(
                    Tf32Gemm, () => _backend.MatMul(a, false, b, true, c), flops, $"cuBLAS f32 GEMM {n}³ with TF32 tensor cores"));
            }
            finally { cuda.AllowTf32 = tf32; }
            using var ah = Bf16Of(a); using var bh = Bf16Of(b);
            list.Add(Gemm(
                Bf16Gemm, () => _backend.MatMul(ah, false, bh, true, c), flops,
                $"cuBLAS GEMM {n}³, bf16 operands, f32 output and accumulation"));
        }
        else list.Add(Gemm(Fp32Gemm, () => _backend.MatMul(a, false, b, true, c), flops, $"our f32 GEMM {n}³ (Cpu/Gemm.cs)"));
        return list;
    }

    /// <summary>
    /// The f32 GEMM ceiling of this device through the backend's own MatMul (the GEMM a step runs: OpenBLAS or ours on
    /// the CPU, cuBLAS on CUDA), for the fraction-of-ceiling figures of <c>whittle bench</c>: a square
    /// <paramref name="squareSize"/>³ GEMM, and every linear-layer GEMM of one step of <paramref name="s"/> (forward x Wᵀ + b,
    /// input gradient g W, weight gradient gᵀ x; each timed once and weighted by its calls per step) as one rate, total
    /// FLOPs over total time. The ceiling is the larger of the two: the best rate the GEMM sustained in this run, so a
    /// step's fraction of it is never flattered by a slow square or by the model's narrow shapes.
    /// </summary>
    public GemmCeiling MeasureGemmCeiling(KernelShape s, int squareSize)
    {
        if (squareSize < 1) throw new ArgumentOutOfRangeException(nameof(squareSize), "must be ≥ 1");
        int n = s.Rows, c = s.Hidden, hd = s.Heads * s.HeadSize;
        double squareFlops = 2.0 * squareSize * squareSize * squareSize, square;
        using (var a = Random(squareSize, squareSize)) using (var b = Random(squareSize, squareSize))
        using (var y = _backend.Empty(DType.F32, squareSize, squareSize))
            square = squareFlops / (Time(() => _backend.MatMul(a, false, b, true, y)) * 1e6);   // Time is in ms
        var shapes = new List<GemmShapeRate>();
        var linears = new (string Name, int Out, int In, bool Bias, int Calls)[]
        {
            ("query_key_value", 3 * hd, c, true, s.Layers), ("attention.dense", c, hd, true, s.Layers),
            ("dense_h_to_4h", s.Intermediate, c, true, s.Layers), ("dense_4h_to_h", c, s.Intermediate, true, s.Layers),
            ("embed_out", s.Vocab, c, false, 1),
        };
        foreach (var (name, outF, inF, hasBias, calls) in linears)
        {
            double flops = 2.0 * n * outF * inF;
            using var x = Random(n, inF); using var w = Random(0.02f, 0f, outF, inF); using var bias = Random(outF);
            using var y = _backend.Empty(DType.F32, n, outF);   // (n, outF)
            using var g = Random(n, outF); using var dx = Random(n, inF); using var dw = Random(outF, inF);
            shapes.Add(new($"{name} forward ({n}×{outF}×{inF}, NT)", flops, calls,
                Time(() => _backend.MatMul(x, false, w, true, y, bias: hasBias ? bias : null))));
            shapes.Add(new($"{name} dx ({n}×{inF}×{outF}, NN)", flops, calls,
                Time(() => _backend.MatMul(g, false, w, false, dx, beta: 1f))));
            shapes.Add(new($"{name} dW ({outF}×{inF}×{n}, TN)", flops, calls,
                Time(() => _backend.MatMul(g, true, x, false, dw, beta: 1f))));
        }
        double totalFlops = shapes.Sum(r => r.Flops * r.Calls), totalMs = shapes.Sum(r => r.Milliseconds * r.Calls);
        return new GemmCeiling(square, squareSize, totalFlops / (totalMs * 1e6), shapes);
    }

    DeviceCeiling Gemm(string name, Action op, double flops, string how) =>
        new(name, flops / (Time(op) * 1e9), "TFLOP/s", how + $", median of {_repeats}");

    // ---------------------------------------------------------------- ops

    /// <summary>Times every op at the shapes of one training step of <paramref name="s"/>.</summary>
    public IReadOnlyList<KernelTiming> Run(KernelShape s)
    {
        var results = new List<KernelTiming>();
        int n = s.Rows, c = s.Hidden, L = s.Layers, hd = s.Heads * s.HeadSize;
        string matmulCeiling = _backend is CudaBackend { AllowTf32: true } ? Tf32Gemm : Fp32Gemm;
        string nc = $"({n}, {c})";

        void Add(string op, string @case, double ms, double bytes, double flops, string formula, string ceiling, int calls) =>
            results.Add(new KernelTiming(op, @case, ms, bytes, flops, formula, ceiling, calls));
        void Memory(string op, string @case, double bytes, string formula, int calls, Action run) =>
            Add(op, @case, Time(run), bytes, 0, formula, CopyCeiling, calls);

        // embedding
        using (var ids = RandomIds(n, s.Vocab))
        using (var table = Random(0.02f, 0f, s.Vocab, c))
        using (var rows = Random(n, c))
        {
            Memory("EmbeddingForward", $"N={n} V={s.Vocab} C={c}", 4.0 * n + 8.0 * n * c, "4N (ids) + 4NC (rows read) + 4NC (output)", 1,
                () => _backend.EmbeddingForward(ids, table, rows));
            Memory("EmbeddingBackward", $"N={n} V={s.Vocab} C={c}", 4.0 * n + 12.0 * n * c,
                "4N (ids) + 4NC (dOutput) + 8NC (dWeight rows read and written)", 1,
                () => _backend.EmbeddingBackward(ids, rows, table));
        }

        // layernorm
        using (var x = Random(2f, 1f, n, c))
        using (var w = Random(0.1f, 1f, c)) using (var b = Random(c))
        using (var y = _backend.Empty(DType.F32, n, c)) using (var mean = _backend.Empty(DType.F32, n))
            using (var rstd = _backend.Empty(DType.F32, n))
        {
            Memory("LayerNormForward", nc, 4.0 * (2L * n * c + 2L * c + 2L * n),
                "4·(NC x + NC y + 2C weight, bias + 2N mean, rstd)", 2 * L + 1,
                () => _backend.LayerNormForward(x, w, b, 1e-5f, y, mean, rstd));
            using var dy = Random(n, c); using var dx = Random(n, c); using var dw = Random(c); using var db = Random(c);
            Memory("LayerNormBackward", nc, 4.0 * (4L * n * c + 2L * n + 5L * c),
                "4·(NC dy + NC x + 2NC dx (+=) + 2N mean, rstd + C weight + 4C dWeight, dBias (+=))", 2 * L + 1,
                () => _backend.LayerNormBackward(dy, x, w, mean, rstd, dx, dw, db));
        }

        // every linear layer: forward with bias, dX (+=), dW (+=), dBias
        var linears = new (string Name, int Out, int In, bool Bias)[]
        {
            ("query_key_value", 3 * hd, c, true), ("attention.dense", c, hd, true),
            ("dense_h_to_4h", s.Intermediate, c, true), ("dense_4h_to_h", c, s.Intermediate, true), ("embed_out", s.Vocab, c, false),
        };
        foreach (var (name, outF, inF, hasBias) in linears)
        {
            int calls = name == "embed_out" ? 1 : L;
            double flops = 2.0 * n * outF * inF;
            string f = "2·M·N·K";
            using var x = Random(n, inF); using var w = Random(0.02f, 0f, outF, inF); using var bias = Random(outF);
            using var y = _backend.Empty(DType.F32, n, outF);
            Add("MatMul", $"{name} forward y ({n}, {outF}) = x ({n}, {inF}) Wᵀ{(hasBias ? " + b" : "")}",
                Time(() => _backend.MatMul(x, false, w, true, y, bias: hasBias ? bias : null)),
                0, flops, f, matmulCeiling, calls);
            using var g = Random(n, outF); using var dx = Random(n, inF); using var dw = Random(outF, inF);
            Add("MatMul", $"{name} dx ({n}, {inF}) += g W", Time(() => _backend.MatMul(g, false, w, false, dx, beta: 1f)), 0, flops, f,
                matmulCeiling, calls);
            Add("MatMul", $"{name} dW ({outF}, {inF}) += gᵀ x", Time(() => _backend.MatMul(g, true, x, false, dw, beta: 1f)), 0, flops, f,
                matmulCeiling, calls);
            if (hasBias)
            {
                using var dBias = Random(outF);
                Memory("SumRows", $"{name} dBias ({outF}) += column sums of g ({n}, {outF})", 4.0 * n * outF + 8.0 * outF,
                    "4·M·N (dy) + 8N (dBias read and written)", calls,
                    () => _backend.SumRows(g, dBias));
            }
            if (IsCuda)   // the bf16 tensor-core path (bf16 operands, f32 output)
            {
                using var xh = Bf16Of(x); using var wh = Bf16Of(w);
                Add("MatMul", $"{name} forward, bf16 operands", Time(() => _backend.MatMul(xh, false, wh, true, y)), 0, flops, f,
                    Bf16Gemm, 0);
            }
        }

        // rotary and attention on q, k, v inside the fused qkv buffer (B, T, H, 3D), as the model runs them
        int B = s.Batch, T = s.SeqLen, H = s.Heads, D = s.HeadSize, R = s.RotaryDims;
        using (var qkv = Random(B, T, H, 3 * D))
        {
            Tensor Q(Tensor t) => t.Narrow(3, 0, D); Tensor K(Tensor t) => t.Narrow(3, D, D); Tensor V(Tensor t) => t.Narrow(3, 2 * D, D);
            if (R > 0)
            {
                var angles = Enumerable.Range(0, T * R / 2).Select(
                    i => (i / (R / 2)) * MathF.Pow(10000f, -2f * (i % (R / 2)) / R)).ToArray();
                using var hc = Tensor.FromArray(angles.Select(MathF.Cos).ToArray(), T, R / 2);
                using var hs = Tensor.FromArray(angles.Select(MathF.Sin).ToArray(), T, R / 2);
                using var cos = _backend.FromHost(hc); using var sin = _backend.FromHost(hs);
                double bytes = 8.0 * B * T * H * R + 4.0 * T * R;
                string rf = "8·B·T·H·R (the rotated dims of q read and written) + 4·T·R (cos, sin)";
                Memory("RotaryForward", $"B={B} T={T} H={H} D={D} R={R}, q in fused qkv", bytes, rf, 2 * L,
                    () => _backend.RotaryForward(Q(qkv), cos, sin));
                Memory("RotaryBackward", $"B={B} T={T} H={H} D={D} R={R}, dq in fused qkv", bytes, rf, 2 * L,
                    () => _backend.RotaryBackward(Q(qkv), cos, sin));
            }
            float scale = 1f / MathF.Sqrt(D);
            double causal = (double)B * H * T * (T + 1) / 2 * D;   // unmasked (query, key) pairs × D
            using var o = _backend.Empty(DType.F32, B, T, H, D); using var lse = _backend.Empty(DType.F32, B, H, T);
            string att = $"B={B} T={T} H={H} D={D} causal";
            Add("AttentionForward", att,
                Time(() => _backend.AttentionForward(Q(qkv), K(qkv), V(qkv), scale, o, lse, AttentionPrecision.F32)), 0, 4 * causal,
                "4·B·H·D·T(T+1)/2 (QKᵀ and PV over the unmasked pairs)", Fp32Gemm, L);
            using var dOut = Random(B, T, H, D); using var dqkv = Random(B, T, H, 3 * D);
            Add("AttentionBackward", att,
                Time(() => _backend.AttentionBackward(
                dOut, Q(qkv), K(qkv), V(qkv), o, lse, scale, Q(dqkv), K(dqkv), V(dqkv), AttentionPrecision.F32)), 0, 10 * causal,
                "10·B·H·D·T(T+1)/2 (QKᵀ recomputed, dV, dP, dQ, dK over the unmasked pairs)", Fp32Gemm, L);
            if (_backend.Device == Device.Cuda && D is 64 or 128)   // the bf16 tensor-core kernels (bf16 precision mode)
            {
                Add("AttentionForward", att + ", bf16 mma",
                    Time(() => _backend.AttentionForward(Q(qkv), K(qkv), V(qkv), scale, o, lse, AttentionPrecision.Bf16)), 0, 4 * causal,
                    "4·B·H·D·T(T+1)/2, bf16 tensor cores", Bf16Gemm, 0);
                if (D == 64)
                    Add("AttentionBackward", att + ", bf16 mma",
                        Time(() => _backend.AttentionBackward(
                        dOut, Q(qkv), K(qkv), V(qkv), o, lse, scale, Q(dqkv), K(dqkv), V(dqkv), AttentionPrecision.Bf16)), 0, 10 * causal,
                        "10·B·H·D·T(T+1)/2, bf16 tensor cores", Bf16Gemm, 0);
            }
        }

        // grouped-query attention (0 calls: GPT-NeoX is multi-head) with groups of 4 query heads, Llama 3's (2, or 1 kv head,
        // when H is not a multiple of 4), q, k, v inside a fused (B, T, H + 2·KV, D) buffer; the same FLOPs as multi-head
        int kvHeads = H % 4 == 0 ? H / 4 : H % 2 == 0 ? H / 2 : 1;
        using (var fused = Random(B, T, H + 2 * kvHeads, D))
        {
            Tensor Q(Tensor t) => t.Narrow(2, 0, H);
            Tensor K(Tensor t) => t.Narrow(2, H, kvHeads);
            Tensor V(Tensor t) => t.Narrow(2, H + kvHeads, kvHeads);
            float scale = 1f / MathF.Sqrt(D);
            double causal = (double)B * H * T * (T + 1) / 2 * D;
            using var o = _backend.Empty(DType.F32, B, T, H, D); using var lse = _backend.Empty(DType.F32, B, H, T);
            using var dOut = Random(B, T, H, D); using var dFused = Random(B, T, H + 2 * kvHeads, D);
            string att = $"B={B} T={T} H={H} KV={kvHeads} D={D} causal";
            var precisions = _backend.Device == Device.Cuda && D is 64 or 128
                ? new[] { AttentionPrecision.F32, AttentionPrecision.Bf16 } : [AttentionPrecision.F32];
            foreach (var prec in precisions)
            {
                bool mma = prec == AttentionPrecision.Bf16;
                string gqa = att + (mma ? ", bf16 mma" : ""), ceiling = mma ? Bf16Gemm : Fp32Gemm;
                double msForward = Time(() => _backend.AttentionForward(Q(fused), K(fused), V(fused), scale, o, lse, prec));
                Add("AttentionForward", gqa, msForward, 0, 4 * causal, "4·B·H·D·T(T+1)/2 (QKᵀ and PV, unmasked pairs)", ceiling, 0);
                if (mma && D != 64) continue;
                double msBackward = Time(() => _backend.AttentionBackward(dOut, Q(fused), K(fused), V(fused), o, lse, scale,
                    Q(dFused), K(dFused), V(dFused), prec));
                Add("AttentionBackward", gqa, msBackward, 0, 10 * causal,
                    "10·B·H·D·T(T+1)/2 (QKᵀ recomputed, dV, dP, dQ, dK over the unmasked pairs)", ceiling, 0);
            }
        }

        // GELU on the MLP activation
        long ni = (long)n * s.Intermediate;
        using (var x = Random(3f, 0f, n, s.Intermediate)) using (var y = _backend.Empty(DType.F32, n, s.Intermediate))
        {
            Memory("GeluForward", $"({n}, {s.Intermediate}) exact", 8.0 * ni, "4n (x) + 4n (y)", L,
                () => _backend.GeluForward(x, y, false));
            using var dy = Random(n, s.Intermediate);
            Memory("GeluBackward", $"({n}, {s.Intermediate}) exact", 16.0 * ni, "4n (dy) + 4n (x) + 8n (dx read and written)", L,
                () => _backend.GeluBackward(dy, x, y, false));
        }

        // evaluation's fused no-grad ops (0 calls in a training step): the residual add with the next norm, bias + GELU
        using (var x = Random(2f, 1f, n, c)) using (var delta = Random(n, c)) using (var bias = Random(c))
        using (var w = Random(0.1f, 1f, c)) using (var b = Random(c)) using (var y = _backend.Empty(DType.F32, n, c))
        {
            Memory("AddLayerNormForward", nc, 4.0 * (4L * n * c + 3L * c), "4·(2NC x (+=) + NC delta + NC y + 3C bias, weight, bias)",
                0, () => _backend.AddLayerNormForward(x, delta, bias, w, b, 1e-5f, y));
            Memory("AddRmsNormForward", nc, 4.0 * (4L * n * c + 2L * c), "4·(2NC x (+=) + NC delta + NC y + 2C bias, weight)", 0,
                () => _backend.AddRmsNormForward(x, delta, bias, w, 1e-6f, y));
        }
        using (var x = Random(3f, 0f, n, s.Intermediate)) using (var bias = Random(s.Intermediate))
        {
            Memory("BiasGeluForward", $"({n}, {s.Intermediate}) exact, in place", 8.0 * ni, "4n (x) + 4n (y = x)", 0,
                () => _backend.BiasGeluForward(x, bias, x, false));
        }

        // the Llama family's RMSNorm (rows, and per head on k inside the fused (B, T, H, 3D) buffer: Qwen3's QK-norm) and
        // gated activation at the same row and MLP widths (0 calls: a GPT-NeoX step runs neither)
        using (var x = Random(2f, 1f, n, c)) using (var w = Random(0.1f, 1f, c))
        using (var y = _backend.Empty(DType.F32, n, c)) using (var rstd = _backend.Empty(DType.F32, n))
        {
            Memory("RmsNormForward", nc, 4.0 * (2L * n * c + c + n), "4·(NC x + NC y + C weight + N rstd)", 0,
                () => _backend.RmsNormForward(x, w, 1e-6f, y, rstd));
            using var dy = Random(n, c); using var dx = Random(n, c); using var dw = Random(c);
            Memory("RmsNormBackward", nc, 4.0 * (4L * n * c + n + 3L * c),
                "4·(NC dy + NC x + 2NC dx (+=) + N rstd + C weight + 2C dWeight (+=))", 0,
                () => _backend.RmsNormBackward(dy, x, w, rstd, dx, dw));
        }
        using (var qkv = Random(s.Batch, s.SeqLen, s.Heads, 3 * s.HeadSize)) using (var w = Random(0.1f, 1f, s.HeadSize))
        {
            int rows = n * s.Heads, d = s.HeadSize;
            var k = qkv.Narrow(3, d, d);
            using var y = _backend.Empty(DType.F32, s.Batch, s.SeqLen, s.Heads, d); using var rstd = _backend.Empty(DType.F32, rows);
            string perHead = $"({rows}, {d}) per head, k in fused qkv";
            Memory("RmsNormForward", perHead, 4.0 * (2L * rows * d + d + rows), "4·(R·D k + R·D y + D weight + R rstd), R = B·T·H", 0,
                () => _backend.RmsNormForward(k, w, 1e-6f, y, rstd));
            using var dw = Random(d);
            Memory("RmsNormBackward", perHead, 4.0 * (4L * rows * d + rows + 3L * d),
                "4·(R·D dy + R·D k + 2R·D dk (+=) + R rstd + D weight + 2D dWeight (+=))", 0,
                () => _backend.RmsNormBackward(y, k, w, rstd, qkv.Narrow(3, 0, d), dw));
        }
        using (var gate = Random(3f, 0f, n, s.Intermediate)) using (var up = Random(n, s.Intermediate))
        using (var act = _backend.Empty(DType.F32, n, s.Intermediate))
        {
            Memory("SwiGluForward", $"({n}, {s.Intermediate})", 12.0 * ni, "4n (gate) + 4n (up) + 4n (y)", 0,
                () => _backend.SwiGluForward(gate, up, act));
            using var dAct = Random(n, s.Intermediate); using var dGate = Random(n, s.Intermediate);
            using var dUp = Random(n, s.Intermediate);
            Memory("SwiGluBackward", $"({n}, {s.Intermediate})", 28.0 * ni,
                "4n (dy) + 4n (gate) + 4n (up) + 16n (dGate, dUp read and written)", 0,
                () => _backend.SwiGluBackward(dAct, gate, up, dGate, dUp));
        }

        // residual-stream elementwise ops
        long ncl = (long)n * c;
        using (var a = Random(n, c)) using (var b = Random(n, c)) using (var y = _backend.Empty(DType.F32, n, c))
        {
            Memory("Add", nc, 12.0 * ncl, "4n (a) + 4n (b) + 4n (y)", 2 * L, () => _backend.Add(a, b, y));
            Memory("Axpy", nc, 12.0 * ncl, "4n (x) + 8n (y read and written)", 4 * L, () => _backend.Axpy(0.5f, a, y));
            Memory("Scale", nc, 8.0 * ncl, "4n read + 4n written", 0, () => _backend.Scale(y, 1f));
            Memory("Copy", $"{nc} f32, contiguous", 8.0 * ncl, "4n read + 4n written", 0, () => _backend.Copy(a, y));
        }

        // the vocabulary-sized losses
        long nv = (long)n * s.Vocab;
        using (var logits = Random(4f, 0f, n, s.Vocab)) using (var targets = RandomIds(n, s.Vocab))
        using (var losses = _backend.Empty(DType.F32, n)) using (var dLogits = Random(n, s.Vocab))
        {
            Memory("CrossEntropy", $"N={n} V={s.Vocab} with gradient", 12.0 * nv + 8.0 * n,
                "4NV (logits) + 8NV (dLogits read and written) + 8N (targets, losses)", 1,
                () => _backend.CrossEntropy(logits, targets, -100, losses, dLogits, 1f / n));
            using var teacher = Random(4f, 0f, n, s.Vocab); using var kdLosses = _backend.Empty(DType.F32, n, 2);
            var settings = new DistillSettings(DistillKind.ForwardKl, 2f, 0.5f, 0.5f, -100, 1f / n);
            Memory("Distillation", $"N={n} V={s.Vocab} forward KL, full teacher, with gradient", 16.0 * nv + 12.0 * n,
                "4NV (student) + 4NV (teacher) + 8NV (dStudent read and written) + 12N (targets, CE and KD)", 0,
                () => _backend.Distillation(logits, DistillTeacher.Full(teacher), targets, settings, kdLosses, dLogits));
        }

        // optimizer and whole-parameter passes
        int p = checked((int)s.Parameters);
        using (var param = Random(0.02f, 0f, p)) using (var grad = Random(p)) using (var m = Random(0.01f, 0f, p))
            using (var v = Random(0.01f, 0.01f, p))
        {
            string pc = $"P={p}";
            var adam = new AdamWSettings(1e-4f);
            int step = 1;
            Memory("AdamW", pc, 28.0 * p, "4P (grad) + 8P each for param, m, v (read and written)", 1,
                () => _backend.AdamW(param, grad, m, v, p / 2, adam, step++, 1f));
            Memory("SumOfSquares", pc, 4.0 * p, "4P read", 1, () => _backend.SumOfSquares(grad));
            Memory("Sum", $"N={n} (the per-row losses)", 4.0 * n, "4N read", 1, () => _backend.Sum(grad.Narrow(0, 0, n)));
            Memory("Fill", pc, 4.0 * p, "4P written", 1, () => _backend.Fill(m, 0f));
            using var half = _backend.Empty(DType.BF16, p);
            Memory("Copy", $"{pc} f32 → bf16 (weight copies)", 6.0 * p, "4P read + 2P written", 0, () => _backend.Copy(param, half));
        }
        return results;
    }

    public void Dispose()
    {
        _randomBlock?.Dispose();
        _events?.Dispose();
    }
}
