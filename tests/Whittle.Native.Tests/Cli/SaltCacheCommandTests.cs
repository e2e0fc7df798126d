using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;
using Whittle.Native.Tests.Distillation;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// `whittle salt --teacher-cache`: the KD phase reads the small model's soft labels from a `cache-teacher` cache instead
/// of running it. With k = the vocabulary the losses are the live small model's up to the cache's f16 rounding (a bound
/// computed here from both models' log-probabilities); with k &lt; V the bucketed KL is at most the full one. A cache that
/// does not fit the run is refused in one line before any work, and both paths log the soft labels' time (teacher_ms).
/// </summary>
[NonParallelizable]
[Category(TestBackends.GemmSensitive)]
public class SaltCacheCommandTests
{
    const int B = 2, T = 16, Vocab = 4096;
    const ulong Seed = 3;
    static string _root = "";
    static string Small => Path.Combine(_root, "small");
    static string Large => Path.Combine(_root, "large");
    /// <summary>Built once at τ = 1 for 2 steps of 2×16 tokens, seed 3: every token's whole distribution, and the top-16.</summary>
    static string CacheAll => Path.Combine(_root, "cache-all");
    static string Cache16 => Path.Combine(_root, "cache-16");

    static GptNeoXConfig Tiny =>
        new() { VocabSize = Vocab, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64, MaxPositionEmbeddings = 64 };

    static string[] Shape =>
        ["--data", TestData.AustenSlice, "--seq-len", T.ToString(), "--batch-size", B.ToString(), "--seed", Seed.ToString()];

    static string[] Salt(string run, int steps = 3, int kdSteps = 2) =>
        ["salt", "--large", Large, .. Shape, "--out", run, "--steps", steps.ToString(), "--kd-steps", kdSteps.ToString(), "--omega", "0.5",
         "--eval-tokens", "256", "--lr", "3e-3"];

    static void BuildCache(string dir, int topK, float temperature = 1, int steps = 2)
    {
        var (exit, _, err) = CliRunner.Run(["cache-teacher", "--teacher", Small, .. Shape, "--top-k", topK.ToString(), "--temperature",
            temperature.ToString(System.Globalization.CultureInfo.InvariantCulture), "--steps", steps.ToString(), "--out", dir]);
        Assert.That(exit, Is.EqualTo(0), err);
    }

    [OneTimeSetUp]
    public void MakeModelsAndCaches()
    {
        _root = Directory.CreateTempSubdirectory("whittle-saltcache-").FullName;
        OpinionatedTeacher.Save(Tiny, 9, Small);   // the small model is SALT's teacher
        using (var m = GptNeoX.CreateRandom(Tiny with { HiddenSize = 48, IntermediateSize = 96 }, CpuBackend.Instance, 4))
            GptNeoXCheckpoint.Save(m, Large, extraFiles: [TestData.TokenizerPath]);
        BuildCache(CacheAll, Vocab);
        BuildCache(Cache16, 16);
    }

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static List<JsonNode> StepLines(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(o => o["loss"] is not null).ToList();

    static List<JsonNode> Train(string run, params string[] how)
    {
        var (exit, _, err) = CliRunner.Run([.. Salt(run), .. how]);
        Assert.That(exit, Is.EqualTo(0), err);
        return StepLines(run);
    }

    /// <summary>
    /// Log-probabilities (double) of the small model (teacher, q) and of the large one before its first step (p) on the
    /// run's first micro-batch, the batch step 1 trains on: (B·T, V) each, row-major.
    /// </summary>
    static (double[] LogQ, double[] LogP) StepOneLogProbs()
    {
        var (inputs, _) = KdReference.FirstBatch(TestData.AustenSlice, B, T, Seed);
        using var small = KdReference.Load(Small);
        using var large = KdReference.Load(Large);
        return (KdReference.LogSoftmax(small, inputs, B, T), KdReference.LogSoftmax(large, inputs, B, T));
    }

    [Test]
    public void TheCacheGivesTheLiveSmallModelsLossesAndRunsNoSmallModel()
    {
        var live = Train(Path.Combine(_root, "live"), "--small", Small);
        var cached = Train(Path.Combine(_root, "cached"), "--teacher-cache", CacheAll);
        var top16 = Train(Path.Combine(_root, "cached-16"), "--teacher-cache", Cache16);
        foreach (var run in new[] { live, cached, top16 })
        {
            Assert.That(run.Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2, 3 }));
            Assert.That(run.Where(o => o["kd"] is not null).Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2 }),
                "KD for --kd-steps 2");
            Assert.That(run.Where(o => o["teacher_ms"] is not null).Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2 }),
                "the soft labels' time is logged exactly on the KD steps");
            Assert.That(run.All(o => o["elapsed_s"] is not null));
        }

        var (logQ, logP) = StepOneLogProbs();
        double bound = KdReference.F16Bound(logQ, logP, Vocab, Vocab), bound16 = KdReference.F16Bound(logQ, logP, 16, Vocab);
        double kdLive = live[0]["kd"]!.GetValue<double>(), kdAll = cached[0]["kd"]!.GetValue<double>();
        double kd16 = top16[0]["kd"]!.GetValue<double>();
        // The logged KD is a mean of per-row values the fused loss writes as f32: 1e-6 relative (16 of f32's 2^-24) covers
        // that rounding on both sides.
        double slack = 1e-6 * kdLive;
        TestContext.Out.WriteLine(
            $"step 1: kd live {kdLive}, cache k = V {kdAll} (bound {bound:e2}), cache k = 16 {kd16} (bound {bound16:e2})");
        Assert.That(kdLive, Is.GreaterThan(1), "a real KD signal to compare");
        Assert.That(bound, Is.LessThan(0.01 * kdLive), "the bound is tight enough to mean something");
        // Step 1: the same large model on the same batch, so the same CE, bit for bit; KD within the f16 bound.
        Assert.That(cached[0]["ce"]!.GetValue<double>(), Is.EqualTo(live[0]["ce"]!.GetValue<double>()));
        Assert.That(kdAll, Is.EqualTo(kdLive).Within(bound + slack), "k = V: the full KL up to the cache's f16 rounding");
        // (1 − ω)·CE + ω·KD with ω = 0.5: the loss moves by half the KD's difference (plus f32 rounding of the loss, 1e-6 relative).
        double lossLive = live[0]["loss"]!.GetValue<double>();
        Assert.That(cached[0]["loss"]!.GetValue<double>(), Is.EqualTo(lossLive).Within(0.5 * (bound + slack) + 1e-6 * lossLive));
        // k = 16: merging the tail into one bucket is a function of the token, so by the data-processing inequality the
        // bucketed KL is at most the full one (up to the same rounding).
        Assert.That(kd16, Is.GreaterThan(0));
        Assert.That(kd16, Is.LessThanOrEqualTo(kdLive + bound16 + slack));
    }

    /// <summary>`salt --baseline`: the same run without a small model, so no step consults a teacher (no kd, no teacher_ms).</summary>
    [Test]
    public void TheBaselineRunsWithoutASmallModel()
    {
        var run = Train(Path.Combine(_root, "baseline"), "--baseline");
        Assert.That(run.Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(run.Any(o => o["kd"] is not null || o["teacher_ms"] is not null), Is.False);
        Assert.That(run.All(o => o["elapsed_s"] is not null));
    }

    [TestCase("--batch-size", "4", "built with --batch-size 2, but this run uses 4")]
    [TestCase("--seq-len", "8", "built with --seq-len 16, but this run uses 8")]
    [TestCase("--seed", "5", "built with --seed 3, but this run uses 5")]
    [TestCase("--kd-steps", "3", "holds 2 micro-batches (2 steps × grad-accum 1), but this run needs 3")]
    [TestCase("--top-k", "8", "the cache holds the top-16, but --top-k 8 was given")]
    [TestCase("--select", "selection.json", "--select draws the KD phase's batches from the selection")]
    [TestCase("--small", "small", "give exactly one of --small DIR or --teacher-cache DIR")]
    [TestCase("--baseline", null, "--baseline trains without the small model; drop --teacher-cache")]
    public void ACacheThatDoesNotFitTheRunIsRefusedBeforeAnyWork(string flag, string? value, string message)
    {
        var run = Path.Combine(_root, "bad-" + Guid.NewGuid().ToString("N"));
        var args = Salt(run).ToList();
        string[] extra = value is null ? [flag] : [flag, flag == "--small" ? Small : value];
        int at = args.IndexOf(flag);
        if (at >= 0) args[at + 1] = value!; else args.AddRange(extra);
        var (exit, _, err) = CliRunner.Run([.. args, "--teacher-cache", Cache16]);
        Assert.That(exit, Is.EqualTo(1), err);
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line");
        Assert.That(err, Does.Contain(message));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");
    }

    [Test]
    public void ACacheAtAnotherTemperatureForAnotherDatasetOrVocabularyIsRefused()
    {
        var hot = Path.Combine(_root, "cache-tau2");
        BuildCache(hot, 16, temperature: 2, steps: 1);
        var run = Path.Combine(_root, "tau2-run");
        var (exit, _, err) = CliRunner.Run([.. Salt(run, steps: 2, kdSteps: 1), "--teacher-cache", hot]);
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(err, Does.Contain(Path.Combine(hot, "manifest.json"))
            .And.Contain("built at temperature 2, but SALT's KD term is at τ = 1"));
        Assert.That(Directory.Exists(run), Is.False);

        var data = Path.Combine(_root, "other-data");
        Directory.CreateDirectory(data);
        foreach (var f in Directory.GetFiles(TestData.AustenSlice)) File.Copy(f, Path.Combine(data, Path.GetFileName(f)));
        var meta = Path.Combine(data, "meta.json");
        File.WriteAllText(meta, JsonNode.Parse(File.ReadAllText(meta))!.ToJsonString());   // same content, other bytes: another digest
        var args = Salt(Path.Combine(_root, "other-data-run")).ToList();
        args[args.IndexOf("--data") + 1] = data;
        var other = CliRunner.Run([.. args, "--teacher-cache", Cache16]);
        Assert.That(other.Exit, Is.EqualTo(1));
        Assert.That(other.Stderr, Does.Contain("built from a dataset whose meta.json has sha256").And.Contain(data));

        var wide = Path.Combine(_root, "large-5000");
        using (var m = GptNeoX.CreateRandom(Tiny with { VocabSize = 5000 }, CpuBackend.Instance, 1))
            GptNeoXCheckpoint.Save(m, wide, extraFiles: [TestData.TokenizerPath]);
        var wideArgs = Salt(Path.Combine(_root, "wide-run")).ToList();
        wideArgs[wideArgs.IndexOf("--large") + 1] = wide;
        var v = CliRunner.Run([.. wideArgs, "--teacher-cache", Cache16]);
        Assert.That(v.Exit, Is.EqualTo(1));
        Assert.That(v.Stderr, Does.Contain("the cached small model's vocab_size is 4096, the large model's 5000"));
    }
}
