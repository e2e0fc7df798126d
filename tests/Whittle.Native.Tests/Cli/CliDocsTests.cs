// Policy: the help and the docs cannot drift apart. docs/cli.md must be exactly what `whittle docs` renders from the
// commands' --help today (the failure names the first differing line and the command that regenerates the file), and
// a time or size quoted in any help text must be one bench/RESULTS.md records verbatim, so a re-measured figure has
// one place to change and a stale one fails here.
using System.Text.RegularExpressions;
using Whittle.Cli;
using Whittle.Native.Tests.Tokenization;

namespace Whittle.Native.Tests.Cli;

public class CliDocsTests
{
    static string Rendered() => DocsCommand.Render(WhittleCli.CreateRoot());

    [Test]
    public void CommittedCliReferenceIsTheRenderedHelp()
    {
        string path = Path.Combine(Fixtures.RepoRoot, DocsCommand.RepositoryPath);
        Assert.That(File.Exists(path), Is.True, $"{DocsCommand.RepositoryPath} is missing; generate it: {DocsCommand.Regenerate}");
        var committed = File.ReadAllText(path).ReplaceLineEndings("\n").Split('\n');
        var rendered = Rendered().Split('\n');
        int line = 0;
        while (line < Math.Min(committed.Length, rendered.Length) && committed[line] == rendered[line]) line++;
        if (line < committed.Length || line < rendered.Length)
        {
            Assert.Fail($"{DocsCommand.RepositoryPath} differs from the commands' --help at line {line + 1}:\n" +
                $"  committed: {(line < committed.Length ? committed[line] : "(end of file)")}\n" +
                $"  rendered:  {(line < rendered.Length ? rendered[line] : "(end of file)")}\n" +
                $"Regenerate it: {DocsCommand.Regenerate}");
        }
    }

    [Test]
    public void EveryCommandIsInTheReference()
    {
        var text = Rendered();
        foreach (var command in WhittleCli.CreateRoot().Subcommands)
            Assert.That(text, Does.Contain($"## `whittle {command.Name}`"), command.Name);
    }

    // A duration ("34.9 s", "3 min 44 s", "130 ms") or a size ("18 MB", "6.6 GB", "1 MiB") written in a help text.
    static readonly Regex Figure = new(@"\b\d+(?:[.,]\d+)?\s?(?:(?:min|h)(?:\s\d+(?:\.\d+)?\s?s)?|ms|s|[KMGT]i?B)\b");

    [Test]
    public void TimesAndSizesInHelpTextsAreTheOnesBenchResultsRecords()
    {
        var results = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "bench", "RESULTS.md"));
        var quoted = Figure.Matches(Rendered()).Select(m => m.Value).Distinct().ToList();
        Assert.That(Figure.Matches("took 3 min 44 s, 34.9 s, 130 ms; 18 MB, 6.6 GB").Select(m => m.Value),
            Is.EqualTo(new[] { "3 min 44 s", "34.9 s", "130 ms", "18 MB", "6.6 GB" }), "the pattern finds figures");
        foreach (var figure in quoted)
            Assert.That(results, Does.Contain(figure), $"help text quotes '{figure}', which bench/RESULTS.md does not record");
    }
}
