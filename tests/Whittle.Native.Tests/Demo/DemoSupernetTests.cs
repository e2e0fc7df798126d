using System.Text.Json.Nodes;
using System.Xml.Linq;
using Whittle.Native.Demo;
using static Whittle.Native.Tests.Demo.DemoReportTests;

namespace Whittle.Native.Tests.Demo;

/// <summary>
/// The demo's supernet stage and its (ppl, params, FLOPs) view: the findings' rule on numbers worked out by hand, the
/// claims across seeds, and the report's section, table and two-panel plot.
/// </summary>
public class DemoSupernetTests
{
    /// <summary>A hand-made run (evolution's best on the plain teacher 50) with the given searched bests on the two parents.</summary>
    static DemoResults WithSupernet(double sandwich, double standard) =>
        HandMade(Slow, Fast, SaltFast, evolutionBest: 50, importance: 55) with
        {
            Supernet = new SupernetResults(40,
            [
                new SupernetArm(DemoSupernet.Sandwich, "sandwich", 21, 2, 390, sandwich, "s"),
                new SupernetArm(DemoSupernet.Standard, "standard", 19, 2, 385, standard, "t"),
            ]),
        };

    [Test]
    public void TheSandwichParentIsComparedWithThePlainTeacherAndTheControl()
    {
        // 45 against 50 (plain) and 49 (standard): (50 − 45) / 50 = 10%, (49 − 45) / 49 = 8.16%.
        var f = DemoSupernet.Of(WithSupernet(sandwich: 45, standard: 49));
        Assert.That((f.PlainBest, f.SandwichBest, f.StandardBest), Is.EqualTo(((double?)50, (double?)45, (double?)49)));
        Assert.That(f.GainOverPlain, Is.EqualTo(0.1).Within(1e-12));
        Assert.That(f.GainOverStandard, Is.EqualTo(4.0 / 49).Within(1e-12));
        Assert.That((f.SandwichWhole, f.StandardWhole), Is.EqualTo(((double?)21, (double?)19)));
        Assert.That(f.Sentences[0], Does.StartWith("On the teacher trained 40 more steps as a sandwich supernet").And.EndWith(
            "perplexity 45.00 (390 parameters); on the plain teacher 50.00: 10% lower."));
        Assert.That(f.Sentences[1], Does.Contain("the sandwich parent's best is 8.2% lower: the gain comes from the sandwich rule"));
        Assert.That(f.Sentences[2], Is.EqualTo("The whole network's validation perplexity: the plain teacher 20.00, sandwich 21.00, " +
            "standard 19.00 (sandwich steps train the whole network too, with three sub-networks' gradients beside it under one clip)."));
        Assert.That(f.Sentences.Count(s => s.StartsWith(DemoFindings.NotReproduced)), Is.Zero);

        // Better than the plain teacher (47 < 50) but not than the control (46): the extra steps explain it.
        var control = DemoSupernet.Of(WithSupernet(sandwich: 47, standard: 46));
        Assert.That(control.GainOverPlain, Is.EqualTo(0.06).Within(1e-12));
        Assert.That(control.GainOverStandard, Is.EqualTo(-1.0 / 46).Within(1e-12));
        Assert.That(control.Sentences[1], Does.StartWith(DemoFindings.NotReproduced).And.Contain("2.2% higher"));
        // Worse than the plain teacher: said plainly.
        var worse = DemoSupernet.Of(WithSupernet(sandwich: 52, standard: 53));
        Assert.That(worse.Sentences[0], Does.StartWith(DemoFindings.NotReproduced).And.EndWith("4.0% higher."));
        // A run without the stage, or with a diverged parent, claims nothing.
        var none = DemoSupernet.Of(HandMade(Slow, Fast, SaltFast, 50, 55));
        Assert.That((none.GainOverPlain, none.Sentences.Single()), Is.EqualTo(((double?)null, "The supernet stage was not run.")));
        Assert.That(DemoSupernet.Of(WithSupernet(double.NaN, 48)).GainOverPlain, Is.Null);
    }

    [Test]
    public void SupernetEffectsFollowTheSeedRuleAndAreLeftOutWhereNoSeedRanTheStage()
    {
        // Sandwich beats the plain teacher (50) in all three seeds; the control (48) in two: 45 < 48, 47 < 48, 49 > 48.
        var runs = new[] { 45.0, 47, 49 }.Select((s, i) => new SeedRun(i, WithSupernet(s, 48))).ToList();
        var effects = DemoSeeds.EffectsOf(runs).ToDictionary(e => e.Key);
        var plain = effects["supernet_vs_plain"];
        Assert.That(plain.Values.Select(v => v.Value), Is.EqualTo(new double?[] { 0.1, 0.06, 0.02 }).Within(1e-12));
        // Mean 0.06, sd √((0.04² + 0 + 0.04²) / 2) = 0.04.
        Assert.That((plain.Mean!.Value, plain.Sd!.Value, plain.HoldsIn, plain.Reproduced), Is.EqualTo((0.06, 0.04, 3, true)).Within(1e-12));
        var standard = effects["supernet_vs_standard"];
        Assert.That(standard.Values.Select(v => v.Holds), Is.EqualTo(new[] { true, true, false }));
        Assert.That(standard.Reproduced, Is.False);
        var quantities = DemoSeeds.QuantitiesOf(runs);
        var best = quantities.Single(q => q.Arm == "supernet: sandwich" && q.Quantity == "searched best perplexity");
        Assert.That((best.Mean, best.Sd), Is.EqualTo(((double?)47, (double?)2)).Within(1e-12));

        var without = DemoSeeds.EffectsOf([new SeedRun(0, HandMade(Slow, Fast, SaltFast, 50, 55))]);
        Assert.That(without.Select(e => e.Key), Has.None.StartsWith("supernet"), "a run without the stage lists no supernet effect");
    }

    [Test]
    public void TheReportShowsTheSupernetPerSeedAndTheParetoSetInBothPanels()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-supernet-").FullName;
        try
        {
            var sample = DemoSamples.Plausible();
            // Three seeds whose sandwich parents' bests differ: 47.13 (the sample's), 46.5 and 50.2.
            var runs = new[] { 47.13, 46.5, 50.2 }.Select((s, i) => new SeedRun(i, sample with
            {
                Supernet = sample.Supernet! with { Arms = [sample.Supernet.Arms[0] with { BestPerplexity = s }, sample.Supernet.Arms[1]] },
            })).ToList();
            DemoReport.Write(runs[0].Results, dir, new SeedSet(runs, 0, 0, 60));
            string md = File.ReadAllText(Path.Combine(dir, DemoReport.MarkdownFile));
            Assert.That(md, Does.Contain("## Supernet training (whittle's first stage)"));
            // The plain teacher's evolutionary best is the sample's; each seed's gap below it is in the claims table.
            double plain = sample.Search.Where(p => p.Strategy == "evolution").Min(p => p.Perplexity);
            string[] gaps = [.. runs.Select(r => DemoSeeds.Show(SeedValueKind.Signed,
                (plain - r.Results.Supernet!.Arms[0].BestPerplexity) / plain))];
            var row = md.Split('\n').Single(l => l.StartsWith("| the evolutionary search's best sub-network on the sandwich"));
            foreach (var g in gaps) Assert.That(row, Does.Contain($"| {g}"));
            Assert.That(md.Split('\n').Single(l => l.StartsWith("| supernet: sandwich | searched best perplexity")),
                Does.Contain("| 47.13 | 46.50 | 50.20 |"));
            Assert.That(md, Does.Contain("| sandwich | sandwich, 500 steps | 32.46 | 64 | 47.13 | 3.18M |"));

            // The (ppl, params, FLOPs) figure: two panels, each ringing every member of the Pareto set once.
            var front = sample.SearchFront!;
            Assert.That(front.Pareto, Has.Count.GreaterThan(2).And.Count.LessThan(sample.Search.Count), "the sample has a real set");
            var svg = XDocument.Load(Path.Combine(dir, DemoPlots.ObjectivesFile));
            var panels = svg.Root!.Elements().Where(e => e.Name.LocalName == "svg").ToList();
            Assert.That(panels, Has.Count.EqualTo(2));
            foreach (var panel in panels)
            {
                var set = panel.Descendants().Single(e => e.Name.LocalName == "g"
                    && e.Elements().Any(t => t.Name.LocalName == "title" && t.Value.StartsWith(DemoPlots.ParetoSetSeries)));
                Assert.That(set.Elements().Count(e => e.Name.LocalName == "circle" && (string?)e.Attribute("class") == "ring"),
                    Is.EqualTo(front.Pareto.Count));
            }
            string html = File.ReadAllText(Path.Combine(dir, DemoReport.HtmlFile));
            Assert.That(SvgBlocks(html).Count(b => b.Contains(DemoPlots.ParetoSetSeries)), Is.EqualTo(1), "the figure is inline once");
            Assert.That(md, Does.Contain("| evolution | 64 | 0.8123 | 61% |"), "hypervolume and its share of 1.331");
            Assert.That(md, Does.Contain("Reference point: ppl 70.10, params 3.26M, flops 6.72M (1.1 in each objective"));

            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, DemoReport.ResultsFile)))!;
            Assert.That(json["search_objectives"]!["pareto"]!.AsArray(), Has.Count.EqualTo(front.Pareto.Count));
            var back = DemoReport.Load(Path.Combine(dir, DemoReport.ResultsFile));
            Assert.That(back.Supernet!.Arms, Is.EqualTo(runs[0].Results.Supernet!.Arms));
            Assert.That(back.SearchFront!.Pareto, Is.EqualTo(front.Pareto));
            Assert.That(back.SearchFront.Hypervolume, Is.EquivalentTo(front.Hypervolume));
            Assert.That(back.Search.Select(p => p.Flops), Is.EqualTo(sample.Search.Select(p => p.Flops)));
        }
        finally { Directory.Delete(dir, true); }
    }
}
