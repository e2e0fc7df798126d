using Whittle.Native.Autograd;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>Points in the forward pass an observer may read (e.g. importance scoring): the residual stream (N, d) entering and
/// leaving a layer, the attention context per head (B, T, h, D) before attention.dense, and the MLP activation after GELU (N, m).</summary>
public enum ForwardTap { LayerInput, AttentionHeads, MlpActivation, LayerOutput }

/// <summary>Called with the tap, the position in the active layer list, and the activation (valid only during the call).</summary>
public delegate void ForwardObserver(ForwardTap tap, int layerPosition, Tensor activation);

/// <summary>
/// GPT-NeoX / Pythia, computed exactly as Hugging Face transformers computes GPTNeoXForCausalLM (fp32):
/// embed_in → per layer [input_layernorm → fused query_key_value (rows per head [H, 3, D]) → partial rotary
/// (rotate-half on the first rotary_pct·D dims of q and k) → causal attention, scale 1/sqrt(D) → dense] and
/// [post_attention_layernorm → dense_h_to_4h → GELU → dense_4h_to_h], combined in parallel (x + attn(ln1 x) + mlp(ln2 x))
/// or sequentially (x + attn(ln1 x), then + mlp(ln2 ·)) → final_layer_norm → embed_out (untied, no bias).
/// The forward pass runs over an <see cref="ActiveArchitecture"/>; the full model is its trivial case.
/// </summary>
public sealed class GptNeoX : IDisposable
{
    Tensor? _cos, _sin;   // (Tmax, R/2) rotary tables on the backend

    public GptNeoX(GptNeoXConfig config, IBackend backend)
    {
        Config = config.Validate();
        Backend = backend;
        Parameters = new ParameterSet(backend, Layout(config));
    }

    public GptNeoXConfig Config { get; }
    public IBackend Backend { get; }
    public ParameterSet Parameters { get; }
    /// <summary>Parameters that held NaN or Inf when loaded from disk (empty for a new model); each was also a warning.</summary>
    public IReadOnlyList<string> NonFiniteTensors { get; internal set; } = [];

    Precision _precision = Precision.F32;

    /// <summary>
    /// The arithmetic of <see cref="Forward"/> and its backward pass (<see cref="Model.Precision"/>; f32 by default).
    /// Bf16 keeps a bf16 copy of the GEMM weight matrices in <see cref="Parameters"/> (refreshed by every optimizer step
    /// and load); setting F32 frees it. Setting it also sets <see cref="Attention"/> to the same precision.
    /// </summary>
    public Precision Precision
    {
        get => _precision;
        set
        {
            if (value == Precision.Bf16) Parameters.EnableLowPrecision(p => p.Decay && p.Name != EmbedIn);
            else Parameters.DisableLowPrecision();
            _precision = value;
            Attention = value == Precision.Bf16 ? AttentionPrecision.Bf16 : AttentionPrecision.F32;
        }
    }

    /// <summary>The attention calls' precision: that of <see cref="Precision"/> unless set to F32 after it (the opt-out).</summary>
    public AttentionPrecision Attention { get; set; }

    // ---------------------------------------------------------------- names and shapes (Hugging Face's)

    public const string EmbedIn = "gpt_neox.embed_in.weight";
    public const string EmbedOut = "embed_out.weight";
    public const string FinalNormWeight = "gpt_neox.final_layer_norm.weight";
    public const string FinalNormBias = "gpt_neox.final_layer_norm.bias";
    public static string LayerPrefix(int layer) => $"gpt_neox.layers.{layer}.";

    public static IEnumerable<(string Name, int[] Shape)> Layout(GptNeoXConfig c)
    {
        int C = c.HiddenSize, D = c.HeadSize;
        yield return (EmbedIn, [c.VocabSize, C]);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = LayerPrefix(l);
            int h = c.HeadsOf(l), m = c.IntermediateOf(l);
            yield return (p + "input_layernorm.weight", [C]);
            yield return (p + "input_layernorm.bias", [C]);
            yield return (p + "post_attention_layernorm.weight", [C]);
            yield return (p + "post_attention_layernorm.bias", [C]);
            yield return (p + "attention.query_key_value.weight", [3 * h * D, C]);
            yield return (p + "attention.query_key_value.bias", [3 * h * D]);
            yield return (p + "attention.dense.weight", [C, h * D]);
            yield return (p + "attention.dense.bias", [C]);
            yield return (p + "mlp.dense_h_to_4h.weight", [m, C]);
            yield return (p + "mlp.dense_h_to_4h.bias", [m]);
            yield return (p + "mlp.dense_4h_to_h.weight", [C, m]);
            yield return (p + "mlp.dense_4h_to_h.bias", [C]);
        }
        yield return (FinalNormWeight, [C]);
        yield return (FinalNormBias, [C]);
        yield return (EmbedOut, [c.VocabSize, C]);
    }

    // ---------------------------------------------------------------- initialisation

    /// <summary>
    /// A new model, initialised the GPT-2/Pythia way: every weight matrix and both embeddings ~ N(0, 0.02); the two
    /// projections that write into the residual stream (attention.dense, mlp.dense_4h_to_h) ~ N(0, 0.02/sqrt(2·layers))
    /// so the residual's variance does not grow with depth; biases 0; layernorm weight 1, bias 0.
    /// </summary>
    public static GptNeoX CreateRandom(GptNeoXConfig config, IBackend backend, ulong seed)
    {
        var model = new GptNeoX(config, backend);
        using var host = model.Parameters.Count <= SequentialInitLimit ? SequentialInit(model.Parameters, config, seed)
            : RandomInit(model.Parameters, config, seed);
        model.LoadFlat(host);
        return model;
    }

    /// <summary>
    /// Models up to this many parameters keep the original sequential draw (one generator, entries in order): it takes
    /// well under a second there, and it keeps the weights every existing run, report figure and test was made with
    /// (the demo presets included). Larger models (the Pythia shapes the GPU kit benchmarks: 410M took 25 s on one
    /// thread) use the parallel <see cref="RandomInit"/>. Both are functions of the seed alone, for any thread count.
    /// </summary>
    public const long SequentialInitLimit = 16L << 20;

    /// <summary>The sequential draw: one generator over the matrices in entry order.</summary>
    public static Tensor SequentialInit(ParameterSet parameters, GptNeoXConfig config, ulong seed)
    {
        var rng = new Rng(seed);
        var host = Tensor.Zeros(DType.F32, checked((int)parameters.Count));
        var all = host.AsSpan<float>();
        double residualStd = 0.02 / Math.Sqrt(2.0 * config.NumLayers);
        foreach (var p in parameters.Entries)
        {
            var span = all.Slice((int)p.Offset, (int)p.Count);
            if (p.Name.EndsWith("layernorm.weight") || p.Name == FinalNormWeight) span.Fill(1f);
            else if (p.Shape.Length == 1) span.Clear();
            else rng.FillNormal(
                span, 0, p.Name.EndsWith("attention.dense.weight") || p.Name.EndsWith("dense_4h_to_h.weight") ? residualStd : 0.02);
        }
        return host;
    }

    /// <summary>Elements per independently seeded block of a matrix: the unit of parallel work in <see cref="RandomInit"/>.</summary>
    public const int InitBlockElements = 1 << 20;

    /// <summary>
    /// The host (P) vector of a random initialisation. In parallel, and the same for any thread count: every matrix is
    /// cut into fixed <see cref="InitBlockElements"/>-element blocks, each drawn from its own generator seeded by (seed,
    /// parameter index, block index) — never from a generator shared in the order the threads happen to run. (A 410M
    /// model drew ~300M normals from one generator on one thread: 25 s.)
    /// </summary>
    public static Tensor RandomInit(ParameterSet parameters, GptNeoXConfig config, ulong seed, int maxThreads = -1)
    {
        var host = Tensor.Zeros(DType.F32, checked((int)parameters.Count));
        double residualStd = 0.02 / Math.Sqrt(2.0 * config.NumLayers);
        var entries = parameters.Entries;
        var blocks = new List<(int Index, long Block)>();
        for (int i = 0; i < entries.Count; i++)
        {
            var p = entries[i];
            if (p.Name.EndsWith("layernorm.weight") || p.Name == FinalNormWeight)
                host.AsSpan<float>().Slice((int)p.Offset, (int)p.Count).Fill(1f);
            else if (p.Shape.Length > 1)
                for (long b = 0; b * InitBlockElements < p.Count; b++) blocks.Add((i, b));
            // vectors (biases) stay 0
        }
        Parallel.ForEach(blocks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, item =>
        {
            var p = entries[item.Index];
            long start = item.Block * InitBlockElements;
            int length = (int)Math.Min(InitBlockElements, p.Count - start);
            var rng = new Rng(BlockSeed(seed, item.Index, item.Block));
            double std = p.Name.EndsWith("attention.dense.weight") || p.Name.EndsWith("dense_4h_to_h.weight") ? residualStd : 0.02;
            rng.FillNormal(host.AsSpan<float>().Slice((int)(p.Offset + start), length), 0, std);
        });
        return host;
    }

    /// <summary>A generator seed per (seed, parameter, block); <see cref="Rng"/> scrambles it further through splitmix64.</summary>
    static ulong BlockSeed(ulong seed, int index, long block) =>
        (seed * 0x9E3779B97F4A7C15UL + (ulong)index + 1) * 0xBF58476D1CE4E5B9UL + (ulong)block;

    /// <summary>Replaces every parameter with the values of a host (P) vector laid out as <see cref="ParameterSet.Entries"/>.</summary>
    public void LoadFlat(Tensor hostFlat)
    {
        using var dev = Backend.FromHost(hostFlat);
        Backend.Copy(dev, Parameters.Flat);
        Parameters.RefreshLowPrecision();
    }

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// Logits (B·T, V) for ids (B, T) (i32, on this model's backend). With a recording tape and allocated gradients
    /// (<see cref="ParameterSet.EnsureGrad"/>), parameter gradients accumulate into <see cref="ParameterSet.FlatGrad"/>.
    /// </summary>
    public Var Forward(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null)
    {
        var final = ForwardHidden(tape, ids, active, observe);
        return Linear(tape, final, EmbedOut, bias: null, rows: null, cols: final.Data.Size(1));
    }

    /// <summary>
    /// Rows of the LM head computed chunk by chunk by <see cref="Loss"/> and the distillation losses (0, the default: all
    /// at once). With R rows the (N, V) logits and their gradient are never held whole, only (R, V) of each
    /// (<see cref="Ops.ChunkedCrossEntropy"/>); values and gradients are the same.
    /// </summary>
    public int LossChunkRows { get; set; }

    /// <summary>Whether a batch of <paramref name="rows"/> rows takes the chunked head (<see cref="LossChunkRows"/>).</summary>
    public bool ChunksLoss(int rows) => LossChunkRows > 0 && LossChunkRows < rows;

    /// <summary>The final layernorm's output (B·T, d) for ids (B, T): <see cref="Forward"/> without the LM head.</summary>
    public Var ForwardHidden(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null)
    {
        var c = Config;
        var a = (active ?? ActiveArchitecture.Full(c)).Validate(c);
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new ArgumentException($"ids must be an i32 (B, T) tensor, got {ids.Describe()}");
        int B = ids.Size(0), T = ids.Size(1), N = B * T, d = a.EmbedDim, D = c.HeadSize;
        EnsureRotaryTables(T);
        var cos = _cos!.Narrow(0, 0, T); var sin = _sin!.Narrow(0, 0, T);
        float scale = 1f / MathF.Sqrt(D);
        bool tanh = c.GeluTanh;

        var x = tape.Embedding(ids.Reshape(N), Param(tape, EmbedIn, rows: null, cols: d));
        foreach (var (l, i) in a.Layers.Select((l, i) => (l, i)))
        {
            string p = LayerPrefix(l);
            int h = a.Heads[i], m = a.Intermediate[i];
            observe?.Invoke(ForwardTap.LayerInput, i, x.Data);
            var ln1 = tape.LayerNorm(
                x, Param(tape, p + "input_layernorm.weight", d), Param(tape, p + "input_layernorm.bias", d), c.LayerNormEps);
            // (N, 3·h·D): the first h heads' [q, k, v] rows of the fused weight are its first 3·h·D rows.
            var qkv = Linear(tape, ln1, p + "attention.query_key_value.weight", p + "attention.query_key_value.bias", 3 * h * D, d);
            long[] headStrides = [(long)T * 3 * h * D, 3L * h * D, 3L * D, 1];
            int[] headShape = [B, T, h, D];
            var q = tape.View(qkv, t => t.AsStrided(headShape, headStrides, 0));
            var k = tape.View(qkv, t => t.AsStrided(headShape, headStrides, D));
            var v = tape.View(qkv, t => t.AsStrided(headShape, headStrides, 2 * D));
            if (c.RotaryDims > 0) { tape.Rotary(q, cos, sin); tape.Rotary(k, cos, sin); }
            var att = tape.Attention(q, k, v, scale, Attention);  // (B, T, h, D)
            observe?.Invoke(ForwardTap.AttentionHeads, i, att.Data);
            tape.Release(qkv);
            var attFlat = tape.View(att, t => t.Reshape(N, h * D));
            // attention's backward reads att
            var attOut = Linear(tape, attFlat, p + "attention.dense.weight", p + "attention.dense.bias", d, h * D, consumesInput: false);
            tape.Release(att);

            Var mlpIn, residual;
            if (c.UseParallelResidual) { mlpIn = x; residual = x; }
            else { residual = tape.Add(x, attOut); tape.Release(x, attOut); mlpIn = residual; }
            var ln2 = tape.LayerNorm(
                mlpIn, Param(tape, p + "post_attention_layernorm.weight", d), Param(tape, p + "post_attention_layernorm.bias", d),
                c.LayerNormEps);
            var hidden = Linear(tape, ln2, p + "mlp.dense_h_to_4h.weight", p + "mlp.dense_h_to_4h.bias", m, d);
            var act = tape.Gelu(hidden, tanh);
            tape.Release(hidden);
            observe?.Invoke(ForwardTap.MlpActivation, i, act.Data);
            // GELU's backward reads its input, not act
            var mlpOut = Linear(tape, act, p + "mlp.dense_4h_to_h.weight", p + "mlp.dense_4h_to_h.bias", d, m);
            Var next;
            if (c.UseParallelResidual)
            {
                var sum = tape.Add(attOut, mlpOut);
                tape.Release(attOut, mlpOut);
                next = tape.Add(x, sum);
                tape.Release(sum);
            }
            else { next = tape.Add(residual, mlpOut); tape.Release(mlpOut); }
            tape.Release(x, residual);
            observe?.Invoke(ForwardTap.LayerOutput, i, next.Data);
            x = next;
        }
        var final = tape.LayerNorm(x, Param(tape, FinalNormWeight, d), Param(tape, FinalNormBias, d), c.LayerNormEps);
        tape.Release(x);
        return final;
    }

    /// <summary>
    /// Mean next-token cross-entropy of a (B, T+1) window batch: inputs tokens[:, :-1], targets tokens[:, 1:]. The LM head
    /// runs chunked when <see cref="LossChunkRows"/> asks for it.
    /// </summary>
    public Var Loss(Tape tape, Tensor inputs, Tensor targets, ActiveArchitecture? active = null, int ignoreIndex = -100)
    {
        if (ChunksLoss((int)targets.Count))
        {
            var final = ForwardHidden(tape, inputs, active);
            var (w, wb) = Head(tape, final.Data.Size(1));
            var chunked = tape.ChunkedCrossEntropy(final, w, wb, targets.Reshape((int)targets.Count), LossChunkRows, ignoreIndex);
            tape.Discard(final);   // the op computed its gradients already; the layernorm's backward reads its input
            return chunked;
        }
        var logits = Forward(tape, inputs, active);
        var loss = tape.CrossEntropy(logits, targets.Reshape((int)targets.Count), ignoreIndex);
        tape.Release(logits);
        return loss;
    }

    /// <summary>
    /// The linear layer x @ weight[:rows, :cols]ᵀ + bias[:rows] at the model's precision; its input is released afterwards. In bf16 mode
    /// while recording, an input that only this layer reads (<paramref name="consumesInput"/>) is discarded outright: the layer kept a bf16
    /// copy, the f32 one is dead weight.
    /// </summary>
    Var Linear(Tape tape, Var x, string weight, string? bias, int? rows, int cols, bool consumesInput = true)
    {
        var w = Param(tape, weight, rows, cols);
        var b = bias is null ? null : Param(tape, bias, rows);
        if (Precision == Precision.F32)
        {
            var y32 = tape.Linear(x, w, b);
            if (consumesInput) tape.Release(x);
            return y32;
        }
        var y = tape.LinearBf16(x, w, Slice(Parameters.LowPrecisionOf(weight), rows, cols), b);
        if (consumesInput) tape.Discard(x);
        return y;
    }

    /// <summary>
    /// The chunked distillation loss of a student whose final hidden state is <paramref name="final"/> (from
    /// <see cref="ForwardHidden"/>), against a teacher given per chunk of rows (<see cref="TeacherRows"/>).
    /// </summary>
    public Var ChunkedDistillationLoss(
        Tape tape, Var final, TeacherRows teacher, Tensor targets, DistillSettings settings, out DistillParts parts)
    {
        var (w, wb) = Head(tape, final.Data.Size(1));
        var loss = tape.ChunkedDistillation(final, w, wb, teacher, targets.Reshape((int)targets.Count), settings, LossChunkRows, out parts);
        tape.Discard(final);
        return loss;
    }

    /// <summary>
    /// logits (R, V) = the LM head of hidden rows (R, d) at this model's precision, outside any tape: a no-grad teacher's
    /// logits for one chunk of a chunked distillation loss.
    /// </summary>
    public void HeadLogits(Tensor hiddenRows, Tensor logits)
    {
        int d = hiddenRows.Size(1);
        if (Precision == Precision.F32) { Backend.MatMul(hiddenRows, false, Slice(Parameters[EmbedOut], null, d), true, logits); return; }
        using var hb = Backend.Empty(DType.BF16, hiddenRows.ShapeArray);
        Backend.Copy(hiddenRows, hb);
        Backend.MatMul(hb, false, Slice(Parameters.LowPrecisionOf(EmbedOut), null, d), true, logits);
    }

    /// <summary>The LM head weight (V, d) as a tape Var, and its bf16 copy in bf16 mode.</summary>
    (Var Weight, Tensor? Bf16) Head(Tape tape, int d) =>
        (Param(tape, EmbedOut, rows: null, cols: d),
            Precision == Precision.Bf16 ? Slice(Parameters.LowPrecisionOf(EmbedOut), null, d) : null);

    /// <summary>A parameter (or its leading sub-block) as a tape Var: with its gradient view when gradients are being recorded.</summary>
    Var Param(Tape tape, string name, int? rows = null, int? cols = null)
    {
        var data = Parameters[name];
        bool train = tape.IsRecording && Parameters.FlatGrad is not null;
        return train ? Var.Parameter(Slice(data, rows, cols), Slice(Parameters.Grad(name), rows, cols))
            : Var.Constant(Slice(data, rows, cols));
    }

    /// <summary>The leading (rows, cols) block of a parameter, a view with the parent's row stride (rows alone for vectors).</summary>
    static Tensor Slice(Tensor t, int? rows, int? cols)
    {
        if (t.Rank == 1) return rows is { } n && n != t.Size(0) ? t.Narrow(0, 0, n) : t;
        if (rows is { } r && r != t.Size(0)) t = t.Narrow(0, 0, r);
        if (cols is { } cc && cc != t.Size(1)) t = t.Narrow(1, 0, cc);
        return t;
    }

    Var Param(Tape tape, string name, int length) => Param(tape, name, rows: length, cols: null);

    /// <summary>cos/sin of t·inv_freq, inv_freq[i] = base^(-2i/R), for t in [0, Tmax): the same tables HF builds (in double, then
    /// f32).</summary>
    void EnsureRotaryTables(int t)
    {
        int half = Config.RotaryDims / 2;
        if (_cos is not null && _cos.Size(0) >= t) return;
        int rows = Math.Max(t, Math.Min(Config.MaxPositionEmbeddings, 4096));
        var cos = new float[rows * Math.Max(half, 1)]; var sin = new float[cos.Length];
        for (int pos = 0; pos < rows; pos++)
            for (int i = 0; i < half; i++)
            {
                double invFreq = 1.0 / Math.Pow(Config.RotaryBase, 2.0 * i / Config.RotaryDims);
                double angle = pos * invFreq;
                cos[pos * half + i] = (float)Math.Cos(angle);
                sin[pos * half + i] = (float)Math.Sin(angle);
            }
        _cos?.Dispose(); _sin?.Dispose();
        using var hc = Tensor.FromArray(cos, rows, Math.Max(half, 1));
        using var hs = Tensor.FromArray(sin, rows, Math.Max(half, 1));
        _cos = Backend.FromHost(hc); _sin = Backend.FromHost(hs);
    }

    public void Dispose()
    {
        Parameters.Dispose();
        _cos?.Dispose(); _sin?.Dispose();
    }
}
