using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.Evaluation;

/// <summary>
/// `eval --stride S` against a brute-force reference written here: Hugging Face's loop (windows begin at 0, S, 2S, …;
/// window [b, b + T) labels its tokens from max(previous window's end, b + 1) to its end; only whole windows), with every
/// scored token's log-probability computed by its own forward pass over exactly its context (the window's tokens before
/// it) and a float64 log-softmax of the last row. So the windowing, the masking of unscored positions and the batching
/// are all checked against a computation that shares none of them.
/// Tolerance: both sides run the same f32 model on the same context, but the windowed pass runs T − 1 positions batched
/// where the reference runs one shorter sequence; on our pinned GEMM and the tiled attention each row's arithmetic does
/// not depend on the sequence length, and on any GEMM the difference is f32 rounding of ~12 dot-product stages (≲ 6e-6
/// relative, as the fixture-parity tests): 1e-5 relative on the mean loss.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class StridedPerplexityTests
{
    const int T = 16, N = 61;   // 61 tokens: with S = 16, three windows and 13 trailing tokens not scored

    static int[] Tokens(int vocab)
    {
        var rng = new Random(4);
        return Enumerable.Range(0, N).Select(_ => rng.Next(vocab)).ToArray();
    }

    /// <summary>Mean NLL and count of Hugging Face's strided definition, one forward pass per scored token.</summary>
    static (double Loss, long Count) BruteForce(LanguageModel model, int[] tokens, int seqLen, int stride)
    {
        double nll = 0; long count = 0; int previousEnd = 0;
        for (int begin = 0; begin + seqLen <= tokens.Length; begin += stride)
        {
            int end = begin + seqLen;
            for (int target = Math.Max(previousEnd, begin + 1); target < end; target++)
            {
                var context = tokens[begin..target];
                using var ids = Tensor.FromArray(context, 1, context.Length);
                using var tape = new Tape(model.Backend, recording: false);
                var logits = model.Forward(tape, ids).Data.ToFloatArray();   // (context, V)
                int v = model.Config.VocabSize, last = (context.Length - 1) * v;
                double max = double.NegativeInfinity;
                for (int j = 0; j < v; j++) max = Math.Max(max, logits[last + j]);
                double sum = 0;
                for (int j = 0; j < v; j++) sum += Math.Exp(logits[last + j] - max);
                nll += max + Math.Log(sum) - logits[last + tokens[target]];
                count++;
            }
            previousEnd = end;
        }
        return (nll / count, count);
    }

    [TestCase(1, 3, 0)]
    [TestCase(5, 2, 0)]
    [TestCase(8, 4, 0)]
    [TestCase(15, 1, 0)]
    [TestCase(16, 2, 0)]    // S = T: non-overlapping windows
    [TestCase(6, 3, 7)]     // the chunked LM head, 7 rows at a time
    public void StridedPerplexityMatchesTheBruteForceReference(int stride, int batch, int chunkRows)
    {
        using var model = ModelCheckpoint.Load(CliRunner.Fixture("tiny-neox"), TestBackends.PinnedCpu);
        model.LossChunkRows = chunkRows;
        var tokens = Tokens(model.Config.VocabSize);
        var got = Perplexity.Evaluate(model, new ArrayTokenSource(tokens), T, batch, stride: stride);
        var (want, count) = BruteForce(model, tokens, T, stride);
        Assert.That(got.Tokens, Is.EqualTo(count));
        Assert.That(got.Tokens, Is.EqualTo(T - 1 + (got.Windows - 1) * Math.Min(stride, T - 1)));
        Assert.That(got.Loss, Is.EqualTo(want).Within(1e-5 * Math.Abs(want)));
        Assert.That(got.Stride, Is.EqualTo(stride));
    }

    /// <summary>S = T is today's definition: consecutive windows of T, T − 1 predictions each, the remainder dropped; the
    /// same numbers as no --stride at all, and as a brute force of that definition (window k: tokens [kT, kT + T)).</summary>
    [Test]
    public void StrideEqualToTheWindowIsTheNonOverlappingDefinition()
    {
        using var model = ModelCheckpoint.Load(CliRunner.Fixture("tiny-neox"), TestBackends.PinnedCpu);
        var tokens = Tokens(model.Config.VocabSize);
        var plain = Perplexity.Evaluate(model, new ArrayTokenSource(tokens), T, 2);
        var strided = Perplexity.Evaluate(model, new ArrayTokenSource(tokens), T, 2, stride: T);
        Assert.That(strided.Loss, Is.EqualTo(plain.Loss));
        Assert.That((strided.Tokens, strided.Windows), Is.EqualTo((plain.Tokens, plain.Windows)));
        double nll = 0; int count = 0;
        for (int k = 0; (k + 1) * T <= N; k++)
        {
            var window = tokens[(k * T)..((k + 1) * T)];
            var (loss, n) = BruteForce(model, window, T, T);
            nll += loss * n; count += (int)n;
        }
        Assert.That(count, Is.EqualTo(N / T * (T - 1)));
        Assert.That(plain.Loss, Is.EqualTo(nll / count).Within(1e-5 * Math.Abs(nll / count)));
    }

    [Test]
    public void TheCliReportsTheStrideAndAgreesWithTheLibrary()
    {
        var dir = CliRunner.Fixture("tiny-neox");
        var ids = Path.Combine(Path.GetTempPath(), $"whittle-ids-{Guid.NewGuid():N}.json");
        using var model = ModelCheckpoint.Load(dir, TestBackends.PinnedCpu);
        var tokens = Tokens(model.Config.VocabSize);
        File.WriteAllText(ids, "[" + string.Join(",", tokens) + "]");
        try
        {
            var (exit, stdout, stderr) = CliRunner.Run("eval", "--model", dir, "--ids", ids, "--seq-len", "16", "--stride", "4", "--json");
            Assert.That(exit, Is.EqualTo(0), stderr);
            var o = JsonNode.Parse(stdout)!;
            Assert.That(o["stride"]!.GetValue<int>(), Is.EqualTo(4));
            Assert.That(o["seq_len"]!.GetValue<int>(), Is.EqualTo(16));
            Assert.That(o["windows"]!.GetValue<long>(), Is.EqualTo(1 + (N - 16) / 4));
            Assert.That(o["tokens"]!.GetValue<long>(), Is.EqualTo(15 + (N - 16) / 4 * 4));
            var (want, _) = BruteForce(model, tokens, 16, 4);
            Assert.That(o["loss"]!.GetValue<double>(), Is.EqualTo(want).Within(1e-5 * Math.Abs(want)));
            (exit, stdout, _) = CliRunner.Run("eval", "--model", dir, "--ids", ids, "--seq-len", "16", "--json");
            Assert.That(exit, Is.EqualTo(0));
            Assert.That(JsonNode.Parse(stdout)!["stride"]!.GetValue<int>(), Is.EqualTo(16), "no --stride: S = T");
        }
        finally { File.Delete(ids); }
    }

    [TestCase("0")]
    [TestCase("17")]
    [TestCase("-3")]
    public void AStrideOutsideOneToTheWindowIsAUserError(string stride)
    {
        var (exit, _, stderr) = CliRunner.Run("eval", "--model", CliRunner.Fixture("tiny-neox"), "--ids", "/nonexistent-ids.json",
            "--seq-len", "16", "--stride", stride);
        Assert.That(exit, Is.EqualTo(1), stderr);
        var lines = stderr.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("error: --stride must be in [1, --seq-len] = [1, 16]").And.Contain($"got {stride}"));
    }
}
