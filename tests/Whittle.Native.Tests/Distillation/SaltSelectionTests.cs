using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Distillation;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Tests.Cli;
using Whittle.Native.Tests.Tokenization;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Distillation;

/// <summary>
/// SALT_DS selection on hand-built logits whose losses, top-k membership, medians and selections are known by hand;
/// the model-driven run against per-token cross-entropy from the backend and the SHA-256 of the raw token prefix;
/// the CLI's success path and its refusals of bad input before any work.
/// Tolerances: hand-built dyadic probabilities make log p exact in f32 up to one rounding of ln (1e-6 absolute on losses
/// of ~1). The model-driven scores are the same per-token cross-entropy computed for a batch of windows (SALT_DS) and
/// for one window (here): the logits of a 1-row and an N-row GEMM call may differ by f32 rounding (OpenBLAS picks
/// shape-dependent kernels), ~sqrt(k)·2^-24 of Σ|terms| ≈ 1e-7·|logit| per logit for k ≤ 32, which moves a loss of ~5 by
/// ≲ 1e-6; 1e-5 (and 1e-6 where both sides are batched alike) is that bound with margin, for every GEMM path.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class SaltSelectionTests
{
    // p = 1/2, 1/4, 1/8, 1/8
    static readonly float[] Dyadic = { MathF.Log(0.5f), MathF.Log(0.25f), MathF.Log(0.125f), MathF.Log(0.125f) };

    [Test]
    public void TokenLossAndTopKMembership()
    {
        var (loss, top1) = SaltSelection.Token(Dyadic, 0, 1);
        Assert.That(loss, Is.EqualTo(Math.Log(2)).Within(1e-6)); Assert.That(top1, Is.True);
        Assert.That(SaltSelection.Token(Dyadic, 1, 1).InTopK, Is.False, "one id (p = 1/2) is above it");
        Assert.That(SaltSelection.Token(Dyadic, 1, 2).InTopK, Is.True);
        Assert.That(SaltSelection.Token(Dyadic, 1, 2).Loss, Is.EqualTo(Math.Log(4)).Within(1e-6));
        // ids 2 and 3 tie at 1/8: two ids are strictly above either, so both are in the top-3 (ties favour the target)
        Assert.That(SaltSelection.Token(Dyadic, 3, 3).InTopK, Is.True);
        Assert.That(SaltSelection.Token(Dyadic, 2, 3).InTopK, Is.True);
        Assert.That(SaltSelection.Token(Dyadic, 3, 2).InTopK, Is.False);
        Assert.That(SaltSelection.Token(new float[] { 1, 1, 1 }, 2, 1).InTopK, Is.True, "all tied: every id counts as top-1");
    }

    [Test]
    public void MedianOddEvenAndEmpty()
    {
        Assert.That(SaltSelection.Median(new[] { 3.0, 1.0, 2.0 }), Is.EqualTo(2.0));
        Assert.That(SaltSelection.Median(new[] { 4.0, 1.0, 3.0, 2.0 }), Is.EqualTo(2.5), "even count: mean of the middle two");
        Assert.That(SaltSelection.Median(Array.Empty<double>()), Is.Null);
    }

    [Test]
    public void WindowScoreIsTheMedianOfKeptLosses()
    {
        var logits = Enumerable.Repeat(Dyadic, 4).SelectMany(r => r).ToArray();   // (T=4, V=4)
        int[] targets = { 0, 1, 3, 1 };                                           // losses ln2, ln4, ln8, ln4
        var k1 = SaltSelection.ScoreWindow(7, logits, targets, 4, 1)!;
        Assert.That((k1.Window, k1.KeptTokens), Is.EqualTo((7L, 1)));
        Assert.That(k1.Score, Is.EqualTo(Math.Log(2)).Within(1e-6));
        var k2 = SaltSelection.ScoreWindow(7, logits, targets, 4, 2)!;              // kept ln2, ln4, ln4 -> ln4
        Assert.That(k2.KeptTokens, Is.EqualTo(3));
        Assert.That(k2.Score, Is.EqualTo(Math.Log(4)).Within(1e-6));
        var k4 = SaltSelection.ScoreWindow(7, logits, targets, 4, 4)!;              // all: ln2, ln4, ln4, ln8 -> ln4 (mean of middle two)
        Assert.That(k4.Score, Is.EqualTo(Math.Log(4)).Within(1e-6));
        Assert.That(SaltSelection.ScoreWindow(7, logits, new[] { 3, 2, 3, 3 }, 4, 2), Is.Null, "no target in the top-2: dropped");
    }

    [Test]
    public void SelectionTakesTheTopFractionWithLowerIndexWinningTies()
    {
        var scored = new[] { new WindowScore(0, 1.0, 1), new WindowScore(1, 5.0, 1), new WindowScore(2, 3.0, 1), new WindowScore(3, 5.0, 1),
                             new WindowScore(4, 2.0, 1), new WindowScore(6, 3.0, 1) };
        Assert.That(
            SaltSelection.Select(scored, 0.5).Select(w => w.Window), Is.EqualTo(new long[] { 1, 2, 3 }),
            "⌈0.5·6⌉ = 3; 2 beats 6 on the tie");
        Assert.That(SaltSelection.Select(scored, 0.34).Select(w => w.Window), Is.EqualTo(new long[] { 1, 2, 3 }), "⌈0.34·6⌉ = 3");
        Assert.That(SaltSelection.Select(scored, 0.01).Select(w => w.Window), Is.EqualTo(new long[] { 1 }), "at least one");
        Assert.That(SaltSelection.Select(scored, 1.0).Count, Is.EqualTo(6));
        var ten = Enumerable.Range(0, 10).Select(i => new WindowScore(i, i, 1));
        Assert.That(SaltSelection.Select(ten, 0.3).Select(w => w.Window), Is.EqualTo(new long[] { 7, 8, 9 }), "0.3·10 is 3, not 4");
        foreach (var bad in new[] { 0.0, -0.1, 1.5, double.NaN })
            Assert.That(() => SaltSelection.Select(scored, bad), Throws.InstanceOf<WhittleException>().With.Message.Contains("--keep"));
    }

    static GptNeoX TinyModel(int vocab)
    {
        var config = new GptNeoXConfig { VocabSize = vocab, HiddenSize = 16, NumLayers = 1, NumHeads = 2, IntermediateSize = 32,
            MaxPositionEmbeddings = 32 };
        var model = GptNeoX.CreateRandom(config, CpuBackend.Instance, 3);
        var rng = new Rng(4);
        var flat = model.Parameters.Flat.AsSpan<float>();
        for (int i = 0; i < flat.Length; i++) flat[i] += (float)(0.5 * rng.NextNormal());   // peaked predictions, so top-k matters
        return model;
    }

    [Test]
    public void RunScoresNonOverlappingWindowsOfTheSplit()
    {
        using var model = TinyModel(13);
        var rng = new Random(9);
        var tokens = Enumerable.Range(0, 100).Select(_ => rng.Next(13)).ToArray();
        int t = 7;                                                     // windows of 8 tokens: 12 of them, 4 tokens left over
        var result = SaltSelection.Run(model, new ArrayTokenSource(tokens), t, 13, 1.0, batchSize: 5);
        Assert.That(result.Windows, Is.EqualTo(12));
        Assert.That(
            result.DatasetSha256,
            Is.EqualTo(Convert.ToHexStringLower(
            SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan(0, 96))))));
        Assert.That(result.Selected.Count, Is.EqualTo(12), "k = V keeps every token, so every window is scored and keep 1 selects all");
        // k = V: the score is the median of the backend's cross-entropy over the window's 7 predictions
        for (int w = 0; w < 12; w++)
        {
            using var ids = Tensor.FromArray(tokens[(w * 8)..(w * 8 + 7)], 1, 7);
            using var targets = Tensor.FromArray(tokens[(w * 8 + 1)..(w * 8 + 8)], 7);
            using var tape = new Tape(CpuBackend.Instance, recording: false);
            var logits = model.Forward(tape, ids);
            using var losses = Tensor.Zeros(DType.F32, 7);
            CpuBackend.Instance.CrossEntropy(logits.Data, targets, -100, losses, null, 0);
            var sorted = losses.ToFloatArray().Order().ToArray();
            Assert.That(result.Selected[w].Window, Is.EqualTo(w));
            Assert.That(result.Selected[w].Score, Is.EqualTo(sorted[3]).Within(1e-5), $"window {w}");
        }
        // a smaller k keeps fewer tokens; the selection at keep 0.25 is the best quarter of those scored
        var top2 = SaltSelection.Run(model, new ArrayTokenSource(tokens), t, 2, 0.25, batchSize: 3);
        Assert.That(top2.Scored, Is.LessThanOrEqualTo(12));
        Assert.That(top2.Selected.Count, Is.EqualTo((int)Math.Ceiling(0.25 * top2.Scored)));
        var limited = SaltSelection.Run(model, new ArrayTokenSource(tokens), t, 13, 1.0, maxWindows: 5);
        Assert.That(limited.Windows, Is.EqualTo(5));
        Assert.That(
            limited.Selected.Select(s => s.Score), Is.EqualTo(result.Selected.Take(5).Select(s => s.Score)).Within(1e-6),
            "batching does not change scores");
    }

    [Test]
    public void RunRejectsBadSettingsBeforeWork()
    {
        using var model = TinyModel(13);
        var src = new ArrayTokenSource(new int[50]);
        Assert.That(
            () => SaltSelection.Run(model, src, 7, 0, 0.5),
            Throws.InstanceOf<WhittleException>().With.Message.Contains("--top-k must be in [1, 13]"));
        Assert.That(
            () => SaltSelection.Run(model, src, 7, 14, 0.5), Throws.InstanceOf<WhittleException>().With.Message.Contains("--top-k"));
        Assert.That(() => SaltSelection.Run(model, src, 7, 3, 0), Throws.InstanceOf<WhittleException>().With.Message.Contains("--keep"));
        Assert.That(
            () => SaltSelection.Run(model, new ArrayTokenSource(new[] { 1, 2, 40, 3, 4, 5, 6, 7 }), 7, 3, 0.5),
            Throws.InstanceOf<WhittleException>().With.Message.Contains("token id 40"));
    }

    // ---------------------------------------------------------------- CLI

    string _dir = "";
    [SetUp] public void SetUp() { _dir = Path.Combine(Path.GetTempPath(), $"whittle-salt-{Guid.NewGuid():N}");
    Directory.CreateDirectory(_dir); }
    [TearDown] public void TearDown() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    (string Model, string Data) MakeModelAndDataset()
    {
        var tok = Tokenizer.FromFile(Fixtures.AustenTokenizer);
        var text = Path.Combine(_dir, "in.txt");
        File.WriteAllText(
            text, string.Concat(
            Enumerable.Range(0, 40).Select(
            i => $"It is a truth universally acknowledged, number {i}, that a single man in possession of a good fortune must be in want " +
            $"of a wife.\n")));
        var data = Path.Combine(_dir, "ds");
        DatasetWriter.Write(tok, new TokenizeOptions([text], data));
        using var model = TinyModel(tok.VocabSize);
        var modelDir = Path.Combine(_dir, "small");
        GptNeoXCheckpoint.Save(model, modelDir);
        File.Copy(Fixtures.AustenTokenizer, Path.Combine(modelDir, "tokenizer.json"));
        return (modelDir, data);
    }

    [Test]
    public void CliWritesTheSelectionAndRefusesBadInput()
    {
        var (model, data) = MakeModelAndDataset();
        var outPath = Path.Combine(_dir, "sel.json");
        var (exit, stdout, stderr) = CliRunner.Run("salt-select", "--small", model, "--data", data, "--top-k", "50", "--keep", "0.5",
            "--out", outPath, "--seq-len", "16", "--json");
        Assert.That(exit, Is.EqualTo(0), stderr);
        var summary = JsonNode.Parse(stdout)!;
        var file = SaltResult.Load(outPath);
        Assert.That((int)summary["selected_count"]!, Is.EqualTo(file.Selected.Count));
        Assert.That(file.Selected.Count, Is.EqualTo((int)Math.Ceiling(0.5 * file.Scored)));
        Assert.That(file.Windows, Is.GreaterThan(5));
        Assert.That(file.TopK, Is.EqualTo(50)); Assert.That(file.SeqLen, Is.EqualTo(16));
        Assert.That(file.Selected.Select(s => s.Window), Is.Ordered.Ascending);

        string[] Args(params string[] over)
        {
            var d = new Dictionary<string, string> { ["--small"] = model, ["--data"] = data, ["--top-k"] = "10", ["--keep"] = "0.5",
                ["--out"] = Path.Combine(_dir, "bad.json"), ["--seq-len"] = "16" };
            for (int i = 0; i < over.Length; i += 2) d[over[i]] = over[i + 1];
            return ["salt-select", .. d.SelectMany(kv => new[] { kv.Key, kv.Value })];
        }
        foreach (var (over, message) in new (string[], string)[]
        {
            (["--top-k", "0"], "--top-k must be in [1, 4096]"),
            (["--top-k", "4097"], "--top-k must be in [1, 4096]"),
            (["--keep", "0"], "--keep must be a fraction in (0, 1]"),
            (["--keep", "1.5"], "--keep must be a fraction in (0, 1]"),
            (["--seq-len", "33"], "--seq-len must be in [1, 32]"),
            (["--small", CliRunner.Fixture("tiny-neox")], "small model's vocab_size is 96"),
        })
        {
            var r = CliRunner.Run(Args(over));
            Assert.That(r.Exit, Is.EqualTo(1), $"{string.Join(' ', over)}: {r.Stderr}");
            Assert.That(r.Stderr, Does.Contain(message));
            Assert.That(File.Exists(Path.Combine(_dir, "bad.json")), Is.False);
        }
        // a model whose tokenizer differs from the dataset's
        File.Copy(Fixtures.Gpt2Json, Path.Combine(model, "tokenizer.json"), overwrite: true);
        var mismatch = CliRunner.Run(Args());
        Assert.That(mismatch.Exit, Is.EqualTo(1));
        Assert.That(mismatch.Stderr, Does.Contain("tokenizer sha256"));
    }
}
