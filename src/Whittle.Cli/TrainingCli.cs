using Spectre.Console;

namespace Whittle.Cli;

/// <summary>
/// The flags every training command shares (pretrain, distill, salt): data, run directory, batch shape, budget, optimizer,
/// schedule, evaluation, checkpoints, device. One definition so the commands cannot drift apart.
/// </summary>
sealed class TrainingCli
{
    public readonly Option<string> Data = new("--data") { Description = "Token dataset directory (from `whittle tokenize`).",
        Required = true };
    public readonly Option<string> Out = new("--out") { Description = "Run directory: checkpoints/, metrics.jsonl, final/.",
        Required = true };
    public readonly Option<int> SeqLen = new("--seq-len") { Description = "Tokens per training sequence (T).",
        DefaultValueFactory = _ => 128 };
    public readonly Option<int> BatchSize = new("--batch-size") { Description = "Sequences per micro-batch (B).",
        DefaultValueFactory = _ => 8 };
    public readonly Option<int> GradAccum = new("--grad-accum") { Description = "Micro-batches per optimizer step.",
        DefaultValueFactory = _ => 1 };
    public readonly Option<int?> Steps = new("--steps") { Description = "Optimizer steps (or give --tokens)." };
    public readonly Option<long?> Tokens = new("--tokens") { Description = "Token budget; steps = tokens / (T·B·accum), rounded up." };
    public readonly Option<float> Lr = new("--lr") { Description = "Peak learning rate.", DefaultValueFactory = _ => 1e-3f };
    public readonly Option<float?> MinLr = new("--min-lr") { Description = "Final learning rate (default lr/10)." };
    public readonly Option<int?> Warmup = new("--warmup") { Description = "Linear warmup steps (default 5% of steps)." };
    public readonly Option<string> Schedule = new("--lr-schedule") { Description = "Learning-rate schedule: cosine | wsd | constant.",
        DefaultValueFactory = _ => "cosine" };
    public readonly Option<float> DecayFraction = new("--decay-fraction") { Description = "WSD: fraction of steps in the final decay.",
        DefaultValueFactory = _ => 0.2f };
    public readonly Option<float> WeightDecay = new("--weight-decay") { Description = "AdamW weight decay (not on biases and norms).",
        DefaultValueFactory = _ => 0.1f };
    public readonly Option<float> Beta1 = new("--beta1") { DefaultValueFactory = _ => 0.9f, Description = "AdamW β1." };
    public readonly Option<float> Beta2 = new("--beta2") { DefaultValueFactory = _ => 0.95f, Description = "AdamW β2." };
    public readonly Option<float> Clip = new("--clip") { Description = "Global grad-norm clip (0: off).", DefaultValueFactory = _ => 1f };
    public readonly Option<int> EvalEvery = new("--eval-every") { Description = "Validate every N steps (always at the end).",
        DefaultValueFactory = _ => 0 };
    public readonly Option<long> EvalTokens = new("--eval-tokens") { Description = "Validation predictions per evaluation (fixed leading " +
        "windows).", DefaultValueFactory = _ => 65536 };
    public readonly Option<int> SaveEvery = new("--save-every") { Description = "Checkpoint every N steps (always at the end).",
        DefaultValueFactory = _ => 0 };
    public readonly Option<int> Keep = new("--keep") { Description = "Checkpoints kept (newest).", DefaultValueFactory = _ => 2 };
    public readonly Option<ulong> Seed = new("--seed") { Description = "Seed for initialisation and data order.",
        DefaultValueFactory = _ => 1UL };
    public readonly Option<string> Device = CliCommon.DeviceOption();
    public readonly Option<bool> Resume = new("--resume") { Description = "Continue from the newest checkpoint in --out." };
    public readonly Option<string> Precision = PrecisionOption("--precision",
        "fp32 | bf16. bf16: mixed precision, f32 master weights and optimizer state, bf16 copies of the weight matrices, every Linear " +
            "GEMM on bf16 inputs with f32 accumulation (tensor cores on CUDA, an exact emulation on the CPU); layernorm, attention, " +
            "softmax and losses in f32. Validation runs at the same precision.",
        "fp32");
    /// <summary>distill and salt only (not added by <see cref="AddTo"/>): the frozen teacher's precision.</summary>
    public readonly Option<int> LossChunkRows = new("--loss-chunk-rows")
    {
        Description = "Compute the LM head and loss this many rows (tokens) at a time, so the (N, V) logits and their gradient are never " +
            "held whole (0: all at once). Same values; saves about 8·(N − R)·V bytes.",
        DefaultValueFactory = _ => 0,
    };
    public readonly Option<string?> TeacherPrecision = PrecisionChoices(new Option<string?>("--teacher-precision")
    {
        Description = "fp32 | bf16: the teacher's forward pass (bf16 as --precision describes; its bf16 weight copy costs 2 bytes per " +
            "matrix parameter on top of its f32 weights). Default: bf16 on cuda, fp32 on cpu.",
    });

    /// <summary>A --precision style option (fp32 | bf16, checked when the command line is parsed).</summary>
    public static Option<string> PrecisionOption(string name, string description, string defaultValue) =>
        PrecisionChoices(new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue });

    public static Option<T> PrecisionChoices<T>(Option<T> option)
    {
        option.AcceptOnlyFromAmong("fp32", "bf16");
        return option;
    }

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { Data, Out, SeqLen, BatchSize, GradAccum, Steps, Tokens, Lr, MinLr, Warmup, Schedule, DecayFraction,
            WeightDecay,
                     Beta1, Beta2, Clip, EvalEvery, EvalTokens, SaveEvery, Keep, Seed, Device, Resume, Precision, LossChunkRows,
                         CliCommon.Json })
            cmd.Options.Add(o);
    }

    public TrainOptions Options(ParseResult p, string? tokenizerFile)
    {
        int seqLen = p.GetValue(SeqLen), b = p.GetValue(BatchSize), accum = p.GetValue(GradAccum);
        OptionCheck.AtLeast("--seq-len", seqLen, 1); OptionCheck.AtLeast("--batch-size", b, 1);
        OptionCheck.AtLeast("--grad-accum", accum, 1);
        OptionCheck.AtLeast("--loss-chunk-rows", p.GetValue(LossChunkRows), 0, " (0: off)");
        long perStep = (long)seqLen * b * accum;
        if (p.GetValue(Steps) is { } st) OptionCheck.AtLeast("--steps", st, 1);
        if (p.GetValue(Tokens) is { } tk) OptionCheck.AtLeast("--tokens", tk, 1);
        long stepsWanted = p.GetValue(Steps) is { } s ? s
            : p.GetValue(Tokens) is { } t ? Math.Max(1, t / perStep + (t % perStep == 0 ? 0 : 1))
            : throw new WhittleException("give a budget: --steps N or --tokens N");
        if (stepsWanted > int.MaxValue)
            throw new WhittleException($"--tokens {p.GetValue(Tokens)} needs {stepsWanted} steps of {perStep} tokens, more than " +
            $"{int.MaxValue}");
        int steps = (int)stepsWanted;
        float lr = OptionCheck.Positive("--lr", p.GetValue(Lr));
        if (File.Exists(p.GetValue(Out)!))
            throw new WhittleException($"--out {ErrorText.Clip(p.GetValue(Out))}: is a file; expected a run directory (new, or an " +
            $"earlier run's with --resume)");
        float minLr = p.GetValue(MinLr) is { } ml ? OptionCheck.NonNegative("--min-lr", ml) : lr / 10;
        if (minLr > lr) throw new WhittleException($"--min-lr {minLr} must not exceed --lr {lr}");
        if (p.GetValue(Warmup) is { } w) OptionCheck.AtLeast("--warmup", w, 0);
        float decay = p.GetValue(DecayFraction);
        if (!(decay > 0 && decay <= 1)) throw new WhittleException($"--decay-fraction must be in (0, 1], got {decay}");
        OptionCheck.UnitInterval("--beta1", p.GetValue(Beta1));
        OptionCheck.UnitInterval("--beta2", p.GetValue(Beta2));
        OptionCheck.NonNegative("--weight-decay", p.GetValue(WeightDecay));
        OptionCheck.NonNegative("--clip", p.GetValue(Clip), " (0: off)");
        OptionCheck.AtLeast("--eval-every", p.GetValue(EvalEvery), 0, " (0: only at the end)");
        OptionCheck.AtLeast("--eval-tokens", p.GetValue(EvalTokens), 1);
        OptionCheck.AtLeast("--save-every", p.GetValue(SaveEvery), 0, " (0: only at the end)");
        OptionCheck.AtLeast("--keep", p.GetValue(Keep), 1);
        var schedule = new LrSchedule(
            LrSchedule.ParseKind(p.GetValue(Schedule)!), lr, minLr, p.GetValue(Warmup) ?? Math.Max(1, steps / 20), steps, decay);
        return new TrainOptions
        {
            RunDir = p.GetValue(Out)!, SeqLen = seqLen, MicroBatch = b, GradAccum = accum, Steps = steps, Schedule = schedule,
            Adam = new AdamWSettings(lr, p.GetValue(Beta1), p.GetValue(Beta2), 1e-8f, p.GetValue(WeightDecay)),
            ClipNorm = p.GetValue(Clip), EvalEvery = p.GetValue(EvalEvery), EvalTokens = p.GetValue(EvalTokens),
            SaveEvery = p.GetValue(SaveEvery), KeepCheckpoints = p.GetValue(Keep), Seed = p.GetValue(Seed), TokenizerFile = tokenizerFile,
            RunInfo = new Dictionary<string, string> { ["precision"] = PrecisionNames.Parse(p.GetValue(Precision)!, "--precision").Name() },
        };
    }

    /// <summary>
    /// Puts the frozen teacher at --teacher-precision (default bf16 on CUDA, fp32 on the CPU, where bf16 is an emulation
    /// and only slower) and records it in the run's metadata.
    /// </summary>
    public TrainOptions WithTeacherPrecision(ParseResult p, LanguageModel teacher, TrainOptions o)
    {
        var precision = p.GetValue(TeacherPrecision) is { } s ? PrecisionNames.Parse(s, "--teacher-precision")
            : teacher.Backend.Device == Native.Tensors.Device.Cuda ? Native.Model.Precision.Bf16 : Native.Model.Precision.F32;
        CliCommon.SetPrecision(teacher, precision);
        return o with { RunInfo = new Dictionary<string, string>(o.RunInfo) { ["teacher_precision"] = precision.Name() } };
    }

    /// <summary>The tokenizer copy inside the dataset directory (written by `whittle tokenize`), if present.</summary>
    public static string? TokenizerOf(TokenDataset data) =>
        Path.Combine(data.Directory, DatasetWriter.TokenizerCopyName) is var p && File.Exists(p) ? Path.GetFullPath(p) : null;

    /// <summary>Refuses a model directory whose tokenizer.json differs from the dataset's tokenizer.</summary>
    public static void RequireSameTokenizer(string modelDir, TokenDataset data)
    {
        var tok = Path.Combine(modelDir, "tokenizer.json");
        if (File.Exists(tok)) data.RequireTokenizer(Native.Tokenization.Tokenizer.FromFile(tok).Sha256, tok);
    }

    /// <summary>
    /// Refuses, before any weight is read, a model directory (<paramref name="role"/>: "teacher", "student", ...) that
    /// cannot read the dataset's tokens: another tokenizer.json, or a vocab_size below the dataset tokenizer's size.
    /// </summary>
    public static void RequireModelFitsData(string modelDir, ModelConfig config, string role, TokenDataset data)
    {
        RequireSameTokenizer(modelDir, data);
        if (data.Meta.VocabSize > config.VocabSize)
            throw new WhittleException($"{modelDir}: the {role}'s vocab_size is {config.VocabSize}, smaller than the vocabulary of the " +
                $"dataset's tokenizer ({data.Meta.VocabSize}, {data.Directory}); the model needs the dataset's tokenizer");
    }

    /// <summary>
    /// The part every training command shares once its models are built: --resume (or refuse an occupied run
    /// directory), a header line, the training loop with progress, final/ (with the tokenizer) and the summary
    /// (text, or JSON with <paramref name="extraJson"/>'s fields added).
    /// </summary>
    public int Train(ParseResult p, Trainer trainer, LanguageModel model, TrainOptions o, IBackend backend, string label, string header,
        LossFunction? loss = null, Action<JsonObject>? extraJson = null, StepRunner? runner = null)
    {
        bool json = p.GetValue(CliCommon.Json);
        var log = json ? Console.Error : Console.Out;
        CliCommon.SetPrecision(model, PrecisionNames.Parse(p.GetValue(Precision)!, "--precision"));
        model.LossChunkRows = p.GetValue(LossChunkRows);
        // Before anything in --out is read or written (options and models are validated by now, so a refused run
        // leaves no trace): one writer per run directory, and an interrupted save's leftovers gone before resuming.
        CliCommon.TakeRunDirectory(o.RunDir, p.CommandResult.Command.Name);
        if (!p.GetValue(Resume)) trainer.RequireFreshRunDirectory();
        else if (trainer.TryResume()) log.WriteLine($"resumed at step {trainer.Step} from {trainer.Checkpoints.Latest()!.Value.Path}");
        log.WriteLine(header + "; " + string.Join(", ", o.RunInfo.Select(kv => $"{kv.Key.Replace('_', ' ')} {kv.Value}")));
        var evals = RunWithProgress(trainer, label, json, backend, DevicePeak.TrainFlopsPerToken(model.Config, o.SeqLen), loss, runner);
        if (evals.Count == 0) evals = [trainer.Evaluate(trainer.Step)];   // --resume found the run complete
        var final = Path.Combine(o.RunDir, "final");
        ModelCheckpoint.Save(model, final, extraFiles: o.TokenizerFile is { } tf ? [tf] : null);
        var last = evals[^1];
        if (!json)
        {
            Console.WriteLine($"done: val loss {last.ValLoss:F4} (perplexity {last.Perplexity:F2}); model in {final}");
            return 0;
        }
        var summary = new JsonObject
        {
            ["run_dir"] = Path.GetFullPath(o.RunDir), ["final_model"] = Path.GetFullPath(final), ["steps"] = trainer.Step,
            ["tokens"] = (long)trainer.Step * o.TokensPerStep, ["parameters"] = model.Config.CountParameters().Total,
            ["val_loss"] = last.ValLoss, ["val_perplexity"] = last.Perplexity,
            ["evaluations"] = new JsonArray(
                evals.Select(
                e => (JsonNode)new JsonObject { ["step"] = e.Step, ["tokens"] = e.TokensSeen, ["val_loss"] = e.ValLoss,
                ["val_perplexity"] = e.Perplexity }).ToArray()),
        };
        foreach (var (k, v) in o.RunInfo) summary[k] = v;
        extraJson?.Invoke(summary);
        Console.WriteLine(summary.ToJsonString(CliCommon.JsonOptions));
        return 0;
    }

    /// <summary>
    /// Runs a trainer and reports: one plain line per step (llm.c style) when stdout is not a terminal, a Spectre
    /// progress bar carrying the same line when it is; with --json a final JSON summary. Returns the evaluations.
    /// </summary>
    public static IReadOnlyList<EvalRecord> RunWithProgress(
        Trainer trainer, string label, bool json, IBackend backend, long flopsPerToken, LossFunction? loss = null,
        StepRunner? runner = null)
    {
        runner ??= (onStep, onEval) => trainer.Run(loss, onStep, onEval);
        double peak = DevicePeak.Flops(backend);
        string Line(StepRecord r)
        {
            string extra = string.Concat(r.Extra.Select(kv => $" | {kv.Key} {kv.Value:F4}"));
            string mfu = peak > 0 ? $" | MFU {100 * flopsPerToken * r.TokensPerSecond / peak:F1}%" : "";
            return $"step {r.Step,5}/{r.Steps} | loss {r.Loss:F4}{extra} | lr {r.Lr:0.00e+00} | norm {r.GradNorm:F3} | " +
                $"{r.Milliseconds:F0} ms | {r.TokensPerSecond:N0} tok/s{mfu}";
        }
        string EvalLine(EvalRecord e) =>
            $"eval step {e.Step} | val loss {e.ValLoss:F4} | val ppl {e.Perplexity:F2} | {e.TokensSeen:N0} tokens";
        var log = json ? Console.Error : Console.Out;
        if (!Console.IsOutputRedirected && !json)
        {
            IReadOnlyList<EvalRecord> result = [];
            AnsiConsole.Progress().AutoClear(false).Columns(
                new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(label);
                    result = runner(r =>
                    {
                        task.MaxValue = r.Steps; task.Value = r.Step;
                        task.Description = Markup.Escape(Line(r));
                    }, e => AnsiConsole.MarkupLine(Markup.Escape(EvalLine(e))));
                });
            return result;
        }
        return runner(r => log.WriteLine(Line(r)), e => log.WriteLine(EvalLine(e)));
    }
}

/// <summary>How a command runs its trainer with the progress callbacks (default: <see cref="Trainer.Run(LossFunction?,
/// Action{StepRecord}?, Action{EvalRecord}?, CancellationToken)"/> with the command's loss).</summary>
delegate IReadOnlyList<EvalRecord> StepRunner(Action<StepRecord> onStep, Action<EvalRecord> onEval);

/// <summary>
/// Range checks for numeric options, each naming the option and what it accepts. NaN fails every comparison, so each
/// check is written as "must hold" (!(x >= 0)), never as "must not hold" (x < 0), which NaN would pass.
/// </summary>
static class OptionCheck
{
    static string Show(float x) => x.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static float Positive(string option, float x, string note = "") =>
        x > 0 && float.IsFinite(x) ? x : throw new WhittleException($"{option} must be a finite number > 0{note}, got {Show(x)}");

    public static float NonNegative(string option, float x, string note = "") =>
        x >= 0 && float.IsFinite(x) ? x : throw new WhittleException($"{option} must be a finite number >= 0{note}, got {Show(x)}");

    /// <summary>[0, 1): Adam's betas (β = 1 never forgets and divides by zero in the bias correction).</summary>
    public static float UnitInterval(string option, float x) =>
        x >= 0 && x < 1 ? x : throw new WhittleException($"{option} must be in [0, 1), got {Show(x)}");

    public static long AtLeast(string option, long x, long min, string note = "") =>
        x >= min ? x : throw new WhittleException($"{option} must be >= {min}{note}, got {x}");
}

/// <summary>Peak dense bf16 tensor-core rates of known GPUs, the reference MFU is quoted against (llm.c's convention); 0 when unknown
/// (CPU).</summary>
static class DevicePeak
{
    public static double Flops(IBackend backend)
    {
        if (backend.Device != Native.Tensors.Device.Cuda) return 0;
        string n = backend.Name;
        if (n.Contains("H100") || n.Contains("H200") || n.Contains("H800")) return 989e12;
        if (n.Contains("A100") || n.Contains("A800")) return 312e12;
        return 0;
    }

    /// <summary>Training FLOPs per token: 6N (forward + backward through the weights) + 6·L·T·d (attention scores and mixing), N =
    /// non-embedding + output projection.</summary>
    public static long TrainFlopsPerToken(ModelConfig c, int seqLen)
    {
        var count = c.CountParameters();
        long n = count.NonEmbedding + (long)c.VocabSize * c.HiddenSize;
        return 6 * n + 6L * c.NumLayers * seqLen * c.HiddenSize;
    }
}
