using Whittle.Native.Autograd;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>Points in the forward pass an observer may read (e.g. importance scoring): the residual stream (N, d) entering and
/// leaving a layer, the attention context per head (B, T, h, D) before the output projection, and the MLP activation (N, m)
/// that feeds the down projection.</summary>
public enum ForwardTap { LayerInput, AttentionHeads, MlpActivation, LayerOutput }

/// <summary>Called with the tap, the position in the active layer list, and the activation (valid only during the call).</summary>
public delegate void ForwardObserver(ForwardTap tap, int layerPosition, Tensor activation);

/// <summary>How a new model initialises one parameter: a constant (Std = 0: norm weights 1, biases 0) or N(0, Std).</summary>
public readonly record struct InitRule(float Constant, double Std)
{
    public static InitRule Fill(float value) => new(value, 0);
    public static InitRule Normal(double std) => new(0, std);
}

/// <summary>
/// What a causal language model of any family shares with the training, evaluation and distillation code: the parameters in
/// one flat buffer (<see cref="ParameterSet"/>), the forward pass to the final hidden state (the family's own), the LM head
/// and the losses on top of it (plain or chunked), precision, rotary tables and initialisation. A family supplies its
/// config (names and shapes), <see cref="ForwardHidden"/>, the names of its embedding and head weights (the same tensor
/// when tied: both uses then accumulate their gradients into it), its rotary frequencies and its initialisation rule.
/// </summary>
public abstract class LanguageModel : IDisposable
{
    Tensor? _cos, _sin;   // (Tmax, R/2) rotary tables on the backend

    protected LanguageModel(ModelConfig config, IBackend backend)
    {
        Config = config;
        Backend = backend;
        Parameters = new ParameterSet(backend, config.Layout());
    }

    public ModelConfig Config { get; }
    public IBackend Backend { get; }
    public ParameterSet Parameters { get; }
    /// <summary>Parameters that held NaN or Inf when loaded from disk (empty for a new model); each was also a warning.</summary>
    public IReadOnlyList<string> NonFiniteTensors { get; internal set; } = [];

    /// <summary>The input embedding (V, d).</summary>
    public abstract string EmbeddingName { get; }
    /// <summary>The LM head weight (V, d): <see cref="EmbeddingName"/> when the embeddings are tied.</summary>
    public abstract string HeadName { get; }

    /// <summary>The final hidden state (B·T, d) for ids (B, T): the forward pass without the LM head.</summary>
    public abstract Var ForwardHidden(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null);

    /// <summary>The inverse frequencies of the rotary tables (R/2 of them, rotating the first R dims of each head).</summary>
    protected abstract double[] RotaryInverseFrequencies();

    /// <summary>How <paramref name="p"/> starts in a new model.</summary>
    protected abstract InitRule InitOf(ParameterInfo p);

    Precision _precision = Precision.F32;

    /// <summary>
    /// The arithmetic of <see cref="Forward"/> and its backward pass (<see cref="Model.Precision"/>; f32 by default).
    /// Bf16 keeps a bf16 copy of the GEMM weight matrices (every matrix but an untied input embedding, which is only
    /// gathered) in <see cref="Parameters"/> (refreshed by every optimizer step and load); setting F32 frees it. Setting
    /// it also sets <see cref="Attention"/> to the same precision.
    /// </summary>
    public Precision Precision
    {
        get => _precision;
        set
        {
            if (value == Precision.Bf16) Parameters.EnableLowPrecision(p => p.Decay && (p.Name != EmbeddingName || p.Name == HeadName));
            else Parameters.DisableLowPrecision();
            _precision = value;
            Attention = value == Precision.Bf16 ? AttentionPrecision.Bf16 : AttentionPrecision.F32;
        }
    }

    /// <summary>The attention calls' precision: that of <see cref="Precision"/> unless set to F32 after it (the opt-out).</summary>
    public AttentionPrecision Attention { get; set; }

    /// <summary>
    /// Rows of the LM head computed chunk by chunk by <see cref="Loss"/> and the distillation losses (0, the default: all
    /// at once). With R rows the (N, V) logits and their gradient are never held whole, only (R, V) of each
    /// (<see cref="Ops.ChunkedCrossEntropy"/>); values and gradients are the same.
    /// </summary>
    public int LossChunkRows { get; set; }

    /// <summary>Whether a batch of <paramref name="rows"/> rows takes the chunked head (<see cref="LossChunkRows"/>).</summary>
    public bool ChunksLoss(int rows) => LossChunkRows > 0 && LossChunkRows < rows;

    // ---------------------------------------------------------------- initialisation

    /// <summary>Replaces every parameter with the values of a host (P) vector laid out as <see cref="ParameterSet.Entries"/>.</summary>
    public void LoadFlat(Tensor hostFlat)
    {
        using var dev = Backend.FromHost(hostFlat);
        Backend.Copy(dev, Parameters.Flat);
        Parameters.RefreshLowPrecision();
    }

    /// <summary>
    /// Models up to this many parameters keep the original sequential draw (one generator, entries in order): it takes
    /// well under a second there, and it keeps the weights every existing run, report figure and test was made with
    /// (the demo presets included). Larger models (the Pythia shapes the GPU kit benchmarks: 410M took 25 s on one
    /// thread) use the parallel <see cref="RandomInit"/>. Both are functions of the seed alone, for any thread count.
    /// </summary>
    public const long SequentialInitLimit = 16L << 20;

    /// <summary>A new model of <paramref name="config"/>'s family, initialised from <paramref name="seed"/> by that family's
    /// rule.</summary>
    public static LanguageModel CreateRandom(ModelConfig config, IBackend backend, ulong seed) => config switch
    {
        GptNeoXConfig neox => GptNeoX.CreateRandom(neox, backend, seed),
        LlamaConfig llama => Llama.CreateRandom(llama, backend, seed),
        _ => throw new ArgumentException($"no model for {config.GetType().Name}"),
    };

    /// <summary>Fills a new model's parameters by <see cref="InitOf"/> from <paramref name="seed"/>.</summary>
    protected void Initialise(ulong seed)
    {
        using var host = Parameters.Count <= SequentialInitLimit
            ? SequentialInit(Parameters, InitOf, seed) : RandomInit(Parameters, InitOf, seed);
        LoadFlat(host);
    }

    /// <summary>The sequential draw: one generator over the random entries in order (constants draw nothing).</summary>
    public static Tensor SequentialInit(ParameterSet parameters, Func<ParameterInfo, InitRule> rule, ulong seed)
    {
        var rng = new Rng(seed);
        var host = Tensor.Zeros(DType.F32, checked((int)parameters.Count));
        var all = host.AsSpan<float>();
        foreach (var p in parameters.Entries)
        {
            var span = all.Slice((int)p.Offset, (int)p.Count);
            var r = rule(p);
            if (r.Std == 0) span.Fill(r.Constant);
            else rng.FillNormal(span, 0, r.Std);
        }
        return host;
    }

    /// <summary>Elements per independently seeded block of a matrix: the unit of parallel work in <see cref="RandomInit"/>.</summary>
    public const int InitBlockElements = 1 << 20;

    /// <summary>
    /// The host (P) vector of a random initialisation. In parallel, and the same for any thread count: every random
    /// entry is cut into fixed <see cref="InitBlockElements"/>-element blocks, each drawn from its own generator seeded by
    /// (seed, parameter index, block index) — never from a generator shared in the order the threads happen to run.
    /// (A 410M model drew ~300M normals from one generator on one thread: 25 s.)
    /// </summary>
    public static Tensor RandomInit(ParameterSet parameters, Func<ParameterInfo, InitRule> rule, ulong seed, int maxThreads = -1)
    {
        var host = Tensor.Zeros(DType.F32, checked((int)parameters.Count));
        var entries = parameters.Entries;
        var blocks = new List<(int Index, long Block)>();
        for (int i = 0; i < entries.Count; i++)
        {
            var p = entries[i];
            var r = rule(p);
            if (r.Std == 0) host.AsSpan<float>().Slice((int)p.Offset, (int)p.Count).Fill(r.Constant);
            else
                for (long b = 0; b * InitBlockElements < p.Count; b++) blocks.Add((i, b));
        }
        Parallel.ForEach(blocks, new ParallelOptions { MaxDegreeOfParallelism = maxThreads }, item =>
        {
            var p = entries[item.Index];
            long start = item.Block * InitBlockElements;
            int length = (int)Math.Min(InitBlockElements, p.Count - start);
            var rng = new Rng(BlockSeed(seed, item.Index, item.Block));
            rng.FillNormal(host.AsSpan<float>().Slice((int)(p.Offset + start), length), 0, rule(p).Std);
        });
        return host;
    }

    /// <summary>A generator seed per (seed, parameter, block); <see cref="Rng"/> scrambles it further through splitmix64.</summary>
    static ulong BlockSeed(ulong seed, int index, long block) =>
        (seed * 0x9E3779B97F4A7C15UL + (ulong)index + 1) * 0xBF58476D1CE4E5B9UL + (ulong)block;

    // ---------------------------------------------------------------- the LM head and the losses

    /// <summary>
    /// Logits (B·T, V) for ids (B, T) (i32, on this model's backend). With a recording tape and allocated gradients
    /// (<see cref="ParameterSet.EnsureGrad"/>), parameter gradients accumulate into <see cref="ParameterSet.FlatGrad"/>.
    /// </summary>
    public Var Forward(Tape tape, Tensor ids, ActiveArchitecture? active = null, ForwardObserver? observe = null)
    {
        var final = ForwardHidden(tape, ids, active, observe);
        return Linear(tape, final, HeadName, bias: null, rows: null, cols: final.Data.Size(1));
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
            tape.Discard(final);   // the op computed its gradients already; the final norm's backward reads its input
            return chunked;
        }
        var logits = Forward(tape, inputs, active);
        var loss = tape.CrossEntropy(logits, targets.Reshape((int)targets.Count), ignoreIndex);
        tape.Release(logits);
        return loss;
    }

    /// <summary>
    /// The linear layer x @ weight[:rows, :cols]ᵀ + bias[:rows] at the model's precision; its input is released afterwards.
    /// In bf16 mode while recording, an input that only this layer reads (<paramref name="consumesInput"/>) is discarded
    /// outright: the layer kept a bf16 copy, the f32 one is dead weight.
    /// </summary>
    protected Var Linear(Tape tape, Var x, string weight, string? bias, int? rows, int cols, bool consumesInput = true)
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
    public Var ChunkedDistillationLoss(Tape tape, Var final, TeacherRows teacher, Tensor targets, DistillSettings settings,
        out DistillParts parts)
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
        if (Precision == Precision.F32) { Backend.MatMul(hiddenRows, false, Slice(Parameters[HeadName], null, d), true, logits); return; }
        using var hb = Backend.Empty(DType.BF16, hiddenRows.ShapeArray);
        Backend.Copy(hiddenRows, hb);
        Backend.MatMul(hb, false, Slice(Parameters.LowPrecisionOf(HeadName), null, d), true, logits);
    }

    /// <summary>The LM head weight (V, d) as a tape Var, and its bf16 copy in bf16 mode.</summary>
    (Var Weight, Tensor? Bf16) Head(Tape tape, int d) =>
        (Param(tape, HeadName, rows: null, cols: d),
            Precision == Precision.Bf16 ? Slice(Parameters.LowPrecisionOf(HeadName), null, d) : null);

    /// <summary>A parameter (or its leading sub-block) as a tape Var: with its gradient view when gradients are being recorded.</summary>
    protected Var Param(Tape tape, string name, int? rows = null, int? cols = null)
    {
        var data = Parameters[name];
        bool train = tape.IsRecording && Parameters.FlatGrad is not null;
        return train
            ? Var.Parameter(Slice(data, rows, cols), Slice(Parameters.Grad(name), rows, cols))
            : Var.Constant(Slice(data, rows, cols));
    }

    /// <summary>A vector parameter's first <paramref name="length"/> entries as a tape Var.</summary>
    protected Var Param(Tape tape, string name, int length) => Param(tape, name, rows: length, cols: null);

    /// <summary>The leading (rows, cols) block of a parameter, a view with the parent's row stride (rows alone for vectors).</summary>
    protected internal static Tensor Slice(Tensor t, int? rows, int? cols)
    {
        if (t.Rank == 1) return rows is { } n && n != t.Size(0) ? t.Narrow(0, 0, n) : t;
        if (rows is { } r && r != t.Size(0)) t = t.Narrow(0, 0, r);
        if (cols is { } cc && cc != t.Size(1)) t = t.Narrow(1, 0, cc);
        return t;
    }

    // ---------------------------------------------------------------- rotary

    /// <summary>
    /// cos and sin (T, R/2) of t·inv_freq for positions [0, t), from tables kept on the backend for at least
    /// min(max_position_embeddings, 4096) positions (computed in double, then f32).
    /// </summary>
    protected internal (Tensor Cos, Tensor Sin) RotaryTables(int t)
    {
        if (_cos is null || _cos.Size(0) < t)
        {
            var invFreq = RotaryInverseFrequencies();
            int half = invFreq.Length, width = Math.Max(half, 1);
            int rows = Math.Max(t, Math.Min(Config.MaxPositionEmbeddings, 4096));
            var cos = new float[rows * width]; var sin = new float[cos.Length];
            for (int pos = 0; pos < rows; pos++)
                for (int i = 0; i < half; i++)
                {
                    double angle = pos * invFreq[i];
                    cos[pos * half + i] = (float)Math.Cos(angle);
                    sin[pos * half + i] = (float)Math.Sin(angle);
                }
            _cos?.Dispose(); _sin?.Dispose();
            using var hc = Tensor.FromArray(cos, rows, width);
            using var hs = Tensor.FromArray(sin, rows, width);
            _cos = Backend.FromHost(hc); _sin = Backend.FromHost(hs);
        }
        return (_cos.Narrow(0, 0, t), _sin!.Narrow(0, 0, t));
    }

    public void Dispose()
    {
        Parameters.Dispose();
        _cos?.Dispose(); _sin?.Dispose();
        GC.SuppressFinalize(this);
    }
}
