using System.Diagnostics;
using System.Globalization;
using Whittle.Native.Demo;

namespace Whittle.Cli;

/// <summary>
/// Model and run sizes of one demo preset (quick: the README's first command, every effect in under a minute on a 2-core
/// CPU; default: minutes on a 2-core CPU; large: a GPU). Search: the space, evaluations per strategy, the evolution's population
/// (below the evaluations, so some candidates are bred rather than sampled), its mutation rate and the grid steps of
/// embed_dim and MLP width.
/// SaltSmallSteps > 0 trains SALT's small model in a stage of its own (the searched architecture from random
/// initialisation, for that many steps) instead of lending it the random-init student: as in the paper, the small model
/// is trained to the end, so it is ahead of the large model early.
/// </summary>
sealed record DemoPreset(string Name, int Layers, int Hidden, int Heads, int Intermediate, int SeqLen, int Batch, float Lr,
    int TeacherSteps, int EvalEvery, long EvalTokens, int SearchEvaluations, long SearchEvalTokens, double BudgetRatio, int StudentSteps,
    int StudentEvalEvery, double SaltKdFraction, float Omega, string SearchSpace = "uniform", int SearchPopulation = 16,
        double SearchMutation = 0.3, int EmbedStep = 16, int IntermediateStep = 32, int SaltSmallSteps = 0)
{
    public static DemoPreset Get(string name) => name switch
    {
        // Sized by the seed sweep in bench/RESULTS.md (`whittle demo --preset quick --seeds 0-4`): students trained for 40
        // steps (longer, they pass the 120-step teacher and distilling from it stops helping); a per-layer search space
        // with fine grids and 40 evaluations, where random search rarely lands on the best sub-network but evolution
        // (population 8, so 32 of the 40 are bred) climbs to it; SALT's small model trained 160 steps.
        "quick" => new("quick", 2, 64, 4, 256, 64, 8, 3e-3f, 120, 12, 4096, 40, 2048, 0.25, 40, 4, 0.3, 0.5f,
            SearchSpace: "per-layer", SearchPopulation: 8, SearchMutation: 0.5, EmbedStep: 8, IntermediateStep: 8, SaltSmallSteps: 160),
        "default" => new("default", 3, 96, 4, 384, 128, 8, 3e-3f, 400, 20, 8192, 24, 8192, 0.25, 300, 20, 0.3, 0.5f),
        "large" => new("large", 6, 512, 8, 2048, 256, 16, 1e-3f, 2000, 100, 65536, 50, 32768, 0.25, 1500, 100, 0.3, 0.5f),
        _ => throw new WhittleException($"unknown --preset '{name}' (expected quick, default or large)"),
    };

    public string[] Architecture => ["--layers", I(Layers), "--hidden", I(Hidden), "--heads", I(Heads), "--intermediate", I(Intermediate)];
    public string[] Batch_ => ["--seq-len", I(SeqLen), "--batch-size", I(Batch), "--lr", F(Lr), "--eval-tokens", I(EvalTokens)];
    public int SaltKdSteps => (int)Math.Round(TeacherSteps * SaltKdFraction / EvalEvery) * EvalEvery;   // on the evaluation grid
    static string I(long x) => x.ToString(CultureInfo.InvariantCulture);
    static string F(float x) => x.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// `whittle demo`: both papers' claims, end to end, on the bundled Austen corpus, by running the same subcommands a user
/// would (each printed before it runs). Every stage's output lives in the run directory and a finished stage is marked
/// (.stage.json), so an interrupted demo resumes: finished stages are skipped, training stages continue from their last
/// checkpoint. The last stage writes report.md, report.html and results.json.
/// </summary>
static class DemoCommand
{
    /// <summary>
    /// k of the --salt-cache arm's cache: 6·k bytes a token (f16 log-prob and i32 id), 384 B at k = 64 against 24 KiB for all
    /// 4096 tokens of the demo's vocabulary; its KD term is the forward KL over the top-64 and one tail bucket.
    /// </summary>
    const int SaltCacheTopK = 64;

    public static Command Create()
    {
        var device = CliCommon.DeviceOption();
        var preset = new Option<string>("--preset") { Description = "quick (34.9 s on 2 shared CPU cores; all three effects in each of " +
            "seeds 0-9, the search not in 3 of seeds 10-14: bench/RESULTS.md) | default (3 min 44 s on 2 CPU cores) | large (a GPU).",
            DefaultValueFactory = _ => "default" };
        var outDir = new Option<string>("--out") { Description = "Run directory (reused: finished stages are not run again).",
            DefaultValueFactory = _ => "runs/demo" };
        var seed = new Option<int>("--seed") { Description = "Added to every stage's seed (data split, initialisations, data order, " +
            "search), to see whether the effects hold beyond one draw.", DefaultValueFactory = _ => 0 };
        var seeds = new Option<string?>("--seeds") { Description = "A seed sweep: run the demo once per seed (a range 0-4 or a list " +
            "0,3,7) into --out/seed-N and print a table of the three effects in every seed." };
        var saltCache = new Option<bool>("--salt-cache")
        {
            Description = $"Add a SALT arm whose KD phase reads the small model's soft labels from a top-{SaltCacheTopK} " +
                "`cache-teacher` cache instead of running it (`salt --teacher-cache`): one more SALT run and the cache's build, so off " +
                "by default.",
        };
        var cmd = new Command("demo", """
            Reproduce Whittle and SALT end to end on the bundled Austen corpus, no download: pretrain a teacher, rank its units,
            search a sub-network under a parameter budget (evolution vs random search vs the importance-only baseline), train
            students for the same token budget (random init; sub-network init; sub-network init + distillation), train a large
            model with and without SALT, and write report.md / report.html with every number measured in this run.
            """) { device, preset, outDir, seed, seeds, saltCache };
        cmd.SetAction(p =>
        {
            var ps = DemoPreset.Get(p.GetValue(preset)!);
            int s = p.GetValue(seed);
            if (s < 0) throw new WhittleException($"--seed must be 0 or more, got {s}");
            bool cached = p.GetValue(saltCache);
            if (p.GetValue(seeds) is not { } list) return Run(ps, p.GetValue(device)!, p.GetValue(outDir)!, s, cached);
            if (p.GetResult(seed) is { Implicit: false }) throw new WhittleException("give --seed or --seeds, not both");
            return Sweep(ps, p.GetValue(device)!, p.GetValue(outDir)!, ParseSeeds(list), cached);
        });
        return cmd;
    }

    /// <summary>"0-4" or "0,3,7" (or a mix, "0-2,9"): distinct non-negative seeds in the order given.</summary>
    internal static List<int> ParseSeeds(string text)
    {
        var seeds = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var ends = part.Split('-', StringSplitOptions.TrimEntries);
            bool ok = ends.Length is 1 or 2 && ends.All(e => int.TryParse(e, NumberStyles.None, CultureInfo.InvariantCulture, out _));
            int lo = ok ? int.Parse(ends[0], CultureInfo.InvariantCulture) : 0,
                hi = ok ? int.Parse(ends[^1], CultureInfo.InvariantCulture) : -1;
            if (!ok || hi < lo || hi - lo >= 1000)
                throw new WhittleException($"--seeds: '{part}' is not a seed or a range of seeds (expected e.g. 0-4 or 0,3,7)");
            for (int x = lo; x <= hi; x++) if (!seeds.Contains(x)) seeds.Add(x);
        }
        return seeds;
    }

    /// <summary>
    /// Runs the demo once per seed (each in its own run directory, so a sweep resumes like a demo does) and prints the
    /// table of DemoSweep: the three effects per seed, judged by each run's own report, with their margins. The table is
    /// also written to OUT/sweep.md.
    /// </summary>
    static int Sweep(DemoPreset ps, string device, string outRoot, List<int> seeds, bool saltCache)
    {
        var runs = new List<SweepRun>();
        foreach (var s in seeds)
        {
            Console.WriteLine($"\n======== seed {s} ({runs.Count + 1} of {seeds.Count})");
            string dir = Path.Combine(outRoot, $"seed-{s}");
            var sw = Stopwatch.StartNew();
            Run(ps, device, dir, s, saltCache);
            var results = DemoReport.Load(Path.Combine(dir, DemoReport.ResultsFile));
            // A resumed run's wall time would be the resume's, not the run's: report the stages' own times then.
            runs.Add(new SweepRun(s, results, results.Stages.Any(t => t.Cached) ? null : sw.Elapsed.TotalSeconds));
        }
        string table = $"Seed sweep of `whittle demo --preset {ps.Name}` ({device}), seeds " +
            $"{string.Join(", ", seeds)}:\n\n" + DemoSweep.Table(runs);
        Directory.CreateDirectory(outRoot);
        AtomicFile.WriteAllText(Path.Combine(outRoot, "sweep.md"), table);
        Console.WriteLine("\n" + table);
        Console.WriteLine($"wrote {Path.Combine(Path.GetFullPath(outRoot), "sweep.md")}");
        return 0;
    }

    static int Run(DemoPreset ps, string device, string outRoot, int seed, bool saltCache)
    {
        var started = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        string root = Path.GetFullPath(outRoot);
        CliCommon.TakeRunDirectory(root, "demo");
        CheckPresetOfRun(root, seed == 0 ? ps.Name : $"{ps.Name} --seed {seed}");
        string D(params string[] parts) => Path.Combine([root, .. parts]);
        var timings = new List<StageTiming>();
        string[] dev = ["--device", device];
        string data = D("data");
        // --seed shifts every stage's seed by the same amount; seed 0 is the demo as it always ran.
        string Seed(int stageSeed) => (stageSeed + seed).ToString(CultureInfo.InvariantCulture);
        bool ownSmall = ps.SaltSmallSteps > 0;
        int stages = (ownSmall ? 11 : 10) + (saltCache ? 2 : 0);
        void Stage(string dir, int index, string what, Action run) => DemoCommand.Stage(timings, dir, index, stages, what, run);

        Stage(D("data"), 1, "tokenize the bundled corpus (six Austen novels), one document per chapter", () =>
        {
            var corpus = D("corpus");
            Directory.CreateDirectory(corpus);
            foreach (var name in new[] { "austen.txt.gz", "tokenizer.json" }) ExtractResource("data/" + name, Path.Combine(corpus, name));
            if (Directory.Exists(data)) Directory.Delete(data, true);   // a half-made dataset from an interrupted run
            Whittle("tokenize", "--tokenizer", Path.Combine(corpus, "tokenizer.json"), "--input", Path.Combine(corpus, "austen.txt.gz"),
                "--out", data, "--doc-start", "^(CHAPTER|Chapter) ", "--val-fraction", "0.05", "--seed", Seed(0));
        });

        // The teacher's run is also SALT's baseline: SALT trains the same architecture, seed, data order and schedule.
        string[] teacherRun = ["--data", data, .. ps.Architecture, .. ps.Batch_, "--steps", ps.TeacherSteps.ToString(), "--eval-every",
            ps.EvalEvery.ToString(),
            "--save-every", (ps.EvalEvery * 5).ToString(), "--seed", Seed(1), .. dev];
        Stage(D("teacher"), 2, "pretrain the teacher (also SALT's baseline run)", () =>
            Whittle(["pretrain", "--out", D("teacher"), "--resume", .. teacherRun]));

        Stage(D("importance"), 3, "rank channels, heads, neurons and layers; permute the teacher (same function)", () =>
            Whittle(["importance", "--model", D("teacher", "final"), "--data", data, "--seq-len", ps.SeqLen.ToString(), "--batches", "8",
                "--out", D("importance"), .. dev]));

        Stage(D("search"), 4,
            $"evolutionary search at {ps.BudgetRatio:P0} of the teacher's non-embedding parameters, with random search and the " +
            $"importance baseline", () =>
            Whittle(["search", "--model", D("importance"), "--data", data, "--budget-ratio",
                ps.BudgetRatio.ToString(CultureInfo.InvariantCulture), "--budget-on", "non-embedding", "--tolerance", "0.1",
                "--space", ps.SearchSpace, "--strategy", "evolution", "--baselines", "--evaluations", ps.SearchEvaluations.ToString(),
                    "--population", ps.SearchPopulation.ToString(), "--mutation-rate",
                    ps.SearchMutation.ToString(CultureInfo.InvariantCulture),
                "--eval-tokens", ps.SearchEvalTokens.ToString(), "--seq-len", ps.SeqLen.ToString(), "--out", D("search"), "--resume",
                    "--seed", Seed(0),
                "--embed-step", ps.EmbedStep.ToString(), "--intermediate-step", ps.IntermediateStep.ToString(), .. dev]));

        Stage(D("subnet"), 5, "extract the best sub-network as a standalone model", () =>
            Whittle("extract", "--model", D("importance"), "--subnet", D("search", "best.json"), "--out", D("subnet")));

        string[] studentRun = ["--data", data, .. ps.Batch_, "--steps", ps.StudentSteps.ToString(), "--eval-every",
            ps.StudentEvalEvery.ToString(),
            "--save-every", (ps.StudentEvalEvery * 5).ToString(), "--seed", Seed(2), "--resume", .. dev];
        Stage(D("students", "random-init"), 6, "student 1/3: the searched architecture from random initialisation", () =>
            Whittle(["pretrain", "--config", D("subnet", "config.json"), "--out", D("students", "random-init"), .. studentRun]));
        Stage(D("students", "subnet-init"), 7, "student 2/3: initialised with the sub-network's weights", () =>
            Whittle(["pretrain", "--init", D("subnet"), "--out", D("students", "subnet-init"), .. studentRun]));
        Stage(D("students", "subnet-init-kd"), 8, "student 3/3: sub-network weights + distillation from the teacher", () =>
            Whittle(["distill", "--teacher", D("importance"), "--student", D("subnet"), "--alpha", "0.5", "--beta", "0.5", "--out",
                D("students", "subnet-init-kd"), .. studentRun]));

        // SALT's small model: its own run of the random-init student (same architecture, initialisation and data order),
        // only longer, when the preset asks for one; otherwise the random-init student itself.
        string small = ownSmall ? D("salt-small") : D("students", "random-init");
        if (ownSmall)
            Stage(small, 9,
                $"SALT's small model: student 1's architecture from random initialisation, trained for {ps.SaltSmallSteps} steps", () =>
                Whittle(["pretrain", "--config", D("subnet", "config.json"), "--out", small, "--data", data, .. ps.Batch_, "--steps",
                    ps.SaltSmallSteps.ToString(),
                    "--eval-every", ps.SaltSmallSteps.ToString(), "--save-every", (ps.SaltSmallSteps / 2).ToString(), "--seed", Seed(2),
                        "--resume", .. dev]));

        string[] Salt(string run) => ["--out", run, "--kd-steps", ps.SaltKdSteps.ToString(),
            "--omega", ps.Omega.ToString(CultureInfo.InvariantCulture), "--schedule", "step", "--resume", .. teacherRun];
        int saltStage = ownSmall ? 10 : 9;
        string helped = $"helped by {(ownSmall ? "the small model" : "student 1")} for the first {ps.SaltKdSteps} steps";
        Stage(D("salt"), saltStage, $"SALT: the teacher's architecture from scratch, {helped}", () =>
            Whittle(["salt", "--small", Path.Combine(small, "final"), .. Salt(D("salt"))]));
        if (saltCache)
        {
            // The cache covers the KD phase's batches (the baseline's data order: SALT's seed and batch shape) at τ = 1.
            string cache = D("salt-cache");
            string what = $"cache the small model's top-{SaltCacheTopK} soft labels for SALT's {ps.SaltKdSteps} KD steps";
            Stage(cache, saltStage + 1, what, () =>
            {
                if (Directory.Exists(cache)) Directory.Delete(cache, true);   // built by an interrupted run, never marked finished
                Whittle(["cache-teacher", "--teacher", Path.Combine(small, "final"), "--data", data, "--top-k", SaltCacheTopK.ToString(),
                    "--temperature", "1", "--batch-size", ps.Batch.ToString(), "--seq-len", ps.SeqLen.ToString(),
                    "--steps", ps.SaltKdSteps.ToString(), "--seed", Seed(1), "--out", cache, .. dev]);
            });
            Stage(D("salt-cached"), saltStage + 2, "SALT again, its KD phase reading the cache instead of running the small model", () =>
                Whittle(["salt", "--teacher-cache", cache, .. Salt(D("salt-cached"))]));
        }

        Console.WriteLine($"\n== [{stages}/{stages}] report");
        var results = Collect(root, ps, device, started, timings.Sum(t => t.Seconds), timings, small, saltCache);
        DemoReport.Write(results, root);
        Console.WriteLine($"wrote {D("report.md")}, {D("report.html")} and {D("results.json")} ({total.Elapsed.TotalMinutes:F1} min)");
        return 0;
    }

    // ---------------------------------------------------------------- stages

    const string Marker = ".stage.json";

    static void Stage(List<StageTiming> timings, string dir, int index, int stages, string what, Action run)
    {
        string name = Path.GetRelativePath(Path.GetDirectoryName(dir.TrimEnd('/'))!, dir);
        var marker = Path.Combine(dir, Marker);
        if (File.Exists(marker))
        {
            double s = JsonNode.Parse(File.ReadAllText(marker))!["seconds"]!.GetValue<double>();
            timings.Add(new StageTiming(name, s, Cached: true));
            Console.WriteLine($"== [{index}/{stages}] {what}: done in an earlier run ({s:F0} s), skipped");
            return;
        }
        Console.WriteLine($"\n== [{index}/{stages}] {what}");
        var sw = Stopwatch.StartNew();
        run();
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(marker, new JsonObject { ["stage"] = name, ["seconds"] = sw.Elapsed.TotalSeconds }.ToJsonString() + "\n");
        timings.Add(new StageTiming(name, sw.Elapsed.TotalSeconds, Cached: false));
    }

    /// <summary>Runs a subcommand in-process, echoing it first so the user can run the same step by hand.</summary>
    static void Whittle(params string[] args)
    {
        Console.WriteLine("$ whittle " + string.Join(' ', args.Select(a => a.Contains(' ') || a.Contains('^') ? $"'{a}'" : a)));
        int code = WhittleCli.CreateRoot().Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        if (code != 0) throw new WhittleException($"demo stage failed: `whittle {args[0]}` exited with {code}");
    }

    static void ExtractResource(string name, string path)
    {
        using var s = typeof(DemoCommand).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"resource {name} is missing from the build");
        AtomicFile.Write(path, fs => s.CopyTo(fs));
    }

    /// <summary>A run directory belongs to one preset: mixing cached stages of two presets would compare unlike runs.</summary>
    static void CheckPresetOfRun(string root, string preset)
    {
        var f = Path.Combine(root, "preset.txt");
        if (File.Exists(f) && File.ReadAllText(f).Trim() is var old && old != preset)
            throw new WhittleException($"{root} holds a '{old}' demo; use another --out for '{preset}' (or delete it)");
        File.WriteAllText(f, preset + "\n");
    }

    // ---------------------------------------------------------------- results

    static DemoResults Collect(string root, DemoPreset ps, string device, DateTimeOffset started, double seconds, List<StageTiming> timings,
        string small, bool saltCache)
    {
        string D(params string[] parts) => Path.Combine([root, .. parts]);
        var teacherCfg = GptNeoXConfig.Load(D("teacher", "final"));
        var teacherCount = ParameterCount.Of(teacherCfg);
        var teacherCurve = RunMetrics.Curve(D("teacher", "metrics.jsonl"));
        var summary = JsonNode.Parse(File.ReadAllText(D("search", "summary.json")))!;
        bool ownSmall = ps.SaltSmallSteps > 0;
        long smallParams = ParameterCount.Of(GptNeoXConfig.Load(Path.Combine(small, "final"))).Total;
        var search = new List<SearchPoint>();
        foreach (var (strategy, node) in summary["strategies"]!.AsObject())
            foreach (var c in node!["candidates_evaluated"]!.AsArray())
                search.Add(new SearchPoint(
                    search.Count, strategy, c!["non_embedding_params"]!.GetValue<long>(), c["perplexity"]!.GetValue<double>(),
                    c["spec"]!.ToJsonString()));
        Arm Student(string dir, string name, string description) =>
            new(name, description, ParameterCount.Of(GptNeoXConfig.Load(D("students", dir, "final"))).Total,
                RunMetrics.Curve(D("students", dir, "metrics.jsonl")));
        Arm SaltArm(string dir, string name, string description) =>
            new(name, description, teacherCount.Total, RunMetrics.Curve(D(dir, "metrics.jsonl")),
                RunMetrics.Clock(D(dir, "metrics.jsonl")));
        string helper = ownSmall ? "the small model" : "the random-init student";
        var saltArms = new List<Arm>
        {
            SaltArm("salt", DemoFindings.SaltArm, $"helped by {helper} for the first {ps.SaltKdSteps} steps (ω = {ps.Omega})"),
            SaltArm("teacher", DemoFindings.SaltBaseline, "the same model, seed, data and schedule without help (the teacher's own run)"),
        };
        if (saltCache)
            saltArms.Add(SaltArm("salt-cached", DemoFindings.SaltCached,
                $"as salt, the KD phase reading {helper}'s top-{SaltCacheTopK} soft labels from a cache"));
        return new DemoResults
        {
            Preset = ps.Name, Device = device, Started = started, Seconds = seconds,
            TeacherParameters = teacherCount.Total, TeacherNonEmbedding = teacherCount.NonEmbedding,
            TeacherArchitecture = $"GPT-NeoX, {teacherCfg.NumLayers} layers, hidden {teacherCfg.HiddenSize}, {teacherCfg.NumHeads} " +
                $"heads, MLP {teacherCfg.IntermediateSize}, vocab {teacherCfg.VocabSize}, context {ps.SeqLen}",
            TeacherValLoss = teacherCurve[^1].ValLoss, TeacherTokens = teacherCurve[^1].Tokens,
            BudgetParams = summary["budget"]!["params"]!.GetValue<long>(), BudgetRatio = ps.BudgetRatio,
            Search = search,
            Students =
            [
                Student("random-init", "random-init", "the searched architecture, randomly initialised"),
                Student("subnet-init", "subnet-init", "initialised with the searched sub-network's weights"),
                Student("subnet-init-kd", "subnet-init+kd", "sub-network weights + distillation from the teacher (0.5·CE + 0.5·KL)"),
            ],
            Salt = saltArms,
            SaltKdSteps = ps.SaltKdSteps, SaltTotalSteps = ps.TeacherSteps,
            SaltSmallSeconds = RunMetrics.Clock(Path.Combine(small, "metrics.jsonl"))?.Seconds,
            SaltCacheSeconds = saltCache ? timings.First(t => t.Stage == "salt-cache").Seconds : null,
            SaltCacheTopK = saltCache ? SaltCacheTopK : null,
            SaltSmallModel = ownSmall
                ? $"a small model (random-init's architecture trained from random initialisation for {ps.SaltSmallSteps} steps; "
                    + $"{smallParams:N0} parameters; validation perplexity "
                    + $"{Math.Exp(RunMetrics.Curve(Path.Combine(small, "metrics.jsonl"))[^1].ValLoss):F1})"
                : $"random-init student, {smallParams:N0} parameters",
            Stages = timings,
        };
    }
}
