using System.Text.Json.Nodes;
using Whittle.Native.Model;
using Whittle.Native.Search;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// `whittle search` with the new strategies and objectives through the built command on the tiny fixture (hidden 64,
/// 2 layers, 4 heads, MLP 72, vocab 96), --json: NSGA-II on (ppl, params, FLOPs) with resume, stratified random search
/// over log bins, Pareto local search on (ppl, latency) whose resume measures nothing again. Outputs are checked here
/// independently: n-dimensional dominance by brute force, hypervolume by inclusion–exclusion of boxes, bins by the
/// parameter counts the library's ParameterCount gives for each spec.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class MultiObjectiveSearchCliTests
{
    string _tmp = "", _data = "";

    [SetUp]
    public void SetUp()
    {
        _tmp = Path.Combine(Path.GetTempPath(), "whittle-mo-search-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_tmp);
        _data = SearchCliTests.WriteDataset(Path.Combine(_tmp, "data"), 96, 2000, 600, 1);
    }

    [TearDown] public void TearDown() { if (Directory.Exists(_tmp)) Directory.Delete(_tmp, true); }

    string[] Common(string outDir) =>
    [
        "search", "--model", CliRunner.Fixture("tiny-neox"), "--data", _data, "--budget-ratio", "1", "--tolerance", "0.9",
        "--space", "per-layer", "--population", "4", "--seq-len", "16", "--batch-size", "4", "--eval-tokens", "60", "--out", outDir,
        "--json",
    ];

    static List<JsonObject> Lines(string file) => File.ReadAllLines(file).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();

    static double[] Vector(JsonObject o, string[] names) => names.Select(n => o["objectives"]![n]!.GetValue<double>()).ToArray();

    static bool Dominates(double[] a, double[] b) =>
        a.Zip(b).All(x => x.First <= x.Second) && a.Zip(b).Any(x => x.First < x.Second);

    /// <summary>Volume of ∪ [p, r] by inclusion–exclusion over every non-empty subset (the intersection of boxes is the box
    /// at the coordinate-wise maximum).</summary>
    static double InclusionExclusion(IReadOnlyList<double[]> points, double[] r)
    {
        var inside = points.Where(p => p.Zip(r).All(x => x.First < x.Second)).ToList();
        double volume = 0;
        for (int mask = 1; mask < 1 << inside.Count; mask++)
        {
            var corner = new double[r.Length];
            int bits = 0;
            for (int i = 0; i < inside.Count; i++)
                if ((mask >> i & 1) == 1) { bits++; for (int k = 0; k < r.Length; k++) corner[k] = Math.Max(corner[k], inside[i][k]); }
            volume += (bits % 2 == 1 ? 1 : -1) * corner.Zip(r).Aggregate(1.0, (v, x) => v * (x.Second - x.First));
        }
        return volume;
    }

    [Test]
    public void Nsga2OnThreeObjectivesWritesTheFrontHypervolumesPlotsAndResumes()
    {
        var outDir = Path.Combine(_tmp, "nsga2");
        string[] run = [.. Common(outDir), "--strategy", "nsga2", "--objectives", "ppl,params,flops"];
        var r = CliRunner.Run([.. run, "--evaluations", "6"]);
        Assert.That(r.Exit, Is.EqualTo(0), r.Stderr);
        var summary = JsonNode.Parse(r.Stdout)!.AsObject();
        string[] names = ["ppl", "params", "flops"];
        Assert.That(summary["objectives"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(names));
        Assert.That(summary["strategies"]!.AsObject().Select(kv => kv.Key), Is.EqualTo(new[] { "nsga2", "random", "importance" }));

        // history.jsonl: every candidate once, with its objectives; pareto.json: exactly the non-dominated ones.
        var history = Lines(Path.Combine(outDir, "history.jsonl"));
        var config = GptNeoXConfig.Load(CliRunner.Fixture("tiny-neox"));
        double[] Objectives(JsonObject h) => [h["perplexity"]!.GetValue<double>(), h["params"]!["total"]!.GetValue<long>(),
            h["flops_per_token"]!["total"]!.GetValue<long>()];
        foreach (var h in history)
        {
            var a = SubnetSpec.FromJson(h["spec"]!.AsObject(), config);
            Assert.That(h["params"]!["total"]!.GetValue<long>(), Is.EqualTo(ParameterCount.Of(config, a).Total));
            Assert.That(h["flops_per_token"]!["total"]!.GetValue<long>(), Is.EqualTo(SubnetCosts.FlopsPerToken(config, a, 16).Total));
        }
        var points = history.Select(Objectives).ToList();
        var pareto = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "pareto.json")))!.AsArray().Select(n => n!.AsObject()).ToList();
        var expected = history.Where((h, i) => !points.Any(q => Dominates(q, points[i]))).Select(h => h["spec"]!.ToJsonString());
        Assert.That(pareto.Select(p => p["spec"]!.ToJsonString()), Is.EquivalentTo(expected));
        foreach (var p in pareto) Assert.That(Vector(p, names), Is.EqualTo(Objectives(p)));

        // Hypervolume per strategy: rescale by the run's best and worst values, reference 1.1, inclusion–exclusion.
        var lo = Enumerable.Range(0, 3).Select(k => points.Min(p => p[k])).ToArray();
        var hi = Enumerable.Range(0, 3).Select(k => points.Max(p => p[k])).ToArray();
        double[] Scale(double[] p) => p.Select((v, k) => (v - lo[k]) / (hi[k] > lo[k] ? hi[k] - lo[k] : 1)).ToArray();
        foreach (var (name, node) in summary["strategies"]!.AsObject())
        {
            var mine = node!["candidates_evaluated"]!.AsArray().Select(c => Scale(Vector(c!.AsObject(), names))).ToList();
            Assert.That(node["hypervolume"]!.GetValue<double>(), Is.EqualTo(InclusionExclusion(mine, [1.1, 1.1, 1.1])).Within(1e-9), name);
        }
        Assert.That(summary["hypervolume"]!["reference_point"]!["params"]!.GetValue<double>(),
            Is.EqualTo(lo[1] + 1.1 * (hi[1] - lo[1])).Within(1e-6));
        foreach (var svg in new[] { "pareto-params.svg", "pareto-flops.svg" })
            Assert.That(File.ReadAllText(Path.Combine(outDir, svg)), Does.StartWith("<svg").And.Contain("nsga2"));

        // Resume: NSGA-II re-proposes its first 6 from the history and evaluates only new ones.
        var again = CliRunner.Run([.. run, "--evaluations", "9", "--resume"]);
        Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
        var summary2 = JsonNode.Parse(again.Stdout)!.AsObject();
        var first = summary["strategies"]!["nsga2"]!["candidates_evaluated"]!.AsArray().Select(c => c!["spec"]!.ToJsonString());
        var second = summary2["strategies"]!["nsga2"]!["candidates_evaluated"]!.AsArray().Select(c => c!["spec"]!.ToJsonString());
        Assert.That(second.Take(6), Is.EqualTo(first));
        Assert.That(summary2["from_history"]!.GetValue<int>(), Is.GreaterThanOrEqualTo(6));
        var history2 = Lines(Path.Combine(outDir, "history.jsonl"));
        Assert.That(history2, Has.Count.EqualTo(history.Count + summary2["evaluated"]!.GetValue<int>()));
    }

    [Test]
    public void StratifiedSearchFillsEveryLogBin()
    {
        var outDir = Path.Combine(_tmp, "stratified");
        string[] run = [.. Common(outDir), "--strategy", "stratified", "--bins", "3", "--bin-spacing", "log", "--evaluations", "6",
            "--baselines", "false"];
        var r = CliRunner.Run(run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Stderr);
        var node = JsonNode.Parse(r.Stdout)!["strategies"]!["stratified"]!;
        var bins = node["bins"]!;
        Assert.That(bins["spacing"]!.GetValue<string>(), Is.EqualTo("log"));
        var edges = bins["edges"]!.AsArray().Select(e => e!.GetValue<long>()).ToArray();
        Assert.That(edges, Has.Length.EqualTo(4));
        // Geometric edges: each bin's upper edge over its lower one is the same ratio (to rounding of one parameter).
        double ratio = Math.Pow((double)edges[3] / edges[0], 1.0 / 3);
        for (int i = 1; i < 3; i++) Assert.That(edges[i], Is.EqualTo(edges[0] * Math.Pow(ratio, i)).Within(1.0));
        Assert.That(bins["candidates_per_bin"]!.AsArray().Select(n => n!.GetValue<int>()), Is.EqualTo(new[] { 2, 2, 2 }));
        var config = GptNeoXConfig.Load(CliRunner.Fixture("tiny-neox"));
        var counts = node["candidates_evaluated"]!.AsArray()
            .Select(c => ParameterCount.Of(config, SubnetSpec.FromJson(c!["spec"]!.AsObject(), config)).Total).ToList();
        // Round-robin: the i-th candidate comes from bin i mod 3 (its window reaches one parameter below the edge).
        for (int i = 0; i < counts.Count; i++) Assert.That(counts[i], Is.InRange(edges[i % 3] - 1, edges[i % 3 + 1]), $"candidate {i}");
        // Resume: the same seed draws the same candidates, all answered from history.jsonl.
        var again = CliRunner.Run([.. run, "--resume"]);
        Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
        var summary2 = JsonNode.Parse(again.Stdout)!.AsObject();
        Assert.That((summary2["evaluated"]!.GetValue<int>(), summary2["from_history"]!.GetValue<int>()), Is.EqualTo((0, 6)));
    }

    [Test]
    public void LocalSearchOnLatencyMeasuresEachSubNetworkOnceAcrossAResume()
    {
        var outDir = Path.Combine(_tmp, "local");
        string[] run = [.. Common(outDir), "--strategy", "local", "--objectives", "ppl,latency", "--latency-batch", "2",
            "--latency-seq-len", "8", "--latency-warmup", "1", "--latency-runs", "3", "--evaluations", "5", "--baselines", "false"];
        var r = CliRunner.Run(run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Stderr);
        var summary = JsonNode.Parse(r.Stdout)!.AsObject();
        Assert.That(summary["latency"]!["measured"]!.GetValue<int>(), Is.EqualTo(5));
        var history = Lines(Path.Combine(outDir, "history.jsonl"));
        Assert.That(history, Has.Count.EqualTo(5));
        foreach (var h in history)
        {
            Assert.That(h["latency"]!["ms"]!.GetValue<double>(), Is.GreaterThan(0));
            Assert.That((h["latency"]!["device"]!.GetValue<string>(), h["latency"]!["batch"]!.GetValue<int>(),
                h["latency"]!["seq_len"]!.GetValue<int>()), Is.EqualTo(("cpu", 2, 8)));
        }
        Assert.That(File.Exists(Path.Combine(outDir, "pareto-latency.svg")));
        var again = CliRunner.Run([.. run, "--resume"]);
        Assert.That(again.Exit, Is.EqualTo(0), again.Stderr);
        var summary2 = JsonNode.Parse(again.Stdout)!.AsObject();
        Assert.That(summary2["latency"]!["measured"]!.GetValue<int>(), Is.EqualTo(0), "every latency came from latency-cache.json");
        Assert.That(summary2["from_history"]!.GetValue<int>(), Is.EqualTo(5));
        Assert.That(summary2["evaluated"]!.GetValue<int>(), Is.EqualTo(0));
    }

    [TestCase("--objectives", "ppl,ppl", "names an objective twice")]
    [TestCase("--objectives", "params,flops", "must be ppl and at least one")]
    [TestCase("--objectives", "ppl,speed", "unknown objective 'speed'")]
    [TestCase("--strategy", "nsga3", "--strategy must be")]
    [TestCase("--bin-spacing", "cubic", "--bin-spacing must be linear or log")]
    [TestCase("--latency-runs", "0", "--latency-runs")]
    public void BadOptionsFailInOneLineBeforeAnyWork(string option, string value, string message)
    {
        var outDir = Path.Combine(_tmp, "never");
        string[] extra = option == "--latency-runs" ? ["--objectives", "ppl,latency"] : [];
        var r = CliRunner.Run([.. Common(outDir), "--evaluations", "2", option, value, .. extra]);
        Assert.That(r.Exit, Is.EqualTo(1), r.Stdout + r.Stderr);
        Assert.That(r.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.Contain(message));
        Assert.That(Directory.Exists(outDir), Is.False);
    }
}
