using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Training;

public sealed record TrainOptions
{
    public required string RunDir { get; init; }
    public required int SeqLen { get; init; }
    public required int MicroBatch { get; init; }
    public int GradAccum { get; init; } = 1;
    public required int Steps { get; init; }
    public required LrSchedule Schedule { get; init; }
    public AdamWSettings Adam { get; init; } = new(3e-4f);
    /// <summary>Global grad-norm clip; 0 disables.</summary>
    public float ClipNorm { get; init; } = 1f;
    /// <summary>Evaluate every N steps (and at the end); 0: only at the end.</summary>
    public int EvalEvery { get; init; }
    /// <summary>Validation predictions per evaluation: always the same leading windows of the val split.</summary>
    public long EvalTokens { get; init; } = 65536;
    /// <summary>Checkpoint every N steps (and at the end); 0: only at the end.</summary>
    public int SaveEvery { get; init; }
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Steps whose checkpoint is always written and never pruned (e.g. SALT's switch, 70% and 100%).</summary>
    public IReadOnlySet<int> MilestoneSteps { get; init; } = new HashSet<int>();
    /// <summary>Extra steps at which to evaluate (so several runs can be compared at the same steps).</summary>
    public IReadOnlySet<int> EvalSteps { get; init; } = new HashSet<int>();
    public ulong Seed { get; init; } = 1;
    public string? TokenizerFile { get; init; }
    /// <summary>
    /// SALT_DS: start offsets of selected (T+1)-token training windows; for steps up to <see cref="SelectedUntilStep"/>
    /// every batch is drawn from these (deterministically from seed and its own cursor), afterwards from the whole split.
    /// </summary>
    public IReadOnlyList<long>? SelectedWindows { get; init; }
    public int SelectedUntilStep { get; init; }
    /// <summary>Facts about how the run computes (e.g. precision, teacher_precision), logged to metrics.jsonl as a line with the step it
    /// starts (or resumes) at.</summary>
    public IReadOnlyDictionary<string, string> RunInfo { get; init; } = new Dictionary<string, string>();

    public long TokensPerStep => (long)SeqLen * MicroBatch * GradAccum;

    public TrainOptions Validate()
    {
        if (SeqLen < 1 || MicroBatch < 1 || GradAccum < 1)
            throw new WhittleException($"--seq-len ({SeqLen}), --batch-size ({MicroBatch}) and --grad-accum ({GradAccum}) must be " +
            $"positive");
        if (Steps < 1) throw new WhittleException($"the run needs at least one step (got {Steps})");
        if (ClipNorm < 0) throw new WhittleException($"--clip must be >= 0, got {ClipNorm}");
        Schedule.Validate();
        return this;
    }
}

/// <summary>
/// One optimizer step as the log sees it. Milliseconds: this step's wall-clock; ElapsedSeconds: the run's training
/// wall-clock so far (the steps' own times summed, carried across resumes; evaluations and checkpoint saves are not
/// training and are left out); TeacherMilliseconds: the part of this step spent obtaining a frozen teacher's soft
/// labels (its forward pass, or reading them from a cache), null for a step that consulted no teacher.
/// </summary>
public sealed record StepRecord(
    int Step, int Steps, double Loss, float Lr, double GradNorm, double Milliseconds, double TokensPerSecond, long TokensSeen,
    IReadOnlyDictionary<string, double> Extra, double ElapsedSeconds = 0, double? TeacherMilliseconds = null);

/// <summary>
/// A validation measurement; Seconds is the evaluation's own time, ElapsedSeconds the run's training wall-clock at that step.
/// </summary>
public sealed record EvalRecord(int Step, long TokensSeen, double ValLoss, double Seconds, double ElapsedSeconds = 0)
{
    public double Perplexity => Math.Exp(ValLoss);
}

/// <summary>
/// A loss for one micro-batch: inputs (B, T) and targets (B·T) on the model's device. Extra holds parts to log (e.g. ce,
/// kd), averaged over the step's micro-batches; TeacherSeconds is the wall-clock spent obtaining a frozen teacher's soft
/// labels (its forward pass or a cache read), summed over the step's micro-batches, or null when no teacher was consulted.
/// </summary>
public delegate (Var Loss, IReadOnlyDictionary<string, double>? Extra, double? TeacherSeconds) LossFunction(
    Tape tape, Tensor inputs, Tensor targets, int step);

/// <summary>
/// A micro-batch's forward and backward passes run by the caller (several losses per micro-batch: a supernet's sampled
/// sub-networks): every loss's gradient, times <paramref name="gradScale"/> (1 / accum, the mean over micro-batches),
/// accumulates into the parameters' gradients. Loss is the value logged; a non-finite one must be returned before any
/// backward pass (the trainer then stops at this step). Extra and TeacherSeconds as for <see cref="LossFunction"/>.
/// </summary>
public delegate (double Loss, IReadOnlyDictionary<string, double>? Extra, double? TeacherSeconds) MicroBatchStep(
    Tensor inputs, Tensor targets, int step, float gradScale);

/// <summary>NaN or Inf appeared: the run stops at this step, the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : WhittleException(message);

/// <summary>
/// The training loop shared by pretrain, distill and SALT: micro-batches with gradient accumulation, global-norm
/// clipping, AdamW on the flat parameter buffer, the LR schedule, periodic validation on fixed batches, atomic
/// checkpoints, and exact resume (data cursor, optimizer moments and step restored; on CPU every reduction has a
/// fixed order, so a resumed run is bit-identical to an uninterrupted one).
/// Output the llm.c way: one <see cref="StepRecord"/> per step to the caller, and metrics.jsonl in the run directory.
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly LanguageModel _model;
    readonly TokenDataset _data;
    readonly TrainOptions _o;
    readonly AdamWOptimizer _opt;
    readonly CheckpointStore _store;
    readonly BatchLoader _loader;
    TrainingState _state;
    long _selectedCursor;

    public Trainer(LanguageModel model, TokenDataset data, TrainOptions options)
    {
        _o = options.Validate();
        _model = model;
        _data = data;
        model.Config.RequireContext(options.SeqLen);
        if (data.Meta.VocabSize > model.Config.VocabSize)
            throw new WhittleException($"{data.Directory}: dataset vocabulary ({data.Meta.VocabSize}) is larger than the model's " +
                $"vocab_size ({model.Config.VocabSize})");
        if (data.Val.Length < options.SeqLen + 1)
            throw new WhittleException($"{data.Directory}: the validation split has {data.Val.Length} tokens, fewer than one window of " +
                $"{options.SeqLen + 1}; " +
                "re-tokenize with --val-fraction > 0 and a --doc-start pattern that splits the text into several documents");
        if (data.Train.Length < options.SeqLen + 1)
            throw new WhittleException($"{data.Directory}: the training split has {data.Train.Length} tokens, fewer than one window of " +
                $"{options.SeqLen + 1}");
        model.Parameters.EnsureGrad();
        _opt = new AdamWOptimizer(model.Parameters, options.Adam);
        _store = new CheckpointStore(options.RunDir, options.KeepCheckpoints, options.TokenizerFile);
        _loader = TrainingBatches(data, options.MicroBatch, options.SeqLen, options.Seed);
        _state = new TrainingState(0, 0, 0, options.Seed, 0);
        Directory.CreateDirectory(options.RunDir);
    }

    /// <summary>
    /// The micro-batches a run draws, in order (outside a SALT_DS selection): one (B, T+1) batch per micro-batch, so
    /// optimizer step s uses batches (s−1)·accum … s·accum − 1. `whittle cache-teacher` walks this very sequence.
    /// </summary>
    public static BatchLoader TrainingBatches(TokenDataset data, int microBatch, int seqLen, ulong seed) =>
        BatchLoader.Random(data.Train, microBatch, seqLen, seed);

    /// <summary>A (B, T+1) batch → inputs (B, T) and next-token targets (B·T), as every training step feeds the model.</summary>
    public static void SplitBatch(ReadOnlySpan<int> batch, int B, int T, Span<int> inputs, Span<int> targets)
    {
        for (int r = 0; r < B; r++)
        {
            batch.Slice(r * (T + 1), T).CopyTo(inputs[(r * T)..]);
            batch.Slice(r * (T + 1) + 1, T).CopyTo(targets[(r * T)..]);
        }
    }

    public CheckpointStore Checkpoints => _store;
    public int Step => _state.Step;
    public string MetricsPath => Path.Combine(_o.RunDir, "metrics.jsonl");

    /// <summary>Continues from the newest complete checkpoint of the run directory; false when there is none.</summary>
    public bool TryResume()
    {
        if (_store.Latest() is not { } latest)
        {
            // An interrupted run that never checkpointed starts again from step 0: its metric lines go with it.
            if (File.Exists(MetricsPath)) File.Delete(MetricsPath);
            return false;
        }
        _state = CheckpointStore.Restore(latest.Path, _model, _opt);
        if (_state.Seed != _o.Seed)
            throw new WhittleException($"{latest.Path}: the run used --seed {_state.Seed}, not {_o.Seed}; resume with the same seed");
        _loader.Cursor = _state.DataCursor;
        _selectedCursor = _state.SelectedCursor;
        TruncateMetrics(_state.Step);
        return true;
    }

    /// <summary>
    /// For a run started without --resume: refuses a run directory that already holds a run (checkpoints or metrics),
    /// since mixing two runs' metrics and checkpoints would make both unusable (pruning keeps the highest steps).
    /// </summary>
    public void RequireFreshRunDirectory()
    {
        var latest = _store.Latest();
        if (latest is not null || File.Exists(MetricsPath))
            throw new WhittleException($"{_o.RunDir} already holds a " +
                $"run{(latest is { } l ? $" (checkpoints up to step {l.Step})" : "")}; pass --resume to continue it, or choose another " +
                $"--out");
    }

    public IReadOnlyList<EvalRecord> Run(
        LossFunction? loss = null, Action<StepRecord>? onStep = null, Action<EvalRecord>? onEval = null, CancellationToken cancel = default)
    {
        loss ??= (tape, inputs, targets, _) => (_model.Loss(tape, inputs, targets), null, null);
        return Run(Backpropagating(loss), onStep, onEval, cancel);
    }

    /// <summary>
    /// The loop with the caller's own forward and backward passes per micro-batch. <paramref name="annotate"/> may add
    /// fields to (or remove them from) each step's metrics.jsonl line before it is written.
    /// </summary>
    public IReadOnlyList<EvalRecord> Run(MicroBatchStep microStep, Action<StepRecord>? onStep = null, Action<EvalRecord>? onEval = null,
        CancellationToken cancel = default, Action<StepRecord, JsonObject>? annotate = null)
    {
        var backend = _model.Backend;
        var evals = new List<EvalRecord>();
        int B = _o.MicroBatch, T = _o.SeqLen;
        var inputs = new int[B * T]; var targets = new int[B * T];
        if (_o.RunInfo.Count > 0 && _state.Step < _o.Steps)
        {
            var info = new JsonObject { ["step"] = _state.Step };
            foreach (var (k, v) in _o.RunInfo) info[k] = v;
            AppendMetrics(info);
        }

        while (_state.Step < _o.Steps)
        {
            cancel.ThrowIfCancellationRequested();
            int step = _state.Step + 1;
            var sw = Stopwatch.StartNew();
            _model.Parameters.ZeroGrad();
            double lossSum = 0;
            double? teacherSeconds = null;
            var extraSum = new Dictionary<string, double>();
            for (int micro = 0; micro < _o.GradAccum; micro++)
            {
                SplitBatch(NextBatch(step), B, T, inputs, targets);                 // (B, T+1) -> (B, T), (B·T)
                using var hIn = Tensor.FromArray(inputs, B, T);
                using var hTg = Tensor.FromArray(targets, B * T);
                using var dIn = backend.FromHost(hIn);
                using var dTg = backend.FromHost(hTg);
                // Each micro-batch's loss is a mean over its tokens; the step's gradient is the mean over micro-batches.
                var (value, extra, teacher) = microStep(dIn, dTg, step, 1f / _o.GradAccum);
                if (teacher is { } ts) teacherSeconds = (teacherSeconds ?? 0) + ts;
                if (!double.IsFinite(value))
                    throw Diverged(step, $"the loss is {value}");
                lossSum += value;
                foreach (var (k, v) in extra ?? new Dictionary<string, double>()) extraSum[k] = extraSum.GetValueOrDefault(k) + v;
            }
            double norm = _opt.GradNorm();
            if (!double.IsFinite(norm))
                throw Diverged(step, $"the gradient norm is {norm}; non-finite gradients in {NonFiniteGradients()}");
            float lr = _o.Schedule.At(step);
            _opt.Update(lr, _o.ClipNorm, norm);
            backend.Synchronize();
            double seconds = sw.Elapsed.TotalSeconds, ms = 1000 * seconds;
            // Training wall-clock is the sum of the steps' own times, so it grows with every step and a resume continues it
            // from the checkpoint's value; the time spent evaluating, saving or loading is not training and stays out.
            _state = _state with
            {
                Step = step, TokensSeen = _state.TokensSeen + _o.TokensPerStep, DataCursor = _loader.Cursor,
                    SelectedCursor = _selectedCursor,
                ElapsedSeconds = _state.ElapsedSeconds + seconds,
            };
            var record = new StepRecord(
                step, _o.Steps, lossSum / _o.GradAccum, lr, norm, ms, _o.TokensPerStep / seconds, _state.TokensSeen,
                extraSum.ToDictionary(kv => kv.Key, kv => kv.Value / _o.GradAccum), _state.ElapsedSeconds, 1000 * teacherSeconds);
            var line = StepJson(record);
            annotate?.Invoke(record, line);
            AppendMetrics(line);
            onStep?.Invoke(record);

            bool last = step == _o.Steps;
            if (last || _o.EvalSteps.Contains(step) || (_o.EvalEvery > 0 && step % _o.EvalEvery == 0))
            {
                var ev = Evaluate(step);
                evals.Add(ev);
                AppendMetrics(new JsonObject
                {
                    ["step"] = step, ["tokens"] = ev.TokensSeen, ["val_loss"] = ev.ValLoss, ["val_perplexity"] = ev.Perplexity,
                    ["eval_seconds"] = ev.Seconds, ["elapsed_s"] = Math.Round(ev.ElapsedSeconds, 6),
                });
                onEval?.Invoke(ev);
            }
            bool milestone = _o.MilestoneSteps.Contains(step);
            if (last || milestone || (_o.SaveEvery > 0 && step % _o.SaveEvery == 0))
                _store.Save(_model, _opt, _state, pin: milestone);
        }
        return evals;
    }

    /// <summary>A loss function as a micro-batch step: one tape, one backward pass seeded with the gradient scale (none for a
    /// non-finite loss).</summary>
    MicroBatchStep Backpropagating(LossFunction loss) => (inputs, targets, step, gradScale) =>
    {
        var backend = _model.Backend;
        using var tape = new Tape(backend);
        var (l, extra, teacher) = loss(tape, inputs, targets, step);
        double value = l.Data.ToFloatArray()[0];
        if (!double.IsFinite(value)) return (value, extra, teacher);
        using (var seed = backend.Zeros(DType.F32, 1)) { backend.Fill(seed, gradScale); tape.Backward(l, seed); }
        return (value, extra, teacher);
    };

    int[] NextBatch(int step)
    {
        if (_o.SelectedWindows is not { Count: > 0 } selected || step > _o.SelectedUntilStep)
        {
            _loader.TryNext(out var b);
            return b;
        }
        // A window per row, drawn from the selection by a generator seeded with (seed, cursor): resumable like BatchLoader.
        int w = _o.SeqLen + 1;
        var batch = new int[_o.MicroBatch * w];
        var rng = new Rng(_o.Seed ^ (0xA5A5_0000_0000_0000UL + (ulong)_selectedCursor));
        for (int r = 0; r < _o.MicroBatch; r++)
            _data.Train.Read(selected[rng.NextInt(selected.Count)], batch.AsSpan(r * w, w));
        _selectedCursor++;
        return batch;
    }

    /// <summary>Validation loss on the same leading windows of the val split every time (T+1-token windows: T predictions each, as in
    /// training).</summary>
    public EvalRecord Evaluate(int step)
    {
        var r = Perplexity.Evaluate(_model, _data.Val, _o.SeqLen + 1, _o.MicroBatch, _o.EvalTokens);
        return new EvalRecord(step, _state.TokensSeen, r.Loss, r.Seconds, _state.ElapsedSeconds);
    }

    TrainingDivergedException Diverged(int step, string what)
    {
        var last = _store.Latest();
        return new TrainingDivergedException($"step {step}: {what}; stopping. " +
            (last is { } l ? $"The last good checkpoint is {l.Path} (step {l.Step})." : "No checkpoint was written before this step."));
    }

    string NonFiniteGradients()
    {
        var g = _model.Parameters.FlatGrad!.ToFloatArray();
        var bad = _model.Parameters.Entries.Where(
            p => !AllFinite(g.AsSpan((int)p.Offset, (int)p.Count))).Select(p => p.Name).Take(5).ToList();
        return bad.Count == 0 ? "(none found)" : string.Join(", ", bad);
    }

    static bool AllFinite(ReadOnlySpan<float> s) { foreach (var x in s) if (!float.IsFinite(x)) return false; return true; }

    static JsonObject StepJson(StepRecord r)
    {
        var o = new JsonObject
        {
            ["step"] = r.Step, ["tokens"] = r.TokensSeen, ["loss"] = r.Loss, ["lr"] = r.Lr, ["grad_norm"] = r.GradNorm,
            ["ms"] = Math.Round(r.Milliseconds, 2), ["tokens_per_second"] = Math.Round(r.TokensPerSecond, 1),
            ["elapsed_s"] = Math.Round(r.ElapsedSeconds, 6),
        };
        if (r.TeacherMilliseconds is { } t) o["teacher_ms"] = Math.Round(t, 2);
        foreach (var (k, v) in r.Extra) o[k] = v;
        return o;
    }

    void AppendMetrics(JsonObject o)
    {
        using var w = new StreamWriter(MetricsPath, append: true);
        w.WriteLine(o.ToJsonString());
    }

    /// <summary>After a resume, drops metric lines logged past the checkpoint (they will be logged again, identically).</summary>
    void TruncateMetrics(int step)
    {
        if (!File.Exists(MetricsPath)) return;
        var keep = File.ReadAllLines(MetricsPath).Where(line =>
        {
            try { return JsonNode.Parse(line)?["step"]?.GetValue<int>() <= step; }
            catch (System.Text.Json.JsonException) { return false; }    // a line cut short by the crash
            // A line that is JSON but not a metrics object (hand-edited, or another tool's) is dropped the same way.
            catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException) { return false; }
        }).ToList();
        AtomicFile.WriteAllText(MetricsPath, keep.Count == 0 ? "" : string.Join("\n", keep) + "\n");
    }

    public void Dispose() => _opt.Dispose();
}
