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
            evaluated there too, so a --baseline run (same flags, no small model) can be compared step for step.
            """);
        var t = new TrainingCli();
        t.AddTo(cmd);
        var small = new Option<string?>("--small") { Description = "The small (teacher) model directory." };
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
        foreach (var o in new Option[] { small, large, largeConfig, kdSteps, omega, schedule, select, baseline, t.TeacherPrecision })
            cmd.Options.Add(o);
        arch.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool isBaseline = p.GetValue(baseline);
            string? smallDir = p.GetValue(small);
            if (!isBaseline && smallDir is null) throw new WhittleException("--small is required (or --baseline for the run without it)");
            var saltSchedule = SaltWeights.Parse(p.GetValue(schedule)!);
            var o = t.Options(p, tokenizerFile: null);   // every option checked before the dataset is opened
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            o = o with { TokenizerFile = TrainingCli.TokenizerOf(data) };
            int n = p.GetValue(kdSteps);
            var weights = SaltWeights.Create(saltSchedule, isBaseline ? 0f : p.GetValue(omega), n, o.Steps);   // validates ω and n_KD first
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
            if (smallDir is not null)
            {
                GptNeoXConfig.Load(smallDir).RequireContext(o.SeqLen, "the small model's");
                TrainingCli.RequireSameTokenizer(smallDir, data);
            }
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var smallModel = isBaseline ? null : GptNeoXCheckpoint.Load(smallDir!, backend);
            if (smallModel is not null) o = t.WithTeacherPrecision(p, smallModel, o);
            using var largeModel = BuildLarge(p, large, largeConfig, arch, data, backend, o);
            LossFunction? loss = smallModel is null ? null
                : DistillationLoss.Create(largeModel, smallModel, new DistillSettings(DistillKind.ForwardKl, 1f, 1f, 0f), 0, weights);

            using var trainer = new Trainer(largeModel, data, o);
            string header = isBaseline
                ? $"salt baseline: large model {ParameterCount.Of(largeModel.Config).Total:N0} parameters, {o.Steps} steps, no small model"
                : $"salt: large model {ParameterCount.Of(largeModel.Config).Total:N0} parameters helped by " +
                    $"{ParameterCount.Of(smallModel!.Config).Total:N0} for {n} of {o.Steps} steps (ω = {p.GetValue(omega)}, " +
                    $"{p.GetValue(schedule)}){(o.SelectedWindows is { } s ? $" on {s.Count} selected windows" : "")}";
            return t.Train(
                p, trainer, largeModel, o, backend, isBaseline ? "baseline" : "salt", header, loss,
                summary => summary["kd_steps"] = isBaseline ? 0 : n);
        });
        return cmd;
    }

    static GptNeoX BuildLarge(
        ParseResult p, Option<string?> large, Option<string?> largeConfig, ArchitectureOptions arch, TokenDataset data, IBackend backend,
        TrainOptions o)
    {
        if (p.GetValue(large) is { } dir) { TrainingCli.RequireSameTokenizer(dir, data); return GptNeoXCheckpoint.Load(dir, backend); }
        var c = p.GetValue(largeConfig) is { } f ? GptNeoXConfig.Load(f) : arch.Config(p, data.Meta.VocabSize, data.Meta.EosId, o.SeqLen);
        return GptNeoX.CreateRandom(c, backend, o.Seed);
    }
}
