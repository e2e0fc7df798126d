using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Whittle.Native;
using Whittle.Native.Demo;
using Whittle.Native.Model;

namespace Whittle.Cli;

/// <summary>Model and run sizes of one demo preset (quick: CI-sized; default: minutes on a 2-core CPU; large: a GPU).</summary>
sealed record DemoPreset(string Name, int Layers, int Hidden, int Heads, int Intermediate, int SeqLen, int Batch, float Lr,
    int TeacherSteps, int EvalEvery, long EvalTokens, int SearchEvaluations, long SearchEvalTokens, double BudgetRatio, int StudentSteps,
    int StudentEvalEvery, double SaltKdFraction, float Omega)
{
    public static DemoPreset Get(string name) => name switch
    {
        "quick" => new("quick", 2, 64, 4, 256, 64, 8, 3e-3f, 120, 12, 4096, 10, 2048, 0.25, 80, 8, 0.3, 0.5f),
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
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu | cuda.", DefaultValueFactory = _ => "cpu" };
        var preset = new Option<string>("--preset") { Description = "quick (≈3 min on 2 CPU cores) | default (≈15 min) | large (GPU).", DefaultValueFactory = _ => "default" };
        var outDir = new Option<string>("--out") { Description = "Run directory (reused: finished stages are not run again).", DefaultValueFactory = _ => "runs/demo" };
        var cmd = new Command("demo", """
            Reproduce Whittle and SALT end to end on the bundled Austen corpus, no download: pretrain a teacher, rank its units,
            search a sub-network under a parameter budget (evolution vs random search vs the importance-only baseline), train
            students for the same token budget (random init; sub-network init; sub-network init + distillation), train a large
            model with and without SALT, and write report.md / report.html with every number measured in this run.
            """) { device, preset, outDir };
        cmd.SetAction(p => Run(DemoPreset.Get(p.GetValue(preset)!), p.GetValue(device)!, p.GetValue(outDir)!));
        return cmd;
    }

    static int Run(DemoPreset ps, string device, string outRoot)
    {
        var started = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        string root = Path.GetFullPath(outRoot);
        CliCommon.TakeRunDirectory(root, "demo");
        CheckPresetOfRun(root, ps.Name);
        string D(params string[] parts) => Path.Combine([root, .. parts]);
        var timings = new List<StageTiming>();
        string[] dev = ["--device", device];
        string data = D("data");

        Stage(timings, D("data"), 1, "tokenize the bundled corpus (six Austen novels), one document per chapter", () =>
        {
            var corpus = D("corpus");
            Directory.CreateDirectory(corpus);
            foreach (var name in new[] { "austen.txt.gz", "tokenizer.json" }) ExtractResource("data/" + name, Path.Combine(corpus, name));
            if (Directory.Exists(data)) Directory.Delete(data, true);   // a half-made dataset from an interrupted run
            Whittle("tokenize", "--tokenizer", Path.Combine(corpus, "tokenizer.json"), "--input", Path.Combine(corpus, "austen.txt.gz"),
                "--out", data, "--doc-start", "^(CHAPTER|Chapter) ", "--val-fraction", "0.05", "--seed", "0");
        });

        // The teacher's run is also SALT's baseline: SALT trains the same architecture, seed, data order and schedule.
        string[] teacherRun = ["--data", data, .. ps.Architecture, .. ps.Batch_, "--steps", ps.TeacherSteps.ToString(), "--eval-every", ps.EvalEvery.ToString(),
            "--save-every", (ps.EvalEvery * 5).ToString(), "--seed", "1", .. dev];
        Stage(timings, D("teacher"), 2, "pretrain the teacher (also SALT's baseline run)", () =>
            Whittle(["pretrain", "--out", D("teacher"), "--resume", .. teacherRun]));

        Stage(timings, D("importance"), 3, "rank channels, heads, neurons and layers; permute the teacher (same function)", () =>
            Whittle(["importance", "--model", D("teacher", "final"), "--data", data, "--seq-len", ps.SeqLen.ToString(), "--batches", "8", "--out", D("importance"), .. dev]));

        Stage(timings, D("search"), 4, $"evolutionary search at {ps.BudgetRatio:P0} of the teacher's non-embedding parameters, with random search and the importance baseline", () =>
            Whittle(["search", "--model", D("importance"), "--data", data, "--budget-ratio", ps.BudgetRatio.ToString(CultureInfo.InvariantCulture), "--budget-on", "non-embedding", "--tolerance", "0.1",
                "--space", "uniform", "--strategy", "evolution", "--baselines", "--evaluations", ps.SearchEvaluations.ToString(),
                "--eval-tokens", ps.SearchEvalTokens.ToString(), "--seq-len", ps.SeqLen.ToString(), "--out", D("search"), "--resume", "--seed", "0",
                "--embed-step", "16", "--intermediate-step", "32", .. dev]));

        Stage(timings, D("subnet"), 5, "extract the best sub-network as a standalone model", () =>
            Whittle("extract", "--model", D("importance"), "--subnet", D("search", "best.json"), "--out", D("subnet")));

        string[] studentRun = ["--data", data, .. ps.Batch_, "--steps", ps.StudentSteps.ToString(), "--eval-every", ps.StudentEvalEvery.ToString(),
            "--save-every", (ps.StudentEvalEvery * 5).ToString(), "--seed", "2", "--resume", .. dev];
        Stage(timings, D("students", "random-init"), 6, "student 1/3: the searched architecture from random initialisation", () =>
            Whittle(["pretrain", "--config", D("subnet", "config.json"), "--out", D("students", "random-init"), .. studentRun]));
        Stage(timings, D("students", "subnet-init"), 7, "student 2/3: initialised with the sub-network's weights", () =>
            Whittle(["pretrain", "--init", D("subnet"), "--out", D("students", "subnet-init"), .. studentRun]));
        Stage(timings, D("students", "subnet-init-kd"), 8, "student 3/3: sub-network weights + distillation from the teacher", () =>
            Whittle(["distill", "--teacher", D("importance"), "--student", D("subnet"), "--alpha", "0.5", "--beta", "0.5", "--out", D("students", "subnet-init-kd"), .. studentRun]));

        Stage(timings, D("salt"), 9, $"SALT: the teacher's architecture from scratch, helped by student 1 for the first {ps.SaltKdSteps} steps", () =>
            Whittle(["salt", "--small", D("students", "random-init", "final"), "--out", D("salt"), "--kd-steps", ps.SaltKdSteps.ToString(),
                "--omega", ps.Omega.ToString(CultureInfo.InvariantCulture), "--schedule", "step", "--resume", .. teacherRun]));

        Console.WriteLine($"\n== [10/10] report");
        var results = Collect(root, ps, device, started, timings.Sum(t => t.Seconds), timings);
        DemoReport.Write(results, root);
        Console.WriteLine($"wrote {D("report.md")}, {D("report.html")} and {D("results.json")} ({total.Elapsed.TotalMinutes:F1} min)");
        return 0;
    }

    // ---------------------------------------------------------------- stages

    const string Marker = ".stage.json";

    static void Stage(List<StageTiming> timings, string dir, int index, string what, Action run)
    {
        string name = Path.GetRelativePath(Path.GetDirectoryName(dir.TrimEnd('/'))!, dir);
        var marker = Path.Combine(dir, Marker);
        if (File.Exists(marker))
        {
            double s = JsonNode.Parse(File.ReadAllText(marker))!["seconds"]!.GetValue<double>();
            timings.Add(new StageTiming(name, s, Cached: true));
            Console.WriteLine($"== [{index}/10] {what}: done in an earlier run ({s:F0} s), skipped");
            return;
        }
        Console.WriteLine($"\n== [{index}/10] {what}");
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
        using var s = typeof(DemoCommand).Assembly.GetManifestResourceStream(name) ?? throw new InvalidOperationException($"resource {name} is missing from the build");
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

    static DemoResults Collect(string root, DemoPreset ps, string device, DateTimeOffset started, double seconds, List<StageTiming> timings)
    {
        string D(params string[] parts) => Path.Combine([root, .. parts]);
        var teacherCfg = GptNeoXConfig.Load(D("teacher", "final"));
        var teacherCount = ParameterCount.Of(teacherCfg);
        var teacherCurve = Curve(D("teacher", "metrics.jsonl"));
        var summary = JsonNode.Parse(File.ReadAllText(D("search", "summary.json")))!;
        var search = new List<SearchPoint>();
        foreach (var (strategy, node) in summary["strategies"]!.AsObject())
            foreach (var c in node!["candidates_evaluated"]!.AsArray())
                search.Add(new SearchPoint(search.Count, strategy, c!["non_embedding_params"]!.GetValue<long>(), c["perplexity"]!.GetValue<double>(), c["spec"]!.ToJsonString()));
        Arm Student(string dir, string name, string description) =>
            new(name, description, ParameterCount.Of(GptNeoXConfig.Load(D("students", dir, "final"))).Total, Curve(D("students", dir, "metrics.jsonl")));
        return new DemoResults
        {
            Preset = ps.Name, Device = device, Started = started, Seconds = seconds,
            TeacherParameters = teacherCount.Total, TeacherNonEmbedding = teacherCount.NonEmbedding,
            TeacherArchitecture = $"GPT-NeoX, {teacherCfg.NumLayers} layers, hidden {teacherCfg.HiddenSize}, {teacherCfg.NumHeads} heads, MLP {teacherCfg.IntermediateSize}, vocab {teacherCfg.VocabSize}, context {ps.SeqLen}",
            TeacherValLoss = teacherCurve[^1].ValLoss, TeacherTokens = teacherCurve[^1].Tokens,
            BudgetParams = summary["budget"]!["params"]!.GetValue<long>(), BudgetRatio = ps.BudgetRatio,
            Search = search,
            Students =
            [
                Student("random-init", "random-init", "the searched architecture, randomly initialised"),
                Student("subnet-init", "subnet-init", "initialised with the searched sub-network's weights"),
                Student("subnet-init-kd", "subnet-init+kd", "sub-network weights + distillation from the teacher (0.5·CE + 0.5·KL)"),
            ],
            Salt =
            [
                new Arm("salt", $"helped by the random-init student for the first {ps.SaltKdSteps} steps (ω = {ps.Omega})", teacherCount.Total, Curve(D("salt", "metrics.jsonl"))),
                new Arm("baseline", "the same model, seed, data and schedule without help (the teacher's own run)", teacherCount.Total, teacherCurve),
            ],
            SaltKdSteps = ps.SaltKdSteps, SaltTotalSteps = ps.TeacherSteps,
            SaltSmallModel = $"random-init student, {ParameterCount.Of(GptNeoXConfig.Load(D("students", "random-init", "final"))).Total:N0} parameters",
            Stages = timings,
        };
    }

    /// <summary>The validation points of a run's metrics.jsonl.</summary>
    static List<CurvePoint> Curve(string metrics) =>
        File.ReadLines(metrics).Select(l => JsonNode.Parse(l)!).Where(o => o["val_loss"] is not null)
            .Select(o => new CurvePoint(o["step"]!.GetValue<int>(), o["tokens"]!.GetValue<long>(), o["val_loss"]!.GetValue<double>())).ToList();
}
