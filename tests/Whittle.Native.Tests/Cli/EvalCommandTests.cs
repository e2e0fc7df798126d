// Policy: `whittle eval` option handling through the real command; what the perplexity itself is (PyTorch's loss on
// the fixture, windows and the dropped remainder) is checked in Evaluation/PerplexityTests.
namespace Whittle.Native.Tests.Cli;

public class EvalCommandTests
{
    [Test]
    public void TwoSourcesAtOnceIsAnError()
    {
        var (exit, _, stderr) = CliRunner.Run("eval", "--model", CliRunner.Fixture("tiny-neox"), "--ids", "a.json", "--text", "b.txt");
        Assert.That(exit, Is.EqualTo(1));
        Assert.That(stderr, Does.Contain("exactly one of --data DIR, --text FILE or --ids FILE"));
    }
}
