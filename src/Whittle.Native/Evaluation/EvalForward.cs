using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Evaluation;

/// <summary>
/// The no-grad forward pass and loss of evaluation, for windows of a fixed (B, T), without the tape and without waste:
///  - every buffer (the residual stream, the norm output, q/k/v, the attention output, the MLP's hidden activation, one
///    (R, V) chunk of logits, the per-row losses) is allocated once, when the object is made, and reused for every batch;
///    every view of a weight or buffer is made then too (one set per batch size seen: the last batch may be shorter), so
///    a batch allocates no tensor, and no managed memory but the backend ops' own per-call bookkeeping (argument checks,
///    Parallel.For; see the allocation test);
///  - the LM head and the cross-entropy run in chunks of R rows (<see cref="DefaultChunkRows"/>): (R, V) logits at a time,
///    never (N, V); the per-row losses are the same kernels' as the unchunked path's;
///  - the fused no-grad ops (<see cref="IBackend.AddLayerNormForward"/>, <see cref="IBackend.AddRmsNormForward"/>,
///    <see cref="IBackend.BiasGeluForward"/>): a residual branch's output bias, the residual add and the next norm in one
///    pass over each row; the MLP's up-projection bias and GELU in one; SwiGLU written over its gate; with the parallel
///    residual (GPT-NeoX) the MLP's down projection accumulates onto the attention branch's output in its GEMM (beta = 1),
///    so no separate add pass is made anywhere.
/// Computes what <see cref="LanguageModel.Forward"/> and the cross-entropy compute, within f32 rounding: only the
/// association of the residual sums differs (see EvalForwardTests for the bound). Families: GPT-NeoX (parallel or
/// sequential residual) and Llama (with QK-norm, biases, grouped-query attention), full models and sub-networks
/// (<see cref="ActiveArchitecture"/>, through leading views of the weights as the tape's forward takes them). Both
/// precisions (Model/Precision.cs): in bf16 mode every GEMM takes the weight's bf16 copy and its input rounded to bf16
/// (RNE) into one bf16 buffer, as the tape's LinearBf16 does; everything else stays f32.
/// </summary>
public sealed class EvalForward : IDisposable
{
    /// <summary>
    /// Rows of logits per chunk by default: 256 rows keep each head GEMM's M large enough for full GEMM speed (measured in
    /// bench/RESULTS.md, "Evaluation without waste") while the chunk's (256, V) logits are 51 MB at V = 50k instead of
    /// N·V (2048 rows: 412 MB).
    /// </summary>
    public const int DefaultChunkRows = 256;

    readonly LanguageModel _model;
    readonly IBackend _b;
    readonly ActiveArchitecture _a;
    readonly int _batch, _seqLen, _chunkRows;
    readonly int _d, _headDim, _vocab, _maxH, _maxKv, _maxM;
    readonly List<Tensor> _owned = new();
    readonly Tensor _x, _y, _delta, _qkv, _qn, _kn, _att, _lse, _rstd, _mid, _up, _logits, _losses;   // flat buffers
    readonly Tensor? _gemmIn;                                                                          // bf16 mode only
    readonly Tensor _embedding, _head, _cos, _sin;
    readonly Tensor? _finalBias;
    readonly Tensor _finalWeight;
    readonly LayerWeights[] _layers;
    readonly Dictionary<int, Views> _views = new();

    /// <summary>Whether <paramref name="model"/> can be evaluated by this path (the GPT-NeoX and Llama families).</summary>
    public static bool Supports(LanguageModel model) => model is GptNeoX or Llama;

    public EvalForward(LanguageModel model, int batch, int seqLen, ActiveArchitecture? active = null, int chunkRows = DefaultChunkRows)
    {
        if (!Supports(model)) throw new ArgumentException($"EvalForward: GPT-NeoX or Llama models only, got {model.GetType().Name}");
        if (batch < 1 || seqLen < 1 || chunkRows < 1)
            throw new ArgumentOutOfRangeException(nameof(batch), $"EvalForward: batch {batch}, seqLen {seqLen}, chunkRows {chunkRows}");
        _model = model; _b = model.Backend;
        var c = model.Config;
        _a = (active ?? ActiveArchitecture.Full(c)).Validate(c);
        _batch = batch; _seqLen = seqLen;
        int n = checked(batch * seqLen);
        _chunkRows = Math.Min(chunkRows, n);
        _d = _a.EmbedDim; _headDim = c.HeadSize; _vocab = c.VocabSize;
        _maxH = _a.Heads.Max(); _maxKv = _a.KvHeads.Max(); _maxM = _a.Intermediate.Max();
        var p = model.Parameters;
        bool bf16 = model.Precision == Precision.Bf16;
        _embedding = LanguageModel.Slice(p[model.EmbeddingName], null, _d);   // (V, d)
        _head = LanguageModel.Slice(bf16 ? p.LowPrecisionOf(model.HeadName) : p[model.HeadName], null, _d);   // (V, d)
        (_cos, _sin) = model.RotaryTables(seqLen);                              // (T, R/2)
        _layers = new LayerWeights[_a.Layers.Length];
        for (int i = 0; i < _layers.Length; i++) _layers[i] = LayerWeights.Of(model, _a, i, Own);
        (_finalWeight, _finalBias) = model switch
        {
            GptNeoX => (Vec(p[GptNeoX.FinalNormWeight], _d), Vec(p[GptNeoX.FinalNormBias], _d)),
            _ => (Vec(p[Llama.FinalNorm], _d), (Tensor?)null),
        };
        bool neox = model is GptNeoX, qkNorm = model is Llama { Config.QkNorm: true };
        long hd = (long)_maxH * _headDim, kvd = (long)_maxKv * _headDim;
        _x = Flat((long)n * _d);                                        // (N, d) the residual stream
        _y = Flat((long)n * _d);                                        // (N, d) a norm's output
        _delta = Flat((long)n * _d);                                    // (N, d) a residual branch's output
        _qkv = Flat(n * (neox ? 3 * hd : hd + 2 * kvd));                // (N, 3·h·D) fused, or q, k, v (N, h·D + 2·kv·D)
        _qn = Flat(qkNorm ? n * hd : 1);                                // (N, h·D) q after QK-norm
        _kn = Flat(qkNorm ? n * kvd : 1);                               // (N, kv·D) k after QK-norm
        _rstd = Flat(qkNorm ? n * (long)_maxH : 1);                     // (N·h) QK-norm statistics (not read)
        _att = Flat(n * hd);                                            // (N, h·D) attention output
        _lse = Flat((long)n * _maxH);                                   // (B, h, T) attention statistics (not read)
        _mid = Flat((long)n * _maxM);                                   // (N, m) MLP hidden / SwiGLU gate
        _up = Flat(neox ? 1 : (long)n * _maxM);                         // (N, m) SwiGLU up
        _logits = Flat((long)_chunkRows * _vocab);                      // (R, V) one chunk of logits
        _losses = Flat(n);                                              // (N) per-row losses
        long widestInput = Math.Max(_d, Math.Max(hd, _maxM));
        _gemmIn = bf16 ? Own(_b.Empty(DType.BF16, checked((int)(n * widestInput)))) : null;   // (N, d | h·D | m) bf16
    }

    /// <summary>Rows of logits per chunk (at most B·T).</summary>
    public int ChunkRows => _chunkRows;

    /// <summary>
    /// The sum of the per-row cross-entropy losses of a batch: ids (b, T) i32, targets (b·T) i32 on the model's backend,
    /// b ≤ B; rows whose target is <paramref name="ignoreIndex"/> add 0. Summed in double.
    /// </summary>
    public double LossSum(Tensor ids, Tensor targets, int ignoreIndex)
    {
        if (ids.Rank != 2 || ids.DType != DType.I32 || ids.Size(1) != _seqLen || ids.Size(0) < 1 || ids.Size(0) > _batch)
            throw new ArgumentException($"EvalForward: ids must be i32 (b ≤ {_batch}, {_seqLen}), got {ids.Describe()}");
        int bsz = ids.Size(0), n = bsz * _seqLen;
        ArgCheck.Shape(targets, nameof(targets), n);
        if (!_views.TryGetValue(bsz, out var v)) _views[bsz] = v = new Views(this, bsz);
        _b.EmbeddingForward(ids.Reshape(n), _embedding, v.X);
        Tensor? delta = null, deltaBias = null;
        for (int i = 0; i < _layers.Length; i++)
            (delta, deltaBias) = _model is GptNeoX neox ? NeoXLayer(neox.Config, _layers[i], v.Layers[i], v, delta, deltaBias)
                : LlamaLayer(((Llama)_model).Config, _layers[i], v.Layers[i], v, delta, deltaBias);
        if (_finalBias is not null)
            _b.AddLayerNormForward(v.X, delta, deltaBias, _finalWeight, _finalBias, ((GptNeoX)_model).Config.LayerNormEps, v.Y);
        else _b.AddRmsNormForward(v.X, delta, deltaBias, _finalWeight, ((Llama)_model).Config.RmsNormEps, v.Y);
        for (int k = 0; k < v.Chunks.Length; k++)
        {
            var ch = v.Chunks[k];
            _b.MatMul(GemmInput(ch.Hidden, ch.HiddenBf16), false, _head, true, ch.Logits);
            _b.CrossEntropy(ch.Logits, targets.Narrow(0, ch.Row0, ch.Rows), ignoreIndex, ch.Losses, null, 0f);
        }
        return _b.Sum(v.Losses);
    }

    (Tensor Delta, Tensor? DeltaBias) NeoXLayer(GptNeoXConfig c, LayerWeights w, LayerViews lv, Views v, Tensor? delta, Tensor? dBias)
    {
        float eps = c.LayerNormEps;
        _b.AddLayerNormForward(v.X, delta, dBias, w.Norm1, w.Norm1Bias!, eps, v.Y);   // x += previous branch; y = ln1(x)
        _b.MatMul(GemmInput(v.Y, v.YBf16), false, w.Qkv, true, lv.Qkv, bias: w.QkvBias);
        if (c.RotaryDims > 0) { _b.RotaryForward(lv.Q, lv.Cos, lv.Sin); _b.RotaryForward(lv.K, lv.Cos, lv.Sin); }
        _b.AttentionForward(lv.Q, lv.K, lv.V, 1f / MathF.Sqrt(_headDim), lv.Att, lv.Lse, _model.Attention);
        _b.MatMul(GemmInput(lv.AttFlat, lv.AttBf16), false, w.Out, true, v.Delta);
        if (c.UseParallelResidual)
            _b.AddLayerNormForward(v.X, null, null, w.Norm2, w.Norm2Bias!, eps, v.Y);   // the MLP reads ln2(x) of the same x
        else
            _b.AddLayerNormForward(v.X, v.Delta, w.OutBias, w.Norm2, w.Norm2Bias!, eps, v.Y);
        _b.MatMul(GemmInput(v.Y, v.YBf16), false, w.Up, true, lv.Mid);
        _b.BiasGeluForward(lv.Mid, w.UpBias, lv.Mid, c.GeluTanh);
        // parallel: delta = attention branch + MLP branch, summed by the GEMM; the two biases added with the next norm
        _b.MatMul(GemmInput(lv.Mid, lv.MidBf16), false, w.Down, true, v.Delta, beta: c.UseParallelResidual ? 1f : 0f);
        return (v.Delta, c.UseParallelResidual ? w.BranchBias : w.DownBias);
    }

    (Tensor Delta, Tensor? DeltaBias) LlamaLayer(LlamaConfig c, LayerWeights w, LayerViews lv, Views v, Tensor? delta, Tensor? dBias)
    {
        float eps = c.RmsNormEps;
        _b.AddRmsNormForward(v.X, delta, dBias, w.Norm1, eps, v.Y);
        var y = GemmInput(v.Y, v.YBf16);
        _b.MatMul(y, false, w.Qkv, true, lv.QFlat, bias: w.QkvBias);
        _b.MatMul(y, false, w.K!, true, lv.KFlat, bias: w.KBias);
        _b.MatMul(y, false, w.V!, true, lv.VFlat, bias: w.VBias);
        var (q, k) = (lv.Q, lv.K);
        if (c.QkNorm)
        {
            _b.RmsNormForward(q, w.QNorm!, eps, lv.QNormed!, lv.QRstd!);
            _b.RmsNormForward(k, w.KNorm!, eps, lv.KNormed!, lv.KRstd!);
            (q, k) = (lv.QNormed!, lv.KNormed!);
        }
        _b.RotaryForward(q, lv.Cos, lv.Sin); _b.RotaryForward(k, lv.Cos, lv.Sin);
        _b.AttentionForward(q, k, lv.V, 1f / MathF.Sqrt(_headDim), lv.Att, lv.Lse, _model.Attention);
        _b.MatMul(GemmInput(lv.AttFlat, lv.AttBf16), false, w.Out, true, v.Delta);
        _b.AddRmsNormForward(v.X, v.Delta, w.OutBias, w.Norm2, eps, v.Y);
        y = GemmInput(v.Y, v.YBf16);
        _b.MatMul(y, false, w.Gate!, true, lv.Mid, bias: w.GateBias);
        _b.MatMul(y, false, w.Up, true, lv.Up!, bias: w.UpBias);
        _b.SwiGluForward(lv.Mid, lv.Up!, lv.Mid);
        _b.MatMul(GemmInput(lv.Mid, lv.MidBf16), false, w.Down, true, v.Delta);
        return (v.Delta, w.DownBias);
    }

    /// <summary>A GEMM's input: x itself in f32 mode; in bf16 mode x rounded to bf16 (RNE) into its view of the bf16 buffer
    /// (<paramref name="xBf16"/>, same shape), the cast the tape's LinearBf16 makes.</summary>
    Tensor GemmInput(Tensor x, Tensor? xBf16)
    {
        if (xBf16 is null) return x;
        _b.Copy(x, xBf16);
        return xBf16;
    }

    Tensor Flat(long count) => Own(_b.Empty(DType.F32, checked((int)count)));

    Tensor Own(Tensor t) { _owned.Add(t); return t; }

    static Tensor Vec(Tensor t, int length) => LanguageModel.Slice(t, length, null);

    /// <summary>The leading <paramref name="shape"/> of a flat buffer, contiguous.</summary>
    static Tensor View(Tensor flat, params int[] shape) => flat.Narrow(0, 0, checked((int)Tensor.Numel(shape))).Reshape(shape);

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }

    /// <summary>
    /// One active layer's weights as leading views of the parent's (the tape's forward takes the same): GPT-NeoX's fused qkv
    /// (3·h·D, d) in <see cref="Qkv"/>; Llama's q in <see cref="Qkv"/> and k, v, gate apart. BranchBias (GPT-NeoX parallel
    /// residual): the attention output's bias + the MLP output's, added once to the branches' sum.
    /// </summary>
    sealed record LayerWeights(
        int Heads, int KvHeads, int Intermediate,
        Tensor Norm1, Tensor? Norm1Bias, Tensor Norm2, Tensor? Norm2Bias,
        Tensor Qkv, Tensor? QkvBias, Tensor? K, Tensor? KBias, Tensor? V, Tensor? VBias, Tensor? QNorm, Tensor? KNorm,
        Tensor Out, Tensor? OutBias, Tensor? Gate, Tensor? GateBias, Tensor Up, Tensor? UpBias, Tensor Down, Tensor? DownBias,
        Tensor? BranchBias)
    {
        public static LayerWeights Of(LanguageModel model, ActiveArchitecture a, int i, Func<Tensor, Tensor> own)
        {
            var p = model.Parameters;
            int d = a.EmbedDim, h = a.Heads[i], kv = a.KvHeads[i], m = a.Intermediate[i], hd = h * model.Config.HeadSize;
            // GEMM weights only: in bf16 mode their bf16 copies (ParameterSet.LowPrecisionOf), as the tape's Linear takes them
            Tensor W(string name, int rows, int cols) =>
                LanguageModel.Slice(model.Precision == Precision.Bf16 ? p.LowPrecisionOf(name) : p[name], rows, cols);
            Tensor B(string name, int rows) => LanguageModel.Slice(p[name], rows, null);
            if (model is GptNeoX neox)
            {
                string pre = GptNeoX.LayerPrefix(a.Layers[i]);
                Tensor? branch = null;
                if (neox.Config.UseParallelResidual)
                {
                    branch = own(model.Backend.Empty(DType.F32, d));   // (d) dense.bias + dense_4h_to_h.bias, made once
                    model.Backend.Add(B(pre + "attention.dense.bias", d), B(pre + "mlp.dense_4h_to_h.bias", d), branch);
                }
                return new LayerWeights(h, h, m,
                    B(pre + "input_layernorm.weight", d), B(pre + "input_layernorm.bias", d),
                    B(pre + "post_attention_layernorm.weight", d), B(pre + "post_attention_layernorm.bias", d),
                    W(pre + "attention.query_key_value.weight", 3 * hd, d), B(pre + "attention.query_key_value.bias", 3 * hd),
                    null, null, null, null, null, null,
                    W(pre + "attention.dense.weight", d, hd), B(pre + "attention.dense.bias", d),
                    null, null, W(pre + "mlp.dense_h_to_4h.weight", m, d), B(pre + "mlp.dense_h_to_4h.bias", m),
                    W(pre + "mlp.dense_4h_to_h.weight", d, m), B(pre + "mlp.dense_4h_to_h.bias", d), branch);
            }
            var c = ((Llama)model).Config;
            string l = Llama.LayerPrefix(a.Layers[i]), at = l + "self_attn.", mlp = l + "mlp.";
            int kvd = kv * c.HeadSize;
            Tensor? Opt(bool has, string name, int rows) => has ? B(name, rows) : null;
            return new LayerWeights(h, kv, m,
                B(l + "input_layernorm.weight", d), null, B(l + "post_attention_layernorm.weight", d), null,
                W(at + "q_proj.weight", hd, d), Opt(c.QkvBias, at + "q_proj.bias", hd),
                W(at + "k_proj.weight", kvd, d), Opt(c.QkvBias, at + "k_proj.bias", kvd),
                W(at + "v_proj.weight", kvd, d), Opt(c.QkvBias, at + "v_proj.bias", kvd),
                c.QkNorm ? p[at + "q_norm.weight"] : null, c.QkNorm ? p[at + "k_norm.weight"] : null,
                W(at + "o_proj.weight", d, hd), Opt(c.OutputBias, at + "o_proj.bias", d),
                W(mlp + "gate_proj.weight", m, d), Opt(c.GatedMlpBias, mlp + "gate_proj.bias", m),
                W(mlp + "up_proj.weight", m, d), Opt(c.GatedMlpBias, mlp + "up_proj.bias", m),
                W(mlp + "down_proj.weight", d, m), Opt(c.GatedMlpBias, mlp + "down_proj.bias", d), null);
        }
    }

    /// <summary>One layer's activation views for a batch of b windows (N = b·T rows), over the shared flat buffers.</summary>
    sealed class LayerViews
    {
        public Tensor Q = null!, K = null!, V = null!;                  // (b, T, h|kv, D), strided in GPT-NeoX's fused qkv
        public Tensor Qkv = null!, QFlat = null!, KFlat = null!, VFlat = null!;
        public Tensor? QNormed, KNormed, QRstd, KRstd;                  // (b, T, h|kv, D) contiguous, (N·h|kv)
        public Tensor Att = null!, AttFlat = null!, Lse = null!;        // (b, T, h, D), (N, h·D), (b, h, T)
        public Tensor Mid = null!;                                      // (N, m)
        public Tensor? AttBf16, MidBf16;                                // (N, h·D), (N, m) GEMM inputs in bf16 mode
        public Tensor? Up;                                              // (N, m)
        public Tensor Cos = null!, Sin = null!;                         // (T, R/2)
    }

    /// <summary>Every view one batch size needs, made once.</summary>
    sealed class Views
    {
        public readonly Tensor X, Y, Delta, Losses;                     // (N, d) ×3, (N)
        public readonly Tensor? YBf16;                                  // (N, d) the norms' output rounded, in bf16 mode
        public readonly LayerViews[] Layers;
        public readonly Chunk[] Chunks;

        public Views(EvalForward e, int bsz)
        {
            int t = e._seqLen, n = bsz * t, d = e._d, hdim = e._headDim;
            X = View(e._x, n, d); Y = View(e._y, n, d); Delta = View(e._delta, n, d); Losses = View(e._losses, n);
            var bf16 = e._gemmIn;   // one bf16 buffer: each GEMM's rounded input is consumed before the next is written
            if (bf16 is not null) YBf16 = View(bf16, n, d);
            Layers = new LayerViews[e._layers.Length];
            for (int i = 0; i < Layers.Length; i++)
            {
                var w = e._layers[i];
                int h = w.Heads, kv = w.KvHeads;
                var lv = new LayerViews { Cos = e._cos, Sin = e._sin };
                if (e._model is GptNeoX)
                {
                    lv.Qkv = View(e._qkv, n, 3 * h * hdim);
                    int[] shape = [bsz, t, h, hdim];
                    long[] strides = [(long)t * 3 * h * hdim, 3L * h * hdim, 3L * hdim, 1];
                    lv.Q = lv.Qkv.AsStrided(shape, strides, 0);
                    lv.K = lv.Qkv.AsStrided(shape, strides, hdim);
                    lv.V = lv.Qkv.AsStrided(shape, strides, 2 * hdim);
                }
                else
                {
                    int qn = n * h * hdim, kn = n * kv * hdim;
                    lv.QFlat = e._qkv.Narrow(0, 0, qn).Reshape(n, h * hdim);
                    lv.KFlat = e._qkv.Narrow(0, qn, kn).Reshape(n, kv * hdim);
                    lv.VFlat = e._qkv.Narrow(0, qn + kn, kn).Reshape(n, kv * hdim);
                    lv.Q = lv.QFlat.Reshape(bsz, t, h, hdim); lv.K = lv.KFlat.Reshape(bsz, t, kv, hdim);
                    lv.V = lv.VFlat.Reshape(bsz, t, kv, hdim);
                    lv.Qkv = lv.QFlat;
                    if (e._model is Llama { Config.QkNorm: true })
                    {
                        lv.QNormed = View(e._qn, bsz, t, h, hdim); lv.KNormed = View(e._kn, bsz, t, kv, hdim);
                        lv.QRstd = View(e._rstd, n * h); lv.KRstd = View(e._rstd, n * kv);
                    }
                    lv.Up = View(e._up, n, w.Intermediate);
                }
                lv.Att = View(e._att, bsz, t, h, hdim); lv.AttFlat = lv.Att.Reshape(n, h * hdim);
                lv.Lse = View(e._lse, bsz, h, t);
                lv.Mid = View(e._mid, n, w.Intermediate);
                if (bf16 is not null) { lv.AttBf16 = View(bf16, n, h * hdim); lv.MidBf16 = View(bf16, n, w.Intermediate); }
                Layers[i] = lv;
            }
            int r = Math.Min(e._chunkRows, n);
            Chunks = new Chunk[(n + r - 1) / r];
            for (int k = 0; k < Chunks.Length; k++)
            {
                int r0 = k * r, rows = Math.Min(r, n - r0);
                Chunks[k] = new Chunk(r0, rows, Y.Narrow(0, r0, rows), YBf16?.Narrow(0, r0, rows), View(e._logits, rows, e._vocab),
                    Losses.Narrow(0, r0, rows));
            }
        }
    }

    /// <summary>Rows [Row0, Row0 + Rows) of the LM head: hidden (R, d) (and its bf16 view in bf16 mode), logits (R, V),
    /// losses (R).</summary>
    readonly record struct Chunk(int Row0, int Rows, Tensor Hidden, Tensor? HiddenBf16, Tensor Logits, Tensor Losses);
}
