using System.Text.Json.Nodes;
using Whittle.Native.Model;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.Evaluation;

[Category(TestBackends.GemmSensitive)]
public class PerplexityTests
{
    /// <summary>
    /// The fixture's two (T+1 = 17)-token rows, concatenated, are two eval windows of 17 tokens: 2 × 16 predictions, the
    /// same 32 targets PyTorch's loss averages over. So `whittle eval --seq-len 17` must reproduce that loss.
    /// </summary>
    [TestCase("tiny-neox", 0)]
    [TestCase("tiny-neox-seq", 0)]
    [TestCase("tiny-neox", 5)]      // the chunked LM head: 32 rows in chunks of 5 gives the same loss
    public void PerplexityOfTheFixtureMatchesPyTorchsLoss(string fixture, int chunkRows)
    {
        var dir = CliRunner.Fixture(fixture);
        using var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        var ids = Path.Combine(Path.GetTempPath(), $"whittle-ids-{Guid.NewGuid():N}.json");
        File.WriteAllText(ids, new JsonArray(expected.ReadInts("tokens").Select(i => (JsonNode)i).ToArray()).ToJsonString());
        try
        {
            var (exit, stdout, stderr) = CliRunner.Run("eval", "--model", dir, "--ids", ids, "--seq-len", "17", "--loss-chunk-rows",
                chunkRows.ToString(), "--json");
            Assert.That(exit, Is.EqualTo(0), stderr);
            var o = JsonNode.Parse(stdout)!;
            double loss = o["loss"]!.GetValue<double>(), want = expected.ReadFloats("loss")[0];
            // As FixtureParityTests (f32 rounding of ~12 dot-product stages against PyTorch's float64: ≲ 6e-6): 1e-5 relative
            // on the loss. Perplexity = exp(loss), so its relative error is the loss's absolute error: ≤ 1e-5·|want|.
            Assert.That(Math.Abs(loss / want - 1), Is.LessThan(1e-5));
            Assert.That(o["perplexity"]!.GetValue<double>(), Is.EqualTo(Math.Exp(want)).Within(1e-5 * Math.Abs(want) * Math.Exp(want)));
            Assert.That(
                o["perplexity"]!.GetValue<double>(), Is.EqualTo(Math.Exp(loss)).Within(1e-12 * Math.Exp(loss)),
                "perplexity is exp of the printed loss");
            Assert.That(o["tokens"]!.GetValue<long>(), Is.EqualTo(32));
        }
        finally { File.Delete(ids); }
    }

    [Test]
    public void ATrailingRemainderShorterThanAWindowIsDropped()
    {
        var dir = CliRunner.Fixture("tiny-neox");
        var ids = Path.Combine(Path.GetTempPath(), $"whittle-ids-{Guid.NewGuid():N}.json");
        File.WriteAllText(ids, "[" + string.Join(",", Enumerable.Range(0, 50).Select(i => i % 96)) + "]");
        try
        {
            var (exit, stdout, _) = CliRunner.Run("eval", "--model", dir, "--ids", ids, "--seq-len", "16", "--json");
            Assert.That(exit, Is.EqualTo(0));
            Assert.That(
                JsonNode.Parse(stdout)!["tokens"]!.GetValue<long>(), Is.EqualTo(3 * 15),
                "50 tokens = 3 windows of 16 (+2 dropped), 15 predictions each");
        }
        finally { File.Delete(ids); }
    }
}
