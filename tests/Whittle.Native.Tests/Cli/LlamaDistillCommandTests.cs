using System.Text.Json.Nodes;
using Whittle.Native.Data;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tests.Distillation;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// `distill`, `salt`, `cache-teacher` and `salt-select` with Llama-family models (a GQA teacher, new students and large
/// models of any family from --family, cross-family pairs on one tokenizer), and mismatched vocabularies refused in
/// one line before any work. Each run's step-1 losses are checked against a float64 reference computed from the two
/// models' own Forward logits on the batch step 1 trains on (KdReference): the run's student is the random model of its
/// config and --seed, recreated here. Tolerance 1e-5 relative: the logged CE and KD are double means of per-row values
/// the fused loss writes as f32 (2^-24 relative each), from logits that are bit-identical to the reference's (the same
/// CPU backend, shapes and weights); the loss itself is an f32 weighted mean of those rows.
/// </summary>
[NonParallelizable]   // InProcessCli captures the console
[Category(TestBackends.GemmSensitive)]
public class LlamaDistillCommandTests
{
    const int B = 2, T = 16, Vocab = 4096;
    const double Tolerance = 1e-5;
    static string _root = "";
    static string LlamaTeacher => Path.Combine(_root, "llama-teacher");
    static string NeoxTeacher => Path.Combine(_root, "neox-teacher");

    /// <summary>GQA: 4 query heads reading 2 kv heads.</summary>
    static LlamaConfig Gqa => new()
    {
        Family = "llama", VocabSize = Vocab, HiddenSize = 32, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2,
        IntermediateSize = 64, MaxPositionEmbeddings = 64,
    };

    [OneTimeSetUp]
    public void MakeTeachers()
    {
        _root = Directory.CreateTempSubdirectory("whittle-llama-kd-").FullName;
        OpinionatedTeacher.Save(Gqa, 9, LlamaTeacher);
        OpinionatedTeacher.Save(new GptNeoXConfig { VocabSize = Vocab, HiddenSize = 32, NumLayers = 2, NumHeads = 2, IntermediateSize = 64,
            MaxPositionEmbeddings = 64 }, 9, NeoxTeacher);
    }

    [OneTimeTearDown]
    public void Cleanup() { try { Directory.Delete(_root, true); } catch (IOException) { } }

    static string[] Shape(string run, int steps, ulong seed = 1) =>
        ["--data", TestData.AustenSlice, "--out", run, "--steps", steps.ToString(), "--seq-len", T.ToString(), "--batch-size",
            B.ToString(), "--seed", seed.ToString(), "--eval-tokens", "256"];

    static List<JsonNode> StepLines(string run) =>
        File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(o => o["loss"] is not null).ToList();

    static double Get(JsonNode o, string key) => o[key]!.GetValue<double>();

    /// <summary>The reference CE (τ = 1) and τ²·KL(teacher‖student) of step 1 of a run whose student is final/'s config at
    /// --seed.</summary>
    static (double Ce, double Kd, double[] LogQ, double[] LogP) StepOne(string teacherDir, string run, ulong seed, double tau)
    {
        var (inputs, targets) = KdReference.FirstBatch(TestData.AustenSlice, B, T, seed);
        using var teacher = KdReference.Load(teacherDir);
        using var student = OpinionatedTeacher.Random(ModelConfig.Load(Path.Combine(run, "final")), seed);
        double ce = KdReference.CrossEntropy(KdReference.LogSoftmax(student, inputs, B, T), targets, Vocab);
        var logQ = KdReference.LogSoftmax(teacher, inputs, B, T, tau);
        var logP = KdReference.LogSoftmax(student, inputs, B, T, tau);
        return (ce, KdReference.ForwardKl(logQ, logP, Vocab, tau), logQ, logP);
    }

    static void AssertRelative(double actual, double expected, string what) =>
        Assert.That(Math.Abs(actual - expected), Is.LessThanOrEqualTo(Tolerance * Math.Abs(expected)), $"{what}: {actual} vs {expected}");

    /// <summary>
    /// A Llama GQA teacher into a new Qwen3 (QK-norm, MQA) student, into a new GPT-NeoX student, and a GPT-NeoX teacher
    /// into a new tied Llama student: step 1's CE and KD are the float64 reference's and the loss is α·CE + β·KD.
    /// </summary>
    [TestCase("llama", "qwen3", new[] { "--family", "qwen3", "--kv-heads", "1" })]
    [TestCase("llama", "gpt_neox", new string[0])]
    [TestCase("neox", "llama", new[] { "--family", "llama", "--kv-heads", "1", "--tie-embeddings" })]
    public void DistillAcrossFamiliesMatchesTheFloat64Reference(string teacherName, string studentType, string[] family)
    {
        string teacher = teacherName == "llama" ? LlamaTeacher : NeoxTeacher;
        var run = Path.Combine(_root, $"distill-{teacherName}-{studentType}");
        var (exit, _, err) = InProcessCli.Run(["distill", "--teacher", teacher, .. Shape(run, 2), "--layers", "1", "--hidden", "32",
            "--heads", "2", "--alpha", "0.3", "--beta", "0.7", "--temperature", "2", .. family]);
        Assert.That(exit, Is.EqualTo(0), err);
        var config = ModelConfig.Load(Path.Combine(run, "final"));
        Assert.That(config.ModelType, Is.EqualTo(studentType));
        if (config is LlamaConfig l) Assert.That(l.NumKeyValueHeads, Is.EqualTo(1));
        var steps = StepLines(run);
        Assert.That(steps.Select(o => o["kd"] is not null), Is.EqualTo(new[] { true, true }));
        var (ce, kd, _, _) = StepOne(teacher, run, 1, 2);
        Assert.That(kd, Is.GreaterThan(0.1), "a real KD signal to compare");
        AssertRelative(Get(steps[0], "ce"), ce, "step 1 CE");
        AssertRelative(Get(steps[0], "kd"), kd, "step 1 τ²·KL");
        AssertRelative(Get(steps[0], "loss"), 0.3 * ce + 0.7 * kd, "step 1 loss α·CE + β·KD");
    }

    /// <summary>SALT with a Llama small model and a new Qwen2 large one: (1−ω)·CE + ω·KL for the first n_KD steps, then CE.</summary>
    [Test]
    public void SaltWithLlamaModelsMatchesTheFloat64Reference()
    {
        var run = Path.Combine(_root, "salt-llama");
        var (exit, _, err) = InProcessCli.Run(["salt", "--small", LlamaTeacher, .. Shape(run, 3), "--kd-steps", "2", "--omega", "0.4",
            "--family", "qwen2", "--kv-heads", "2", "--layers", "2", "--hidden", "48", "--heads", "4"]);
        Assert.That(exit, Is.EqualTo(0), err);
        var config = (LlamaConfig)ModelConfig.Load(Path.Combine(run, "final"));
        Assert.That(config is { Family: "qwen2", NumHeads: 4, NumKeyValueHeads: 2, HiddenSize: 48 });
        var steps = StepLines(run);
        Assert.That(steps.Where(o => o["kd"] is not null).Select(o => o["step"]!.GetValue<int>()), Is.EqualTo(new[] { 1, 2 }));
        var (ce, kd, _, _) = StepOne(LlamaTeacher, run, 1, 1);
        AssertRelative(Get(steps[0], "ce"), ce, "step 1 CE");
        AssertRelative(Get(steps[0], "kd"), kd, "step 1 KL(small‖large)");
        AssertRelative(Get(steps[0], "loss"), 0.6 * ce + 0.4 * kd, "step 1 loss (1−ω)·CE + ω·KL");
    }

    /// <summary>
    /// cache-teacher on the Llama teacher (k = V), then distill --teacher-cache into a new Llama student: step 1's KD is
    /// the live teacher's float64 KL up to the cache's f16 rounding (KdReference.F16Bound), its CE the reference's.
    /// </summary>
    [Test]
    public void CacheTeacherAndDistillFromTheCacheOnLlama()
    {
        const ulong seed = 3;
        var cache = Path.Combine(_root, "llama-cache");
        var (e1, _, err1) = InProcessCli.Run("cache-teacher", "--teacher", LlamaTeacher, "--data", TestData.AustenSlice, "--seq-len",
            T.ToString(), "--batch-size", B.ToString(), "--seed", seed.ToString(), "--top-k", Vocab.ToString(), "--steps", "2", "--out",
            cache);
        Assert.That(e1, Is.EqualTo(0), err1);
        Assert.That(TeacherCacheManifest.Load(cache).Vocab, Is.EqualTo(Vocab));
        var run = Path.Combine(_root, "distill-from-llama-cache");
        var (e2, _, err2) = InProcessCli.Run(["distill", "--teacher-cache", cache, .. Shape(run, 2, seed), "--family", "llama",
            "--kv-heads", "1", "--layers", "1", "--hidden", "32", "--heads", "2"]);
        Assert.That(e2, Is.EqualTo(0), err2);
        var steps = StepLines(run);
        Assert.That(steps.Select(o => o["kd"] is not null), Is.EqualTo(new[] { true, true }));
        var (ce, kd, logQ, logP) = StepOne(LlamaTeacher, run, seed, 1);
        double bound = KdReference.F16Bound(logQ, logP, Vocab, Vocab);
        Assert.That(bound, Is.LessThan(0.01 * kd), "the bound is tight enough to mean something");
        AssertRelative(Get(steps[0], "ce"), ce, "step 1 CE");
        Assert.That(Get(steps[0], "kd"), Is.EqualTo(kd).Within(bound + Tolerance * kd), "step 1 KD from the cache");
    }

    /// <summary>salt-select with the Llama model: every selected window's score is the median of its kept float64 losses.</summary>
    [Test]
    public void SaltSelectScoresWindowsWithALlamaModel()
    {
        var sel = Path.Combine(_root, "llama-selection.json");
        var (exit, _, err) = InProcessCli.Run("salt-select", "--small", LlamaTeacher, "--data", TestData.AustenSlice, "--top-k", "50",
            "--keep", "0.5", "--seq-len", T.ToString(), "--max-sequences", "8", "--out", sel);
        Assert.That(exit, Is.EqualTo(0), err);
        var result = SaltResult.Load(sel);
        Assert.That(result.Windows, Is.EqualTo(8));
        Assert.That(result.Selected.Count, Is.EqualTo((int)Math.Ceiling(0.5 * result.Scored)).And.GreaterThan(0));
        using var data = TokenDataset.Open(TestData.AustenSlice);
        using var model = KdReference.Load(LlamaTeacher);
        foreach (var w in result.Selected)
        {
            var window = new int[T + 1];
            data.Train.Read(SaltSelection.WindowStart(w.Window, T), window);
            var logP = KdReference.LogSoftmax(model, window[..T], 1, T);
            var kept = new List<double>();
            for (int t = 0; t < T; t++)
            {
                var row = logP.AsSpan(t * Vocab, Vocab);
                double target = row[window[t + 1]];
                int above = 0;
                foreach (var x in row) if (x > target) above++;
                if (above < 50) kept.Add(-target);
            }
            kept.Sort();
            int m = kept.Count / 2;
            double median = kept.Count % 2 == 1 ? kept[m] : 0.5 * (kept[m - 1] + kept[m]);
            Assert.That(w.KeptTokens, Is.EqualTo(kept.Count), $"window {w.Window}");
            // a 1-row and a 4-row forward: f32 rounding of the logits (SaltSelectionTests: 1e-5 on losses of ~8)
            Assert.That(w.Score, Is.EqualTo(median).Within(Tolerance * median), $"window {w.Window}");
        }
    }

    /// <summary>Vocabularies that differ (teacher vs student, small vs large, a model smaller than the dataset's tokenizer).</summary>
    [Test]
    public void MismatchedVocabulariesAreRefusedInOneLineBeforeAnyWork()
    {
        var wide = Path.Combine(_root, "llama-5000");
        var narrow = Path.Combine(_root, "llama-4000");
        using (var m = OpinionatedTeacher.Random(Gqa with { VocabSize = 5000 }, 1)) ModelCheckpoint.Save(m, wide);
        using (var m = OpinionatedTeacher.Random(Gqa with { VocabSize = 4000 }, 1)) ModelCheckpoint.Save(m, narrow);
        var run = Path.Combine(_root, "refused");
        var cases = new (string[] Args, string[] Expected)[]
        {
            (["distill", "--teacher", LlamaTeacher, "--student", wide, .. Shape(run, 2)],
                ["vocabularies differ", "teacher's vocab_size is 4096", "student's 5000"]),
            (["distill", "--teacher", NeoxTeacher, "--student", wide, .. Shape(run, 2)],
                ["teacher's vocab_size is 4096", "student's 5000"]),
            (["distill", "--teacher", narrow, .. Shape(run, 2)], ["teacher's vocab_size is 4000", "(4096"]),
            (["salt", "--small", LlamaTeacher, "--large", wide, "--kd-steps", "1", .. Shape(run, 2)],
                ["small model's vocab_size is 4096", "large model's 5000"]),
            (["salt", "--small", narrow, "--kd-steps", "1", .. Shape(run, 2), "--family", "llama"], ["small model's vocab_size is 4000"]),
            (["cache-teacher", "--teacher", narrow, "--data", TestData.AustenSlice, "--seq-len", "16", "--steps", "1", "--out", run],
                ["teacher's vocab_size is 4000", "(4096"]),
            (["salt-select", "--small", narrow, "--data", TestData.AustenSlice, "--seq-len", "16", "--keep", "0.5", "--out",
                Path.Combine(_root, "s.json")],
                ["small model's vocab_size is 4000", "(4096"]),
        };
        foreach (var (args, expected) in cases)
        {
            var line = InProcessCli.UserError(InProcessCli.Run(args));
            foreach (var e in expected) Assert.That(line, Does.Contain(e), string.Join(' ', args.Take(5)));
            Assert.That(Directory.Exists(run), Is.False, $"{args[0]}: nothing written");
        }
    }

    /// <summary>
    /// --init-subnet on a Llama GQA teacher: the student is the sub-network of one query group (2 query heads, 1 kv head)
    /// and 32 MLP neurons, and step 1's CE is that of the teacher's in-place sub-network on the batch step 1 trains on
    /// (computed here through the teacher's own forward pass over the ActiveArchitecture, not through extraction).
    /// </summary>
    [Test]
    public void InitSubnetFromALlamaTeacherStartsFromItsSubNetwork()
    {
        var spec = Path.Combine(_root, "spec.json");
        File.WriteAllText(spec, """{"kv_heads": 1, "intermediate_size": 32}""");
        var run = Path.Combine(_root, "init-subnet");
        var (exit, _, err) = InProcessCli.Run(["distill", "--teacher", LlamaTeacher, "--init-subnet", spec, .. Shape(run, 1)]);
        Assert.That(exit, Is.EqualTo(0), err);
        var config = (LlamaConfig)ModelConfig.Load(Path.Combine(run, "final"));
        Assert.That(config is { NumHeads: 2, NumKeyValueHeads: 1, IntermediateSize: 32, HiddenSize: 32, NumLayers: 2 }, config.ToString());

        var (inputs, targets) = KdReference.FirstBatch(TestData.AustenSlice, B, T, 1);
        using var teacher = KdReference.Load(LlamaTeacher);
        var active = new ActiveArchitecture(32, [0, 1], [2, 2], [32, 32], [1, 1]);
        using var ids = Whittle.Native.Tensors.Tensor.FromArray(inputs, B, T);
        using var tape = new Whittle.Native.Autograd.Tape(teacher.Backend, recording: false);
        var logits = teacher.Forward(tape, ids, active).Data.ToFloatArray();   // (B·T, V)
        double ce = KdReference.CrossEntropySum(logits, targets, Vocab) / (B * T);
        AssertRelative(Get(StepLines(run)[0], "ce"), ce, "step 1 CE of the sub-network");
    }

    /// <summary>
    /// A new model's bos_token_id is what the dataset's documents start with: the Llama 3 template's BOS for a dataset
    /// tokenized with it (meta.json's document_prefix), EOS for the Austen (GPT-2 style) one, whose template adds none.
    /// </summary>
    [Test]
    public void NewModelsTakeTheBosTheirDatasetsDocumentsStartWith()
    {
        var tok = Tokenization.LlamaFamilyOracleTests.Load("llama3-like");
        var text = Path.Combine(_root, "llama3.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"CHAPTER {i}\nIt is a truth universally acknowledged, " +
            $"number {i}, that a single man in possession of a good fortune must be in want of a wife.\n")));
        var data = Path.Combine(_root, "llama3-data");
        DatasetWriter.Write(tok, new TokenizeOptions([text], data, ValFraction: 0.2, Seed: 1, DocStart: "^CHAPTER "));
        int bos = tok.SpecialPrefix.Single();
        var run = Path.Combine(_root, "llama3-pretrain");
        var (exit, _, err) = InProcessCli.Run("pretrain", "--family", "llama", "--data", data, "--out", run, "--steps", "1", "--seq-len",
            "16", "--batch-size", "2", "--layers", "1", "--hidden", "32", "--heads", "2", "--eval-tokens", "64");
        Assert.That(exit, Is.EqualTo(0), err);
        var config = ModelConfig.Load(Path.Combine(run, "final"));
        Assert.That((config.BosTokenId, config.EosTokenId), Is.EqualTo((bos, tok.EosId!.Value)));
        Assert.That(bos, Is.Not.EqualTo(tok.EosId));

        var neox = Path.Combine(_root, "austen-pretrain");
        var (e2, _, err2) = InProcessCli.Run("pretrain", "--data", TestData.AustenSlice, "--out", neox, "--steps", "1", "--seq-len", "16",
            "--batch-size", "2", "--layers", "1", "--hidden", "32", "--heads", "2", "--eval-tokens", "64");
        Assert.That(e2, Is.EqualTo(0), err2);
        var austen = ModelConfig.Load(Path.Combine(neox, "final"));
        Assert.That(austen.BosTokenId, Is.EqualTo(austen.EosTokenId));
    }
}
