using Whittle.Native.Search;

namespace Whittle.Cli;

/// <summary>
/// `whittle train-supernet`: the first stage of whittle's two-stage NAS. Continues training a model as a weight-sharing
/// supernet (sandwich, random or standard strategy), sub-networks drawn from a search space, optionally with in-place
/// distillation from the whole network. The training flags, checkpoints, resume and progress are pretrain's; the run's
/// supernet settings are kept in RUN/supernet.json so a resume with different ones is refused.
/// </summary>
static class TrainSupernetCommand
{
    const string SettingsFile = "supernet.json";

    public static Command Create()
    {
        var cmd = new Command("train-supernet",
            "Train a model as a weight-sharing supernet (whittle's sandwich, random or standard strategy) so its sub-networks are good " +
            "on their own. Writes checkpoints/, metrics.jsonl (each sampled sub-network's size and loss per step), supernet.json and " +
            "final/ in --out.");
        var t = new TrainingCli();
        t.AddTo(cmd);
        var model = new Option<string>("--model") { Description = "The model to train as a supernet (a GPT-NeoX model directory).",
            Required = true };
        var space = new Option<string>("--space") { Description = "Search space the sub-networks come from: uniform | per-layer | layers.",
            DefaultValueFactory = _ => "uniform" };
        var strategy = new Option<string>("--strategy")
        {
            Description = "sandwich: the whole network, --random-subnets random sub-networks and the smallest every step; random: " +
                "--random-subnets random sub-networks; standard: the whole network only (plain training).",
            DefaultValueFactory = _ => "sandwich",
        };
        strategy.AcceptOnlyFromAmong("sandwich", "random", "standard");
        var randomSubnets = new Option<int?>("--random-subnets") { Description = "Random sub-networks per step (default: sandwich 2, " +
            "random 1, standard 0)." };
        var inplaceKd = new Option<bool>("--inplace-kd") { Description = "The whole network's logits (detached, same step) teach the " +
            "sampled sub-networks: loss α·CE + β·KL(whole ‖ sub-network)." };
        var alpha = new Option<float>("--kd-alpha") { Description = "--inplace-kd: weight of the cross-entropy term.",
            DefaultValueFactory = _ => 0.5f };
        var beta = new Option<float>("--kd-beta") { Description = "--inplace-kd: weight of the KL term.", DefaultValueFactory = _ => 0.5f };
        var temperature = new Option<float>("--kd-temperature") { Description = "--inplace-kd: softmax temperature of the KL term.",
            DefaultValueFactory = _ => 1f };
        var bins = new Option<int>("--stratify-bins") { Description = "Draw random sub-networks stratified: a parameter bin first " +
            "(N equal-width bins between the smallest and largest sub-network's total parameters), then a sub-network in it (0: off).",
            DefaultValueFactory = _ => 0 };
        var stepSizes = new StepSizeOptions();
        foreach (var o in new Option[] { model, space, strategy, randomSubnets, inplaceKd, alpha, beta, temperature, bins, stepSizes.Embed,
                     stepSizes.Heads, stepSizes.Intermediate })
            cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var options = t.Options(p, tokenizerFile: null);
            var kind = SearchSpace.ParseKind(p.GetValue(space)!);
            var strat = p.GetValue(strategy) switch
            {
                "sandwich" => SupernetStrategy.Sandwich, "random" => SupernetStrategy.Random, _ => SupernetStrategy.Standard,
            };
            int k = p.GetValue(randomSubnets) ?? strat switch { SupernetStrategy.Sandwich => 2, SupernetStrategy.Random => 1, _ => 0 };
            DistillSettings? kd = null;
            if (p.GetValue(inplaceKd))
            {
                if (strat == SupernetStrategy.Standard)
                    throw new WhittleException("--inplace-kd needs sub-networks to teach: use --strategy sandwich or random");
                float tau = OptionCheck.Positive("--kd-temperature", p.GetValue(temperature));
                kd = new DistillSettings(DistillKind.ForwardKl, tau, OptionCheck.NonNegative("--kd-alpha", p.GetValue(alpha)),
                    OptionCheck.NonNegative("--kd-beta", p.GetValue(beta)));
                if (p.GetValue(t.LossChunkRows) > 0)
                    throw new WhittleException("--inplace-kd keeps the whole network's (N, V) logits: it cannot be combined with " +
                        "--loss-chunk-rows");
            }
            string modelDir = p.GetValue(model)!;
            var config = ModelConfig.Load(modelDir);
            var steps = stepSizes.Parse(p);
            // The space's budget window is not used by sampling: the whole parent, any tolerance.
            var searchSpace = new SearchSpace(config, kind, ParameterCount.Of(config).Total, 0.5, steps);
            var sampler = new SubnetSampler(searchSpace, strat, k, options.Seed, p.GetValue(bins));
            var settingsJson = SettingsJson(p.GetValue(space)!, p.GetValue(strategy)!, k, p.GetValue(bins), steps, kd);
            if (kd is null && (IsGiven(p, alpha) || IsGiven(p, beta) || IsGiven(p, temperature)))
                throw new WhittleException("--kd-alpha, --kd-beta and --kd-temperature apply with --inplace-kd only");

            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            TrainingCli.RequireSameTokenizer(modelDir, data);
            options = options with
            {
                TokenizerFile = TrainingCli.TokenizerOf(data),
                RunInfo = new Dictionary<string, string>(options.RunInfo) { ["supernet"] = settingsJson.ToJsonString() },
            };
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var lm = ModelCheckpoint.Load(modelDir, backend);
            using var trainer = new Trainer(lm, data, options);
            var step = SupernetTraining.Create(lm, new SupernetSettings(sampler, kd));
            RecordSettings(options.RunDir, settingsJson);
            var counts = lm.Config.CountParameters();
            var subnetEvals = new Lazy<JsonArray>(() => EvaluateSubnets(lm, data, options, searchSpace));
            int code = t.Train(p, trainer, lm, options, backend, "train-supernet",
                $"train-supernet: {counts.Total:N0} parameters on {backend.Name}, {options.Steps} steps × {options.TokensPerStep:N0} " +
                    $"tokens; strategy {p.GetValue(strategy)}, {k} random sub-networks, space {p.GetValue(space)}" +
                    (kd is { } s ? $", in-place KD {s.Alpha}·CE + {s.Beta}·KL (τ = {s.Temperature})" : ""),
                extraJson: j => { j["supernet"] = settingsJson; j["subnets"] = subnetEvals.Value; },
                runner: (onStep, onEval) => trainer.Run(step, onStep, onEval, annotate: SupernetTraining.Annotator(sampler)));
            if (!p.GetValue(CliCommon.Json))
                foreach (var e in subnetEvals.Value)
                    Console.WriteLine($"{e!["name"],-9} {e["params"],12:N0} parameters | val loss {e["val_loss"]!.GetValue<double>():F4}");
            return code;
        });
        return cmd;
    }

    static bool IsGiven(ParseResult p, Option o) => p.GetResult(o) is { Implicit: false };

    static JsonObject SettingsJson(string space, string strategy, int k, int bins, StepSizes steps, DistillSettings? kd)
    {
        var o = new JsonObject
        {
            ["space"] = space, ["strategy"] = strategy, ["random_subnets"] = k, ["stratify_bins"] = bins,
            ["embed_step"] = steps.Embed, ["head_step"] = steps.Heads, ["intermediate_step"] = steps.Intermediate,
            ["inplace_kd"] = kd is not null,
        };
        if (kd is { } s) { o["kd_alpha"] = s.Alpha; o["kd_beta"] = s.Beta; o["kd_temperature"] = s.Temperature; }
        return o;
    }

    /// <summary>
    /// Writes RUN/supernet.json for a new run; for a run directory that has one, requires the same settings (a resume that
    /// sampled differently would not continue the run it resumes).
    /// </summary>
    static void RecordSettings(string runDir, JsonObject settings)
    {
        string path = Path.Combine(runDir, SettingsFile);
        if (File.Exists(path))
        {
            JsonField.Load(path).RequireObject();   // well-formed, bounded depth, an object: parsing it again is safe
            var recorded = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            foreach (var (key, value) in settings)
            {
                var had = recorded[key];
                if (!JsonNode.DeepEquals(had, value))
                    throw new WhittleException($"{path}: {key} is {had?.ToJsonString() ?? "missing"}, this run asks for " +
                        $"{value!.ToJsonString()}; resume with the run's settings or choose another --out");
            }
            return;
        }
        Directory.CreateDirectory(runDir);
        AtomicFile.WriteAllText(path, settings.ToJsonString(CliCommon.JsonOptions) + "\n");
    }

    /// <summary>Validation loss of the whole network and of the space's smallest sub-network, on the trainer's evaluation
    /// windows.</summary>
    static JsonArray EvaluateSubnets(LanguageModel model, TokenDataset data, TrainOptions o, SearchSpace space)
    {
        var result = new JsonArray();
        foreach (var (name, genome) in new[] { ("largest", space.Largest()), ("smallest", space.Smallest()) })
        {
            var a = space.ToArchitecture(genome);
            var r = Perplexity.Evaluate(model, data.Val, o.SeqLen + 1, o.MicroBatch, o.EvalTokens, a);
            result.Add((JsonNode)new JsonObject
            {
                ["name"] = name, ["params"] = ParameterCount.Of(space.Parent, a).Total, ["val_loss"] = r.Loss,
                ["val_perplexity"] = Math.Exp(r.Loss), ["architecture"] = SubnetSpec.ToJson(a),
            });
        }
        return result;
    }
}
