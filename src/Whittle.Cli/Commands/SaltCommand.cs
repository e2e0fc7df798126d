namespace Whittle.Cli;

/// <summary>`whittle salt`: a small model helps a larger one for the first n_KD steps (arXiv 2410.18779).</summary>
static class SaltCommand
{
    public static Command Create()
    {
        var cmd = new Command("salt", """
            Small-model-aided large-model training (SALT). For the first --kd-steps steps the large model's loss is
            (1−ω)·CE + ω·KL(p_small‖p_large) at τ = 1 (weights per --schedule), then plain CE; the optimizer state and LR
            schedule run on across the switch. Checkpoints are kept at the switch, 70% and 100% of the steps, and the model is
            evaluated there too, so a --baseline run (same flags, no small model) can be compared step for step. The small
            model is fixed, so its soft labels can come from a `whittle cache-teacher` cache instead (--teacher-cache).
            """);
        var t = new TrainingCli();
        t.AddTo(cmd);
        var small = new Option<string?>("--small") { Description = "The small (teacher) model directory (or give --teacher-cache)." };
        var cache = new Option<string?>("--teacher-cache")
        {
            Description = "Instead of --small: the small model's top-k soft labels from `whittle cache-teacher` (built from the small " +
                "model with --temperature 1 and this run's --seed, --batch-size and --seq-len, for at least --kd-steps steps), so the " +
                "KD phase runs no small-model forward. The KD term is then the forward KL over the top-k and one tail bucket (k = the " +
                "vocabulary: the full KL, up to the cache's f16 rounding).",
        };
        var topK = new Option<int?>("--top-k")
        {
            Description = "KD against the small model's k most probable tokens plus one bucket for the rest (default: the whole " +
                "distribution; with --teacher-cache, the cache's k).",
        };
        var large = new Option<string?>("--large") { Description = "Start the large model from this directory." };
        var largeConfig = new Option<string?>("--large-config") { Description = "A config.json for a new large model (or use the " +
            "architecture flags)." };
        var kdSteps = new Option<int>("--kd-steps") { Description = "n_KD: steps with the small model's help.", Required = true };
        var omega = new Option<float>("--omega") { Description = "ω: the KD weight, in [0, 1].", DefaultValueFactory = _ => 0.5f };
        var schedule = new Option<string>("--schedule") { Description = "step (ω, then 0 at n_KD) | linear (ω decays to 0 at n_KD) | " +
            "linear-ratio (CE weight 1, KD weight decays to 0).", DefaultValueFactory = _ => "step" };
        var select = new Option<string?>("--select") { Description = "SALT_DS: a selection from `whittle salt-select`; the KD phase " +
            "trains on those windows only." };
        var baseline = new Option<bool>("--baseline") { Description = "Train the same large model without the small model (same steps, " +
            "data, evaluations)." };
        var arch = new ArchitectureOptions();
        foreach (var o in new Option[] { small, cache, topK, large, largeConfig, kdSteps, omega, schedule, select, baseline })
            cmd.Options.Add(o);
        cmd.Options.Add(t.TeacherPrecision);
        arch.AddTo(cmd); arch.AddFamilyTo(cmd);
        cmd.SetAction(p =>
        {
            bool isBaseline = p.GetValue(baseline);
            string? smallDir = p.GetValue(small), cacheDir = p.GetValue(cache);
            if (isBaseline && cacheDir is not null)
                throw new WhittleException("--baseline trains without the small model; drop --teacher-cache");
            if (!isBaseline && (smallDir is null) == (cacheDir is null))
                throw new WhittleException(
                    "give exactly one of --small DIR or --teacher-cache DIR (or --baseline for the run without a small model)");
            if (p.GetValue(topK) is { } k0 && k0 < 1) throw new WhittleException($"--top-k must be at least 1, got {k0}");
            var manifest = cacheDir is null ? null : TeacherCacheManifest.Load(cacheDir);
            if (manifest is not null) RequireCacheFitsSalt(manifest, cacheDir!, p.GetValue(topK), p.GetValue(select) is not null);
            var saltSchedule = SaltWeights.Parse(p.GetValue(schedule)!);
            var o = t.Options(p, tokenizerFile: null);   // every option checked before the dataset is opened
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            o = o with { TokenizerFile = TrainingCli.TokenizerOf(data) };
            int n = p.GetValue(kdSteps);
            var weights = SaltWeights.Create(saltSchedule, isBaseline ? 0f : p.GetValue(omega), n, o.Steps);   // validates ω and n_KD first
            // The cache's dataset digest covers the tokenizer (meta.json records its SHA-256); its batches must be this run's.
            manifest?.RequireFits(cacheDir!, data, o.MicroBatch, o.SeqLen, o.Seed, n, o.GradAccum);
            int seventy = Math.Max(1, (int)Math.Round(0.7 * o.Steps));
            var milestones = new HashSet<int> { seventy, o.Steps };
            if (n > 0) milestones.Add(n);
            o = o with { MilestoneSteps = milestones, EvalSteps = milestones };
            if (p.GetValue(select) is { } selFile && !isBaseline)
            {
                var sel = SaltResult.Load(selFile);
                if (sel.SeqLen != o.SeqLen)
                    throw new WhittleException($"{selFile}: selection was made with --seq-len {sel.SeqLen}, this run uses {o.SeqLen}");
                // Bounds by division first: a hostile window index times (T + 1) must not overflow into a "fitting" start.
                if (sel.Selected.Count == 0 || sel.Windows > data.Train.Length / (sel.SeqLen + 1)
                    || sel.Selected.Any(w => w.Window >= sel.Windows))
                    throw new WhittleException($"{selFile}: selected windows do not fit this dataset's training split");
                var starts = sel.Selected.Select(w => SaltSelection.WindowStart(w.Window, sel.SeqLen)).ToList();
                if (!string.Equals(
                    SaltSelection.DatasetHash(data.Train, sel.SeqLen, sel.Windows), sel.DatasetSha256, StringComparison.OrdinalIgnoreCase))
                    throw new WhittleException($"{selFile}: the selection was scored on other data (dataset_sha256 differs from this " +
                        $"dataset's training split); run salt-select on {data.Directory}");
                o = o with { SelectedWindows = starts, SelectedUntilStep = n };
            }
            var smallConfig = smallDir is null || isBaseline ? null : ModelConfig.Load(smallDir);
            if (smallConfig is not null)
            {
                smallConfig.RequireContext(o.SeqLen, "the small model's");
                TrainingCli.RequireModelFitsData(smallDir!, smallConfig, "small model", data);
            }
            var largeCfg = LargeConfig(p, large, largeConfig, arch, data, o);
            // The KD term compares the two distributions id by id: one vocabulary (the cache's is checked by FromCache).
            if (smallConfig is not null)
                DistillationLoss.RequireSameVocabulary(smallConfig.VocabSize, largeCfg.VocabSize, "small model", "large model");
            if (manifest is not null)
                DistillationLoss.RequireSameVocabulary(manifest.Vocab, largeCfg.VocabSize, "cached small model", "large model");
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var smallModel = smallConfig is null ? null : ModelCheckpoint.Load(smallConfig, smallDir!, backend);
            if (smallModel is not null) o = t.WithTeacherPrecision(p, smallModel, o);
            using var largeModel = p.GetValue(large) is { } largeDir ? ModelCheckpoint.Load(largeCfg, largeDir, backend)
                : ArchitectureOptions.NewModel(largeCfg, data, backend, o.Seed);
            // SALT's KD term: forward KL at τ = 1; the weights per step come from the schedule (null after n_KD: plain CE).
            var settings = new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 0f);
            LossFunction? loss = isBaseline ? null
                : manifest is not null ? DistillationLoss.FromCache(largeModel, cacheDir!, manifest, settings, o.GradAccum, weights)
                : DistillationLoss.Create(largeModel, smallModel!, settings, p.GetValue(topK) ?? 0, weights);

            using var trainer = new Trainer(largeModel, data, o);
            string helper = manifest is not null ? $"the top-{manifest.TopK} cache {cacheDir} of {manifest.Teacher}"
                : smallModel is null ? ""   // --baseline: no helper to name
                : $"{smallModel.Config.ModelType} {smallModel.Config.CountParameters().Total:N0}"
                    + (p.GetValue(topK) is { } k ? $" (top-{k})" : "");
            string largeText = $"{largeModel.Config.ModelType} large model {largeModel.Config.CountParameters().Total:N0} parameters";
            string header = isBaseline
                ? $"salt baseline: {largeText}, {o.Steps} steps, no small model"
                : $"salt: {largeText} helped by {helper} for {n} of {o.Steps} "
                    + $"steps (ω = {p.GetValue(omega)}, {p.GetValue(schedule)})"
                    + (o.SelectedWindows is { } s ? $" on {s.Count} selected windows" : "");
            return t.Train(p, trainer, largeModel, o, backend, isBaseline ? "baseline" : "salt", header, loss, summary =>
            {
                summary["kd_steps"] = isBaseline ? 0 : n;
                if (manifest is not null) { summary["teacher_cache"] = Path.GetFullPath(cacheDir!); summary["top_k"] = manifest.TopK; }
            });
        });
        return cmd;
    }

    /// <summary>
    /// What a teacher cache must hold for SALT, checked before any work (RequireFits then checks the batch layout and the
    /// dataset): SALT's KD term is at τ = 1, k is the cache's, and SALT_DS's selected batches are not the ones it walked.
    /// </summary>
    static void RequireCacheFitsSalt(TeacherCacheManifest m, string dir, int? topK, bool select)
    {
        var where = Path.Combine(dir, TeacherCacheManifest.FileName);
        if (m.Temperature != 1f)
            throw new WhittleException($"{where}: the cache was built at temperature {m.Temperature}, but SALT's KD term is at τ = 1; "
                + "rebuild it with `whittle cache-teacher --temperature 1`");
        if (topK is { } k && k != m.TopK)
            throw new WhittleException($"{where}: the cache holds the top-{m.TopK}, but --top-k {k} was given; "
                + $"rebuild it with `whittle cache-teacher --top-k {k}` or drop --top-k");
        if (select)
            throw new WhittleException("--select draws the KD phase's batches from the selection, which a teacher cache does not hold "
                + "(it walks the run's ordinary batches); use --small with --select");
    }

    /// <summary>
    /// The large model's config, checked against the dataset before any weight is read: that of --large, of --large-config,
    /// or of the architecture flags (any family, the dataset's vocabulary).
    /// </summary>
    static ModelConfig LargeConfig(
        ParseResult p, Option<string?> large, Option<string?> largeConfig, ArchitectureOptions arch, TokenDataset data, TrainOptions o)
    {
        if (p.GetValue(large) is { } dir)
        {
            var c = ModelConfig.Load(dir);
            TrainingCli.RequireModelFitsData(dir, c, "large model", data);
            return c;
        }
        return p.GetValue(largeConfig) is { } f ? ModelConfig.Load(f)
            : arch.FamilyConfig(p, data.Meta.VocabSize, data.Meta.BosId, data.Meta.EosId, o.SeqLen);
    }
}
