using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using Whittle.Native.Training;
using Whittle.Native.Tests.Cli;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// Supernet training (whittle's first stage): a sub-network's gradient lands in the parent's slices (checked against the
/// extracted dense copy's gradient), each strategy samples what it says, stratification spreads draws over the parameter
/// bins, resume is bit-identical, sandwich training makes the smallest sub-network good without costing the whole
/// network much, and the CLI writes what it documents.
/// </summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class SupernetTrainingTests
{
    static string _root = "";

    [OneTimeSetUp]
    public void MakeRoot() => _root = Directory.CreateTempSubdirectory("whittle-supernet-").FullName;

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    // ---------------------------------------------------------------- gradients through the views

    /// <summary>Host values of a gradient tensor as (rows, cols) (vectors: one row).</summary>
    static (float[] Values, int Rows, int Cols) Host(Tensor t) =>
        (t.ToFloatArray(), t.Rank == 1 ? 1 : t.Size(0), t.Rank == 1 ? t.Size(0) : t.Size(1));

    [Test]
    public void SubnetGradientsLandInTheParentsSlicesAndNowhereElse()
    {
        var shapes = Shapes().ToArray();
        var cases = new[]
        {
            (shapes[0], new ActiveArchitecture(16, [0, 1], [2, 2], [24, 24])),
            (shapes[1], new ActiveArchitecture(16, [0, 2], [3, 1], [8, 40])),
        };
        ulong seed = 500;
        foreach (var (c, a) in cases)
        {
            using var parent = RandomModel(c, seed++);
            var ids = RandomIds(c.VocabSize, 2, 7, seed++);
            int n = 2 * 6;
            var inputs = new int[n]; var targets = new int[n];
            for (int b = 0; b < 2; b++) for (int t = 0; t < 6; t++) { inputs[b * 6 + t] = ids[b, t]; targets[b * 6 + t] = ids[b, t + 1]; }
            using var x = Tensor.FromArray(inputs, 2, 6);
            using var y = Tensor.FromArray(targets, n);
            float[] Gradients(GptNeoX m, ActiveArchitecture? active)
            {
                m.Parameters.EnsureGrad();
                m.Parameters.ZeroGrad();
                using var tape = new Tape(m.Backend);
                tape.Backward(m.Loss(tape, x, y, active));
                return m.Parameters.FlatGrad!.ToFloatArray();
            }
            var inPlace = Gradients(parent, a);
            using var child = Extraction.Extract(parent, a);
            Gradients(child, null);

            // Every child tensor is the leading block of a parent tensor (child layer i = parent layer a.Layers[i]); the
            // parent's gradient there must be the child's, and zero everywhere else (layers and rows the sub-network skips).
            var covered = new bool[inPlace.Length];
            double worst = 0, scale = 0;
            foreach (var cp in child.Parameters.Entries)
            {
                string name = Regex.Replace(cp.Name, @"layers\.(\d+)\.", m => $"layers.{a.Layers[int.Parse(m.Groups[1].Value)]}.");
                var pp = parent.Parameters.Entries.Single(e => e.Name == name);
                var (cg, rows, cols) = Host(child.Parameters.Grad(cp.Name));
                int parentCols = pp.Shape.Length == 1 ? (int)pp.Count : pp.Shape[1];
                for (int r = 0; r < rows; r++)
                    for (int col = 0; col < cols; col++)
                    {
                        long at = pp.Offset + (long)r * parentCols + col;
                        covered[at] = true;
                        worst = Math.Max(worst, Math.Abs(inPlace[at] - cg[r * cols + col]));
                        scale = Math.Max(scale, Math.Abs(cg[r * cols + col]));
                    }
            }
            // Same function, different f32 arrangements (strided views vs dense copies): forward and backward are each
            // ~12 dot products of length <= 48 deep, off by ~sqrt(k)·2^-24 of their Σ|terms|; 1e-4 of the largest
            // gradient is far above that and far below the O(1) error of a gradient in the wrong slice.
            Assert.That(worst / scale, Is.LessThanOrEqualTo(1e-4), $"{c.NumLayers}-layer parent: in-place vs extracted gradients");
            var strays = Enumerable.Range(0, inPlace.Length).Where(i => !covered[i] && inPlace[i] != 0).Take(3).ToList();
            Assert.That(strays, Is.Empty, "gradient outside the sub-network's slices");
        }
    }

    // ---------------------------------------------------------------- sampling

    static GptNeoXConfig Parent =>
        new() { VocabSize = 4096, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 128, MaxPositionEmbeddings = 64 };

    static GptNeoXConfig Small =>
        new() { VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    static SearchSpace Space(SpaceKind kind, GptNeoXConfig? c = null) =>
        new(c ?? Parent, kind, ParameterCount.Of(c ?? Parent).Total, 0.5);

    [Test]
    public void EachStrategySamplesWhatItSays()
    {
        foreach (var kind in new[] { SpaceKind.Uniform, SpaceKind.PerLayer, SpaceKind.Layers })
        {
            var space = Space(kind);
            var full = ActiveArchitecture.Full(Parent);
            var smallest = space.ToArchitecture(space.Smallest());
            var sandwich = new SubnetSampler(space, SupernetStrategy.Sandwich, 3, seed: 5);
            var random = new SubnetSampler(space, SupernetStrategy.Random, 2, seed: 5);
            var standard = new SubnetSampler(space, SupernetStrategy.Standard, 0, seed: 5);
            var seen = new HashSet<string>();
            for (int step = 1; step <= 20; step++)
            {
                var s = sandwich.ForStep(step);
                Assert.That(s.Select(x => x.Name), Is.EqualTo(new[] { "largest", "random1", "random2", "random3", "smallest" }));
                Assert.That(SubnetSpec.Key(s[0].Architecture), Is.EqualTo(SubnetSpec.Key(full)), "sandwich: the whole network first");
                Assert.That(SubnetSpec.Key(s[^1].Architecture), Is.EqualTo(SubnetSpec.Key(smallest)), "sandwich: the smallest last");
                Assert.That(s[0].Parameters, Is.EqualTo(ParameterCount.Of(Parent)));
                foreach (var x in s) { x.Architecture.Validate(Parent); seen.Add(SubnetSpec.Key(x.Architecture)); }
                Assert.That(random.ForStep(step).Select(x => x.Role), Is.All.EqualTo(SubnetRole.Random));
                Assert.That(random.ForStep(step), Has.Count.EqualTo(2));
                Assert.That(standard.ForStep(step).Select(x => SubnetSpec.Key(x.Architecture)), Is.EqualTo(new[] { SubnetSpec.Key(full) }));
                // A function of (seed, step): a second sampler (a resumed run) draws the same.
                var again = new SubnetSampler(space, SupernetStrategy.Sandwich, 3, seed: 5).ForStep(step);
                Assert.That(again.Select(x => SubnetSpec.Key(x.Architecture)), Is.EqualTo(s.Select(x => SubnetSpec.Key(x.Architecture))));
            }
            Assert.That(seen, Has.Count.GreaterThan(10), $"{kind}: random draws vary from step to step");
        }
    }

    [Test]
    public void StratifiedDrawsSpreadOverTheParameterBins()
    {
        // Small vocabulary, four layers: the non-embedding parameters dominate, and a sum of four per-layer sizes drawn
        // uniformly is bell-shaped, so plain draws are far from uniform over the bins.
        var deep = new GptNeoXConfig
        {
            VocabSize = 64, HiddenSize = 64, NumLayers = 4, NumHeads = 4, IntermediateSize = 256, MaxPositionEmbeddings = 64,
        };
        var space = Space(SpaceKind.PerLayer, deep);
        const int bins = 4, draws = 1000;
        var plain = new SubnetSampler(space, SupernetStrategy.Random, 1, seed: 9);
        var strat = new SubnetSampler(space, SupernetStrategy.Random, 1, seed: 9, bins: bins);
        long Total(Genome g) => ParameterCount.Of(deep, space.ToArchitecture(g)).Total;
        var plainCounts = new int[bins]; var stratCounts = new int[bins];
        for (int i = 1; i <= draws; i++)
        {
            plainCounts[strat.BinOf(Total(plain.Draw(i, 1)))]++;
            stratCounts[strat.BinOf(Total(strat.Draw(i, 1)))]++;
        }
        // Plain draws pile up in the small bins (the last holds about 1% of them). Every bin holds points, and a draw
        // ends in its chosen bin (by rejection, or from the pool), so stratified draws land in each bin with probability
        // 1/4: 250 expected, standard deviation sqrt(1000·0.25·0.75) ≈ 14, asserted within 5σ.
        Assert.That(strat.OccupiedBins, Is.EqualTo(new[] { 0, 1, 2, 3 }));
        Assert.That(plainCounts.Min(), Is.LessThan(draws / bins / 4), "the test needs a skewed space");
        foreach (var c in stratCounts) Assert.That(c, Is.InRange(250 - 70, 250 + 70), $"stratified: [{string.Join(", ", stratCounts)}]");
        for (int b = 0; b < bins; b++)
        {
            var (lo, hi) = strat.BinRange(b);
            Assert.That(strat.BinOf(lo), Is.EqualTo(b)); Assert.That(strat.BinOf(hi), Is.EqualTo(b));
        }
        Assert.That(strat.BinRange(0).Lo, Is.EqualTo(Total(space.Smallest())));
        Assert.That(strat.BinRange(bins - 1).Hi, Is.EqualTo(Total(space.Largest())));
    }

    // ---------------------------------------------------------------- training

    static TrainOptions Options(string run, int steps, int saveEvery = 0, ulong seed = 7, float lr = 3e-3f) => new()
    {
        RunDir = run, SeqLen = 32, MicroBatch = 8, GradAccum = 1, Steps = steps, SaveEvery = saveEvery, EvalTokens = 4096, Seed = seed,
        Schedule = new LrSchedule(ScheduleKind.Cosine, lr, lr / 10, 2, steps), Adam = new AdamWSettings(lr),
    };

    sealed record Run(float[] Weights, string[] Metrics, double SmallestLoss, double LargestLoss);

    static Run Train(string run, SupernetStrategy strategy, int k, int steps, DistillSettings? kd = null, int bins = 0,
        int saveEvery = 0, int stopAfter = int.MaxValue, bool resume = false, GptNeoXConfig? config = null, ulong seed = 7,
        float lr = 3e-3f, int embedStep = 8, bool evaluate = true)
    {
        var c = config ?? Parent;
        using var data = TokenDataset.Open(TestData.AustenSlice);
        using var model = GptNeoX.CreateRandom(c, CpuBackend.Instance, seed + 4);
        var o = Options(run, steps, saveEvery, seed, lr);
        using var trainer = new Trainer(model, data, o);
        if (resume) Assert.That(trainer.TryResume(), Is.True, "a checkpoint to resume from");
        var space = new SearchSpace(c, SpaceKind.Uniform, ParameterCount.Of(c).Total, 0.5, new StepSizes(embedStep, 1, 8));
        var sampler = new SubnetSampler(space, strategy, k, seed, bins);
        using var cts = new CancellationTokenSource();
        try
        {
            trainer.Run(SupernetTraining.Create(model, new SupernetSettings(sampler, kd)), r => { if (r.Step == stopAfter) cts.Cancel(); },
                cancel: cts.Token, annotate: SupernetTraining.Annotator(sampler));
        }
        catch (OperationCanceledException) { }
        double Val(Genome g) => !evaluate ? double.NaN
            : Perplexity.Evaluate(model, data.Val, o.SeqLen + 1, o.MicroBatch, o.EvalTokens, space.ToArchitecture(g)).Loss;
        return new Run(model.Parameters.Flat.ToFloatArray(), File.ReadAllLines(trainer.MetricsPath), Val(space.Smallest()),
            Val(space.Largest()));
    }

    /// <summary>A metrics line without its wall-clock fields (the only part of a run that may differ between runs).</summary>
    static string Deterministic(string line)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        foreach (var k in new[] { "ms", "tokens_per_second", "elapsed_s", "eval_seconds" }) o.Remove(k);
        return o.ToJsonString();
    }

    [Test]
    public void ResumingHalfWayIsBitIdentical()
    {
        var kd = new DistillSettings(DistillKind.ForwardKl, 1f, 0.5f, 0.5f);
        Run Once(string run, int stopAfter = int.MaxValue, bool resume = false) => Train(run, SupernetStrategy.Sandwich, 1, steps: 4, kd,
            bins: 3, saveEvery: 2, stopAfter: stopAfter, resume: resume, config: Small, evaluate: false);
        var straight = Once(Path.Combine(_root, "straight"));
        var split = Path.Combine(_root, "split");
        Once(split, stopAfter: 2);
        var resumed = Once(split, resume: true);
        Assert.That(resumed.Weights, Is.EqualTo(straight.Weights), "weights after resume");
        Assert.That(resumed.Metrics.Select(Deterministic), Is.EqualTo(straight.Metrics.Select(Deterministic)), "metrics.jsonl");
        // Each step's line names every sampled sub-network with its size and loss.
        var first = JsonNode.Parse(straight.Metrics.First(l => l.Contains("\"subnets\"")))!;
        var subnets = first["subnets"]!.AsArray();
        Assert.That(subnets.Select(s => s!["name"]!.GetValue<string>()), Is.EqualTo(new[] { "largest", "random1", "smallest" }));
        Assert.That(subnets[0]!["params"]!.GetValue<long>(), Is.EqualTo(ParameterCount.Of(Small).Total));
        double mean = subnets.Average(s => s!["loss"]!.GetValue<double>());
        Assert.That(first["loss"]!.GetValue<double>(), Is.EqualTo(mean).Within(1e-12), "the step's loss is the mean of its sub-networks'");
    }

    [Test]
    public void StandardStrategyIsPlainTraining()
    {
        // --strategy standard must be pretrain: same weights bit for bit as the trainer's own loss on the same run.
        var standard = Train(Path.Combine(_root, "standard-plain"), SupernetStrategy.Standard, 0, steps: 3, config: Small,
            evaluate: false);
        using var data = TokenDataset.Open(TestData.AustenSlice);
        using var model = GptNeoX.CreateRandom(Small, CpuBackend.Instance, 11);
        using var trainer = new Trainer(model, data, Options(Path.Combine(_root, "pretrain-plain"), 3));
        trainer.Run();
        Assert.That(standard.Weights, Is.EqualTo(model.Parameters.Flat.ToFloatArray()));
    }

    [Test]
    public void SandwichMakesTheSmallestSubnetworkGoodAndKeepsTheWholeNetwork()
    {
        const int steps = 60;
        var standard = Train(Path.Combine(_root, "h-standard"), SupernetStrategy.Standard, 0, steps, lr: 1e-2f);
        var sandwich = Train(Path.Combine(_root, "h-sandwich"), SupernetStrategy.Sandwich, 2, steps, lr: 1e-2f);
        TestContext.Out.WriteLine($"smallest: standard {standard.SmallestLoss:F4}, sandwich {sandwich.SmallestLoss:F4}; " +
            $"largest: standard {standard.LargestLoss:F4}, sandwich {sandwich.LargestLoss:F4}");
        Assert.That(sandwich.SmallestLoss, Is.LessThan(standard.SmallestLoss - SmallestMargin));
        Assert.That(sandwich.LargestLoss, Is.LessThan(standard.LargestLoss + LargestBound));
    }

    /// <summary>
    /// Seeds 7–10 of this very setup (each run deterministic up to the CPU's rounding; seeds 8–10 measured once while
    /// choosing it): the smallest sub-network (embed_dim 8, one layer, one head, MLP width 8) ends at validation loss
    /// 7.57–7.71 after standard training (near the 8.32 of a uniform guess: nothing trains those slices for it alone) and
    /// 6.57–6.59 after sandwich training, a gap of 1.00–1.12 nats; the whole network ends 0.017 below to 0.025 above the
    /// standard run. The assertions take half the smallest gap seen (0.5 nats, a factor 1.65 in perplexity) and four
    /// times the largest cost seen (0.1 nats), so rounding differences between CPUs, which move a 60-step run's losses
    /// by far less, cannot flip them, while losing the effect would.
    /// </summary>
    const double SmallestMargin = 0.5, LargestBound = 0.1;

    // ---------------------------------------------------------------- the command

    [Test]
    public void CommandWritesSubnetsMetricsAndRefusesAResumeWithOtherSettings()
    {
        var modelDir = Path.Combine(_root, "cli-model");
        using (var m = GptNeoX.CreateRandom(Small, CpuBackend.Instance, 3)) ModelCheckpoint.Save(m, modelDir);
        var run = Path.Combine(_root, "cli-run");
        string[] common = ["train-supernet", "--model", modelDir, "--data", TestData.AustenSlice, "--out", run, "--seq-len", "16",
            "--batch-size", "2", "--steps", "2", "--eval-tokens", "64", "--space", "per-layer", "--stratify-bins", "3", "--json"];
        var r = InProcessCli.Run([.. common, "--inplace-kd"]);
        Assert.That(r.Exit, Is.EqualTo(0), r.Stderr);
        var summary = JsonNode.Parse(r.Stdout)!;
        Assert.That(summary["steps"]!.GetValue<int>(), Is.EqualTo(2));
        Assert.That(summary["supernet"]!["strategy"]!.GetValue<string>(), Is.EqualTo("sandwich"));
        Assert.That(summary["subnets"]!.AsArray().Select(s => s!["name"]!.GetValue<string>()), Is.EqualTo(new[] { "largest", "smallest" }));
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(o => o["subnets"] is not null);
        Assert.That(lines.Count(), Is.EqualTo(2));
        Assert.That(File.Exists(Path.Combine(run, "final", "model.safetensors")), Is.True);

        var error = InProcessCli.UserError(InProcessCli.Run([.. common, "--resume"]));
        Assert.That(error, Does.Contain("supernet.json").And.Contain("inplace_kd"));
        var standardKd = InProcessCli.UserError(InProcessCli.Run("train-supernet", "--model", modelDir, "--data", TestData.AustenSlice,
            "--out", Path.Combine(_root, "cli-other"), "--steps", "1", "--strategy", "standard", "--inplace-kd"));
        Assert.That(standardKd, Does.Contain("--inplace-kd"));
        Assert.That(Directory.Exists(Path.Combine(_root, "cli-other")), Is.False, "a refused run leaves nothing on disk");
    }

    /// <summary>
    /// A Llama GQA parent (4 query heads in 2 groups): sandwich training with in-place KD runs, and the sampled
    /// sub-networks keep whole query groups (the smallest has one kv head and its 2 query heads).
    /// </summary>
    [Test]
    public void CommandTrainsALlamaSupernetOfWholeQueryGroups()
    {
        var modelDir = Path.Combine(_root, "cli-llama");
        var config = new LlamaConfig
        {
            Family = "llama", VocabSize = 4096, HiddenSize = 32, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2,
            IntermediateSize = 64, MaxPositionEmbeddings = 64,
        };
        using (var m = Llama.CreateRandom(config, CpuBackend.Instance, 3)) ModelCheckpoint.Save(m, modelDir);
        var run = Path.Combine(_root, "cli-llama-run");
        var r = InProcessCli.Run("train-supernet", "--model", modelDir, "--data", TestData.AustenSlice, "--out", run, "--seq-len", "16",
            "--batch-size", "2", "--steps", "2", "--eval-tokens", "64", "--space", "uniform", "--inplace-kd", "--json");
        Assert.That(r.Exit, Is.EqualTo(0), r.Stderr);
        var steps = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(o => o["subnets"] is not null).ToList();
        Assert.That(steps, Has.Count.EqualTo(2));
        foreach (var sub in steps.SelectMany(o => o["subnets"]!.AsArray()))
        {
            Assert.That(double.IsFinite(sub!["loss"]!.GetValue<double>()), Is.True, sub.ToJsonString());
            var a = SubnetSpec.FromJson(sub["architecture"]!.AsObject(), config);
            for (int i = 0; i < a.Layers.Length; i++) Assert.That(a.Heads[i], Is.EqualTo(2 * a.KvHeads[i]), sub.ToJsonString());
        }
        var smallest = SubnetSpec.FromJson(steps[0]["subnets"]!.AsArray().Last()!["architecture"]!.AsObject(), config);
        Assert.That(smallest.KvHeads, Is.All.EqualTo(1));
        static string Shapes(ModelConfig c) => string.Join(';', c.Layout().Select(e => $"{e.Name}:{string.Join(',', e.Shape)}"));
        Assert.That(Shapes(ModelConfig.Load(Path.Combine(run, "final"))), Is.EqualTo(Shapes(config)), "the whole parent is saved");
    }
}
