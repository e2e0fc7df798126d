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
/// Family: the teacher's (gpt-neox, or llama with KvHeads key/value heads: grouped-query attention); every later stage
/// takes its family from the model it starts from, so only the teacher's and SALT's architecture flags name it.
/// </summary>
sealed record DemoPreset(string Name, int Layers, int Hidden, int Heads, int Intermediate, int SeqLen, int Batch, float Lr,
    int TeacherSteps, int EvalEvery, long EvalTokens, int SearchEvaluations, long SearchEvalTokens, double BudgetRatio, int StudentSteps,
    int StudentEvalEvery, double SaltKdFraction, float Omega, string SearchSpace = "uniform", int SearchPopulation = 16,
        double SearchMutation = 0.3, int EmbedStep = 16, int IntermediateStep = 32, int SaltSmallSteps = 0, int Seeds = 1,
        int SupernetSteps = 0, string Family = DemoPreset.GptNeoX, int KvHeads = 0)
{
    public const string GptNeoX = "gpt-neox", Llama = "llama";

    /// <summary>The preset <paramref name="name"/> for a teacher of <paramref name="family"/> (gpt-neox, gpt_neox or llama).</summary>
    public static DemoPreset Get(string name, string family)
    {
        var ps = Get(name);
        return family switch
        {
            GptNeoX or "gpt_neox" => ps,
            // A Llama teacher with the GPT-NeoX preset's non-embedding parameters, so the same FLOPs per token (6N + 6·L·T·a,
            // a = the same query heads × head size) and about the same time: grouped-query attention with half as many kv
            // heads has 2H² + 2H·(H/2) = 3H² weights against GPT-NeoX's 4H², and the SwiGLU MLP three H × I matrices against
            // GPT-NeoX's two, so 3H² + 3H·I = 4H² + 2H·I_neox gives I = (H + 2·I_neox) / 3: quick 192 (GPT-NeoX 256), default
            // 288 (384), large 1536 (2048), each on its search grid (biases and norms, under 1%, left out).
            Llama => ps with
            {
                Family = Llama, KvHeads = ps.Heads / 2,
                Intermediate = (ps.Hidden + 2 * ps.Intermediate) / 3 / ps.IntermediateStep * ps.IntermediateStep,
            },
            _ => throw new WhittleException($"unknown --family '{ErrorText.Clip(family, 40)}' (expected gpt-neox or llama)"),
        };
    }

    static DemoPreset Get(string name) => name switch
    {
        // Sized by the seed sweep in bench/RESULTS.md (`whittle demo --preset quick --seeds 0-4`): students trained for 40
        // steps (longer, they pass the 120-step teacher and distilling from it stops helping); a per-layer search space
        // with fine grids and 40 evaluations, where random search rarely lands on the best sub-network but evolution
        // (population 8, so 32 of the 40 are bred) climbs to it; SALT's small model trained 160 steps.
        "quick" => new("quick", 2, 64, 4, 256, 64, 8, 3e-3f, 120, 12, 4096, 40, 2048, 0.25, 40, 4, 0.3, 0.5f,
            SearchSpace: "per-layer", SearchPopulation: 8, SearchMutation: 0.5, EmbedStep: 8, IntermediateStep: 8, SaltSmallSteps: 160,
            SupernetSteps: 40),
        // Three seeds of the stochastic arms (the teacher once), so every claim has an error bar.
        "default" => new("default", 3, 96, 4, 384, 128, 8, 3e-3f, 400, 20, 8192, 24, 8192, 0.25, 300, 20, 0.3, 0.5f, Seeds: 3,
            SupernetSteps: 100),
        "large" => new("large", 6, 512, 8, 2048, 256, 16, 1e-3f, 2000, 100, 65536, 50, 32768, 0.25, 1500, 100, 0.3, 0.5f, Seeds: 3,
            SupernetSteps: 500),
        _ => throw new WhittleException($"unknown --preset '{name}' (expected quick, default or large)"),
    };

    public string[] Architecture => ["--layers", I(Layers), "--hidden", I(Hidden), "--heads", I(Heads), "--intermediate", I(Intermediate),
        .. Family == GptNeoX ? Array.Empty<string>() : ["--family", Family, "--kv-heads", I(KvHeads)]];
    /// <summary>What the run directory records (preset.txt): the preset, and the family and seed where not the defaults.</summary>
    public string RunKey(int teacherSeed) =>
        Name + (Family == GptNeoX ? "" : $" --family {Family}") + (teacherSeed == 0 ? "" : $" --seed {teacherSeed}");
    public string[] Batch_ => ["--seq-len", I(SeqLen), "--batch-size", I(Batch), "--lr", F(Lr), "--eval-tokens", I(EvalTokens)];
    public int SaltKdSteps => (int)Math.Round(TeacherSteps * SaltKdFraction / EvalEvery) * EvalEvery;   // on the evaluation grid
    /// <summary>
    /// The supernet stage's peak learning rate: a third of the teacher's. Continued training from a trained model wants less
    /// than pretraining's peak, and sandwich steps sum four networks' gradients under one clip, so the teacher's final lr
    /// (a tenth) barely moves the sub-networks (quick, seed 0: the searched best 409 at 3e-4 against 377 at 1e-3).
    /// </summary>
    public float SupernetLr => Lr / 3;
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
        var preset = new Option<string>("--preset") { Description = "quick (one seed, 22.9 s on 2 idle CPU cores; the search not " +
            "reproduced in 3 of seeds 10-14: bench/RESULTS.md) | default (three seeds, the teacher once: 5 min 19 s on 2 idle " +
            "CPU cores, 5 min 59.8 s with --family llama) | large (three seeds; a GPU).",
            DefaultValueFactory = _ => "default" };
        var outDir = new Option<string>("--out") { Description = "Run directory (reused: finished stages are not run again).",
            DefaultValueFactory = _ => "runs/demo" };
        var seed = new Option<int>("--seed") { Description = "Added to every stage's seed (data split, teacher, initialisations, data " +
            "order, search): the teacher's seed, and the first of the arms' seeds.", DefaultValueFactory = _ => 0 };
        var seeds = new Option<string?>("--seeds") { Description = "The stochastic arms' seeds (the search, the students, SALT's small " +
            "model and SALT), the teacher trained once: a count N (seeds --seed .. --seed+N-1; default: the preset's, 1 for quick, 3 " +
            "for default and large) or a list or range (0,3,7 or 0-4). The report gives mean ± sd per arm and effect; an effect " +
            "counts as reproduced only when it holds in every seed." };
        var family = new Option<string>("--family")
        {
            Description = "The teacher's family: gpt-neox (Pythia's architecture) or llama (RMSNorm, SwiGLU MLP, grouped-query " +
                "attention with half as many key/value heads as query heads; the GPT-NeoX preset's non-embedding parameters). A run " +
                "directory holds one family.",
            DefaultValueFactory = _ => DemoPreset.GptNeoX,
        };
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
            model with and without SALT, train the teacher on as a sandwich supernet (and, as its control, with standard training)
            and search each again, and write report.md / report.html with every number measured in this run.
            """) { device, preset, family, outDir, seed, seeds, saltCache };
        cmd.SetAction(p =>
        {
            var ps = DemoPreset.Get(p.GetValue(preset)!, p.GetValue(family)!);
            int s = p.GetValue(seed);
            if (s < 0) throw new WhittleException($"--seed must be 0 or more, got {s}");
            var list = p.GetValue(seeds) is { } text ? ParseSeeds(text, s) : [.. Enumerable.Range(s, ps.Seeds)];
            return Run(ps, p.GetValue(device)!, p.GetValue(outDir)!, s, list, p.GetValue(saltCache));
        });
        return cmd;
    }

    /// <summary>
    /// A count "3" (that many seeds from <paramref name="first"/> on), or a list and ranges "0-4", "0,3,7", "0-2,9": distinct
    /// non-negative seeds in the order given.
    /// </summary>
    internal static List<int> ParseSeeds(string text, int first)
    {
        if (text.Trim() is var t && t.Length > 0 && t.All(char.IsAsciiDigit))
        {
            if (!int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > 1000)
                throw new WhittleException($"--seeds: a count of seeds must be 1 to 1000, got '{t}'");
            if ((long)first + n - 1 > int.MaxValue) throw new WhittleException($"--seeds: --seed {first} + {n} seeds overflows");
            return [.. Enumerable.Range(first, n)];
        }
        var seeds = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var ends = part.Split('-', StringSplitOptions.TrimEntries);
            bool ok = ends.Length is 1 or 2 && ends.All(e => int.TryParse(e, NumberStyles.None, CultureInfo.InvariantCulture, out _));
            int lo = ok ? int.Parse(ends[0], CultureInfo.InvariantCulture) : 0,
                hi = ok ? int.Parse(ends[^1], CultureInfo.InvariantCulture) : -1;
            if (!ok || hi < lo || hi - lo >= 1000)
                throw new WhittleException($"--seeds: '{part}' is not a seed or a range of seeds (expected e.g. 3, 0-4 or 0,3,7)");
            for (int x = lo; x <= hi; x++) if (!seeds.Contains(x)) seeds.Add(x);
        }
        if (seeds.Count > 1000) throw new WhittleException($"--seeds: {seeds.Count} seeds; at most 1000");
        return seeds;
    }

    /// <summary>
    /// The demo: the shared stages once (tokenize, teacher, importance; seeds shifted by <paramref name="teacherSeed"/>), then
    /// the stochastic arms once per seed, each seed's stages shifted by that seed. The teacher's seed's arms live beside the
    /// teacher (as a one-seed demo always had them), every other seed's in OUT/seed-N with a report of its own; the
    /// top-level report shows the claims across all seeds and the first seed in detail.
    /// </summary>
    static int Run(DemoPreset ps, string device, string outRoot, int teacherSeed, List<int> seeds, bool saltCache)
    {
        var started = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        string root = Path.GetFullPath(outRoot);
        CliCommon.TakeRunDirectory(root, "demo");
        CheckPresetOfRun(root, ps.RunKey(teacherSeed));
        string D(params string[] parts) => Path.Combine([root, .. parts]);
        var shared = new List<StageTiming>();
        string[] dev = ["--device", device];
        string data = D("data");
        string TeacherSeed(int stageSeed) => (stageSeed + teacherSeed).ToString(CultureInfo.InvariantCulture);
        bool ownSmall = ps.SaltSmallSteps > 0;
        int perSeed = (ownSmall ? 7 : 6) + (saltCache ? 2 : 0)   // search, extract, 3 students, [small model], SALT, [cache, cached]
            + (ps.SupernetSteps > 0 ? 4 : 0);                      // sandwich and standard training, a search on each
        int stages = 3 + perSeed * seeds.Count + 1, index = 0;
        void Stage(List<StageTiming> timings, string dir, string what, Action run) =>
            DemoCommand.Stage(timings, dir, ++index, stages, what, run);

        Stage(shared, D("data"), "tokenize the bundled corpus (six Austen novels), one document per chapter", () =>
        {
            var corpus = D("corpus");
            Directory.CreateDirectory(corpus);
            foreach (var name in new[] { "austen.txt.gz", "tokenizer.json" }) ExtractResource("data/" + name, Path.Combine(corpus, name));
            if (Directory.Exists(data)) Directory.Delete(data, true);   // a half-made dataset from an interrupted run
            Whittle("tokenize", "--tokenizer", Path.Combine(corpus, "tokenizer.json"), "--input", Path.Combine(corpus, "austen.txt.gz"),
                "--out", data, "--doc-start", "^(CHAPTER|Chapter) ", "--val-fraction", "0.05", "--seed", TeacherSeed(0));
        });

        // The teacher's run is also SALT's baseline: SALT trains the same architecture, seed, data order and schedule.
        string[] teacherRun = ["--data", data, .. ps.Architecture, .. ps.Batch_, "--steps", ps.TeacherSteps.ToString(), "--eval-every",
            ps.EvalEvery.ToString(),
            "--save-every", (ps.EvalEvery * 5).ToString(), "--seed", TeacherSeed(1), .. dev];
        Stage(shared, D("teacher"), "pretrain the teacher (also SALT's baseline run)", () =>
            Whittle(["pretrain", "--out", D("teacher"), "--resume", .. teacherRun]));

        Stage(shared, D("importance"), "rank channels, heads, neurons and layers; permute the teacher (same function)", () =>
            Whittle(["importance", "--model", D("teacher", "final"), "--data", data, "--seq-len", ps.SeqLen.ToString(), "--batches", "8",
                "--out", D("importance"), .. dev]));

        var runs = new List<SeedRun>();
        foreach (int seed in seeds)
        {
            string dir = seed == teacherSeed ? root : D($"seed-{seed}");
            var timings = new List<StageTiming>(shared);
            RunSeed(ps, dev, root, dir, seed, seeds.Count > 1 ? $"seed {seed}: " : "", teacherRun, saltCache,
                (d, what, run) => Stage(timings, d, what, run));
            if (ps.SupernetSteps > 0)
                RunSupernet(ps, dev, root, dir, seed, seeds.Count > 1 ? $"seed {seed}: " : "",
                    (d, what, run) => Stage(timings, d, what, run));
            var results = Collect(root, dir, ps, device, started, timings.Sum(t => t.Seconds), timings, saltCache);
            // Every seed but the one beside the teacher has its own full report; the top-level one is written last.
            if (dir != root) DemoReport.Write(results, dir);
            runs.Add(new SeedRun(seed, results));
        }

        Console.WriteLine($"\n== [{stages}/{stages}] report");
        var detail = runs.FirstOrDefault(r => r.Seed == teacherSeed) ?? runs[0];
        DemoReport.Write(detail.Results, root, new SeedSet(runs, teacherSeed, detail.Seed, total.Elapsed.TotalSeconds));
        Console.WriteLine($"wrote {D("report.md")}, {D("report.html")} and {D("results.json")} ({total.Elapsed.TotalMinutes:F1} min)");
        foreach (var e in DemoSeeds.EffectsOf(runs))
            Console.WriteLine($"  {(e.Reproduced ? "reproduced    " : "NOT reproduced")}  {e.HoldsIn}/{runs.Count} seeds  " +
                $"{DemoSeeds.MeanPlusMinus(e.Kind, e.Mean, e.Sd, e.N, runs.Count),-22}  {e.Claim}");
        return 0;
    }

    /// <summary>
    /// One seed's stochastic arms in <paramref name="dir"/>: the search, the extraction, the three students, SALT's small
    /// model (when the preset trains one) and SALT; every stage's seed shifted by <paramref name="seed"/>, except SALT's and
    /// its cache's, which keep the teacher's (same initialisation and data order as the baseline it is compared with).
    /// </summary>
    static void RunSeed(DemoPreset ps, string[] dev, string root, string dir, int seed, string label, string[] teacherRun,
        bool saltCache, Action<string, string, Action> stage)
    {
        string D(params string[] parts) => Path.Combine([dir, .. parts]);
        string data = Path.Combine(root, "data"), importance = Path.Combine(root, "importance");
        string Seed(int stageSeed) => (stageSeed + seed).ToString(CultureInfo.InvariantCulture);
        bool ownSmall = ps.SaltSmallSteps > 0;
        void Stage(string d, string what, Action run) => stage(d, label + what, run);

        Stage(D("search"),
            $"evolutionary search at {ps.BudgetRatio:P0} of the teacher's non-embedding parameters, with random search and the " +
            $"importance baseline", () =>
            Whittle([.. Search(ps, importance, data, D("search"), Seed(0)), "--baselines", "--objectives", "ppl,params,flops", .. dev]));

        Stage(D("subnet"), "extract the best sub-network as a standalone model", () =>
            Whittle("extract", "--model", importance, "--subnet", D("search", "best.json"), "--out", D("subnet")));

        string[] studentRun = ["--data", data, .. ps.Batch_, "--steps", ps.StudentSteps.ToString(), "--eval-every",
            ps.StudentEvalEvery.ToString(),
            "--save-every", (ps.StudentEvalEvery * 5).ToString(), "--seed", Seed(2), "--resume", .. dev];
        Stage(D("students", "random-init"), "student 1/3: the searched architecture from random initialisation", () =>
            Whittle(["pretrain", "--config", D("subnet", "config.json"), "--out", D("students", "random-init"), .. studentRun]));
        Stage(D("students", "subnet-init"), "student 2/3: initialised with the sub-network's weights", () =>
            Whittle(["pretrain", "--init", D("subnet"), "--out", D("students", "subnet-init"), .. studentRun]));
        Stage(D("students", "subnet-init-kd"), "student 3/3: sub-network weights + distillation from the teacher", () =>
            Whittle(["distill", "--teacher", importance, "--student", D("subnet"), "--alpha", "0.5", "--beta", "0.5", "--out",
                D("students", "subnet-init-kd"), .. studentRun]));

        // SALT's small model: its own run of the random-init student (same architecture, initialisation and data order),
        // only longer, when the preset asks for one; otherwise the random-init student itself.
        string small = SmallModel(ps, dir);
        if (ownSmall)
            Stage(small, $"SALT's small model: student 1's architecture from random initialisation, trained for {ps.SaltSmallSteps} steps",
                () => Whittle(["pretrain", "--config", D("subnet", "config.json"), "--out", small, "--data", data, .. ps.Batch_, "--steps",
                    ps.SaltSmallSteps.ToString(),
                    "--eval-every", ps.SaltSmallSteps.ToString(), "--save-every", (ps.SaltSmallSteps / 2).ToString(), "--seed", Seed(2),
                        "--resume", .. dev]));

        string[] Salt(string run) => ["--out", run, "--kd-steps", ps.SaltKdSteps.ToString(),
            "--omega", ps.Omega.ToString(CultureInfo.InvariantCulture), "--schedule", "step", "--resume", .. teacherRun];
        string helped = $"helped by {(ownSmall ? "the small model" : "student 1")} for the first {ps.SaltKdSteps} steps";
        Stage(D("salt"), $"SALT: the teacher's architecture from scratch, {helped}", () =>
            Whittle(["salt", "--small", Path.Combine(small, "final"), .. Salt(D("salt"))]));
        if (!saltCache) return;
        // The cache covers the KD phase's batches (the baseline's data order: SALT's seed and batch shape) at τ = 1.
        string cache = D("salt-cache");
        string saltSeed = teacherRun[Array.IndexOf(teacherRun, "--seed") + 1];
        Stage(cache, $"cache the small model's top-{SaltCacheTopK} soft labels for SALT's {ps.SaltKdSteps} KD steps", () =>
        {
            if (Directory.Exists(cache)) Directory.Delete(cache, true);   // built by an interrupted run, never marked finished
            Whittle(["cache-teacher", "--teacher", Path.Combine(small, "final"), "--data", data, "--top-k", SaltCacheTopK.ToString(),
                "--temperature", "1", "--batch-size", ps.Batch.ToString(), "--seq-len", ps.SeqLen.ToString(),
                "--steps", ps.SaltKdSteps.ToString(), "--seed", saltSeed, "--out", cache, .. dev]);
        });
        Stage(D("salt-cached"), "SALT again, its KD phase reading the cache instead of running the small model", () =>
            Whittle(["salt", "--teacher-cache", cache, .. Salt(D("salt-cached"))]));
    }

    /// <summary>
    /// The demo's evolutionary search of <paramref name="model"/> into <paramref name="outDir"/>: the preset's budget, space,
    /// grids, evaluations, population and mutation rate, and the seed given; the caller adds baselines, objectives, device.
    /// </summary>
    static string[] Search(DemoPreset ps, string model, string data, string outDir, string seed) =>
        ["search", "--model", model, "--data", data, "--budget-ratio",
            ps.BudgetRatio.ToString(CultureInfo.InvariantCulture), "--budget-on", "non-embedding", "--tolerance", "0.1",
            "--space", ps.SearchSpace, "--strategy", "evolution", "--evaluations", ps.SearchEvaluations.ToString(),
            "--population", ps.SearchPopulation.ToString(), "--mutation-rate", ps.SearchMutation.ToString(CultureInfo.InvariantCulture),
            "--eval-tokens", ps.SearchEvalTokens.ToString(), "--seq-len", ps.SeqLen.ToString(), "--out", outDir, "--resume",
            "--seed", seed, "--embed-step", ps.EmbedStep.ToString(), "--intermediate-step", ps.IntermediateStep.ToString()];

    /// <summary>Where a seed's supernet stage keeps its two parents and their searches.</summary>
    static string SupernetDir(string dir, string arm, bool search = false) =>
        Path.Combine(dir, "supernet", search ? arm + "-search" : arm);

    /// <summary>
    /// whittle's first stage, per seed: the importance-permuted teacher trained on for the preset's supernet steps with the
    /// sandwich rule (`train-supernet --strategy sandwich`: the whole network, two random sub-networks and the smallest every
    /// step, sampled from the search's space), and, as the control that separates the sandwich rule from the extra training,
    /// the same steps, data order and schedule with `--strategy standard` (the whole network alone); then the seed's
    /// evolutionary search again on each (same budget, space, evaluations and seed as on the plain teacher, so the three
    /// searches start from the same candidates). Training is per seed: its sampling and data order take the seed, so the
    /// seed rule judges the whole two-stage pipeline, not one supernet.
    /// </summary>
    static void RunSupernet(DemoPreset ps, string[] dev, string root, string dir, int seed, string label,
        Action<string, string, Action> stage)
    {
        string data = Path.Combine(root, "data"), importance = Path.Combine(root, "importance");
        string Seed(int stageSeed) => (stageSeed + seed).ToString(CultureInfo.InvariantCulture);
        foreach (var (arm, what) in new[]
        {
            ("sandwich", "the whole network, 2 random sub-networks and the smallest every step"),
            ("standard", "the whole network alone, the sandwich run's control"),
        })
        {
            string run = SupernetDir(dir, arm);
            stage(run, $"{label}supernet ({arm}): the teacher trained on for {ps.SupernetSteps} steps, {what}", () =>
                Whittle(["train-supernet", "--model", importance, "--data", data, "--out", run, "--strategy", arm,
                    "--space", ps.SearchSpace, "--embed-step", ps.EmbedStep.ToString(),
                    "--intermediate-step", ps.IntermediateStep.ToString(),
                    "--steps", ps.SupernetSteps.ToString(), "--lr", ps.SupernetLr.ToString(CultureInfo.InvariantCulture),
                    "--seq-len", ps.SeqLen.ToString(), "--batch-size", ps.Batch.ToString(), "--eval-tokens", ps.EvalTokens.ToString(),
                    "--eval-every", (ps.SupernetSteps / 2).ToString(), "--save-every", (ps.SupernetSteps / 2).ToString(),
                    "--seed", Seed(3), "--resume", .. dev]));
            stage(SupernetDir(dir, arm, search: true), $"{label}the same evolutionary search on the {arm}-trained parent", () =>
                Whittle([.. Search(ps, Path.Combine(run, "final"), data, SupernetDir(dir, arm, search: true), Seed(0)),
                    "--baselines", "false", .. dev]));
        }
    }

    /// <summary>SALT's small model of a seed: its own run when the preset trains one, else that seed's random-init student.</summary>
    static string SmallModel(DemoPreset ps, string dir) =>
        ps.SaltSmallSteps > 0 ? Path.Combine(dir, "salt-small") : Path.Combine(dir, "students", "random-init");

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

    /// <summary>
    /// The teacher in one line, its family first (results.json's teacher.architecture; the GPT-NeoX line is the one the demo
    /// always wrote); a Llama teacher's adds its key/value heads and what sets the family apart.
    /// </summary>
    internal static string Architecture(ModelConfig c, int seqLen) => c switch
    {
        LlamaConfig l => $"{(l.Family == "llama" ? "Llama" : $"Llama family ({l.Family})")}, {l.NumLayers} layers, hidden " +
            $"{l.HiddenSize}, {l.NumHeads} heads, {l.NumKeyValueHeads} kv heads " +
            $"({(l.NumKeyValueHeads < l.NumHeads ? "grouped-query" : "multi-head")} attention), SwiGLU MLP {l.IntermediateSize}, " +
            $"RMSNorm, vocab {l.VocabSize}, context {seqLen}",
        _ => $"GPT-NeoX, {c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads} heads, MLP {c.IntermediateSize}, vocab " +
            $"{c.VocabSize}, context {seqLen}",
    };

    /// <summary>One seed's results: the shared teacher from <paramref name="root"/>, the seed's arms from <paramref name="dir"/>.</summary>
    static DemoResults Collect(string root, string dir, DemoPreset ps, string device, DateTimeOffset started, double seconds,
        List<StageTiming> timings, bool saltCache)
    {
        string D(params string[] parts) => Path.Combine([dir, .. parts]);
        string small = SmallModel(ps, dir);
        var teacherCfg = ModelConfig.Load(Path.Combine(root, "teacher", "final"));
        var teacherCount = ParameterCount.Of(teacherCfg);
        var teacherCurve = RunMetrics.Curve(Path.Combine(root, "teacher", "metrics.jsonl"));
        var summary = JsonNode.Parse(File.ReadAllText(D("search", "summary.json")))!;
        bool ownSmall = ps.SaltSmallSteps > 0;
        long smallParams = ParameterCount.Of(ModelConfig.Load(Path.Combine(small, "final"))).Total;
        var search = new List<SearchPoint>();
        foreach (var (strategy, node) in summary["strategies"]!.AsObject())
            foreach (var c in node!["candidates_evaluated"]!.AsArray())
                search.Add(new SearchPoint(
                    search.Count, strategy, c!["non_embedding_params"]!.GetValue<long>(), c["perplexity"]!.GetValue<double>(),
                    c["spec"]!.ToJsonString(), c["objectives"]?["flops"]?.GetValue<double>()));
        Arm Student(string dir, string name, string description) =>
            new(name, description, ParameterCount.Of(ModelConfig.Load(D("students", dir, "final"))).Total,
                RunMetrics.Curve(D("students", dir, "metrics.jsonl")));
        Arm SaltArm(string dir, string name, string description) =>
            new(name, description, teacherCount.Total, RunMetrics.Curve(D(dir, "metrics.jsonl")),
                RunMetrics.Clock(D(dir, "metrics.jsonl")));
        string helper = ownSmall ? "the small model" : "the random-init student";
        var saltArms = new List<Arm>
        {
            SaltArm("salt", DemoFindings.SaltArm, $"helped by {helper} for the first {ps.SaltKdSteps} steps (ω = {ps.Omega})"),
            // An absolute path: D leaves it as it is (Path.Combine restarts at a rooted part).
            SaltArm(Path.Combine(root, "teacher"), DemoFindings.SaltBaseline,
                "the same model, seed, data and schedule without help (the teacher's own run)"),
        };
        if (saltCache)
            saltArms.Add(SaltArm("salt-cached", DemoFindings.SaltCached,
                $"as salt, the KD phase reading {helper}'s top-{SaltCacheTopK} soft labels from a cache"));
        return new DemoResults
        {
            Preset = ps.Name, Device = device, Started = started, Seconds = seconds,
            TeacherParameters = teacherCount.Total, TeacherNonEmbedding = teacherCount.NonEmbedding,
            TeacherArchitecture = Architecture(teacherCfg, ps.SeqLen),
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
            SearchFront = SearchFrontOf(D("search")),
            Supernet = ps.SupernetSteps > 0 ? SupernetOf(dir, ps) : null,
        };
    }

    /// <summary>
    /// The search's (ppl, params, FLOPs) view from its summary.json and pareto.json; null when it ran without the flops
    /// objective (a run directory whose search stage finished before the demo asked for it).
    /// </summary>
    static SearchObjectives? SearchFrontOf(string searchDir)
    {
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(searchDir, "summary.json")))!;
        var objectives = summary["objectives"]!.AsArray().Select(o => o!.GetValue<string>()).ToList();
        if (!objectives.Contains("flops")) return null;
        var hv = summary["hypervolume"]!;
        var pareto = JsonNode.Parse(File.ReadAllText(Path.Combine(searchDir, "pareto.json")))!.AsArray().Select(n => new ParetoPoint(
            n!["strategy"]!.GetValue<string>(), (long)n["objectives"]!["params"]!.GetValue<double>(),
            n["objectives"]!["flops"]!.GetValue<double>(),
            n["perplexity"]!.GetValue<double>(), n["spec"]!.ToJsonString())).ToList();
        return new SearchObjectives(objectives, pareto,
            summary["strategies"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!["hypervolume"]!.GetValue<double>()),
            hv["reference_point"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>()),
            hv["maximum"]!.GetValue<double>());
    }

    /// <summary>A seed's supernet stage: each trained parent's whole-network perplexity and its search's best.</summary>
    static SupernetResults SupernetOf(string dir, DemoPreset ps)
    {
        SupernetArm Arm(string arm, string description)
        {
            var evolution = JsonNode.Parse(File.ReadAllText(Path.Combine(SupernetDir(dir, arm, search: true), "summary.json")))!
                ["strategies"]!["evolution"]!;
            var best = evolution["candidates_evaluated"]!.AsArray().MinBy(c => c!["perplexity"]!.GetValue<double>())!;
            return new SupernetArm(arm, description, RunMetrics.Curve(Path.Combine(SupernetDir(dir, arm), "metrics.jsonl"))[^1].Perplexity,
                evolution["candidates"]!.GetValue<int>(), best["non_embedding_params"]!.GetValue<long>(),
                best["perplexity"]!.GetValue<double>(), best["spec"]!.ToJsonString());
        }
        return new SupernetResults(ps.SupernetSteps,
        [
            Arm(DemoSupernet.Sandwich, $"train-supernet --strategy sandwich, {ps.SupernetSteps} steps from the teacher: the whole " +
                "network, 2 random sub-networks and the smallest every step"),
            Arm(DemoSupernet.Standard, $"train-supernet --strategy standard, {ps.SupernetSteps} steps from the teacher: the whole " +
                "network alone (plain training; same data order and schedule)"),
        ]);
    }
}
