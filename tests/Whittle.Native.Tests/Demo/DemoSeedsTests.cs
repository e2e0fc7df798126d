using System.Text.Json.Nodes;
using Whittle.Native.Demo;
using static Whittle.Native.Tests.Demo.DemoReportTests;

namespace Whittle.Native.Tests.Demo;

/// <summary>Claims across seeds: the rule (an effect holds in every seed), mean ± sample sd, against numbers worked out by hand.</summary>
public class DemoSeedsTests
{
    static bool Over1(double v) => v > 1;

    [Test]
    public void AnEffectIsReproducedOnlyWhenItHoldsInEverySeed()
    {
        // 1.5, 2.0, 2.5: mean 2.0, sd √((0.25 + 0 + 0.25) / 2) = 0.5; all hold.
        var all = DemoSeeds.Judge("k", "c", SeedValueKind.Factor, [(0, 1.5), (1, 2.0), (2, 2.5)], Over1);
        Expect(all, 2.0, 0.5, 3, 3, true);
        // 1.2, 0.9, 1.5: mean 1.2, sd √((0 + 0.09 + 0.09) / 2) = 0.3; seed 1 fails, so not reproduced even though the mean is > 1.
        var one = DemoSeeds.Judge("k", "c", SeedValueKind.Factor, [(0, 1.2), (1, 0.9), (2, 1.5)], Over1);
        Expect(one, 1.2, 0.3, 3, 2, false);
        Assert.That(one.Values.Select(v => v.Holds), Is.EqualTo(new[] { true, false, true }));
        // A seed that could not measure the effect (null) or measured NaN does not hold and is left out of the mean:
        // 2 and 3 give mean 2.5, sd √((0.25 + 0.25) / 1) = √0.5.
        var missing = DemoSeeds.Judge("k", "c", SeedValueKind.Factor, [(0, null), (1, 2.0), (2, 3.0), (3, double.NaN)], Over1);
        Expect(missing, 2.5, Math.Sqrt(0.5), 2, 2, false);
        // One seed: no sd; it is reproduced when that seed holds. No seeds: never reproduced.
        var single = DemoSeeds.Judge("k", "c", SeedValueKind.Factor, [(5, 1.1)], Over1);
        Expect(single, 1.1, null, 1, 1, true);
        Assert.That(DemoSeeds.Judge("k", "c", SeedValueKind.Factor, [], Over1).Reproduced, Is.False);
    }

    static void Expect(EffectAcross e, double mean, double? sd, int n, int holdsIn, bool reproduced)
    {
        // A mean and sd of a few doubles: a handful of ulps.
        Assert.That(e.Mean, Is.EqualTo(mean).Within(1e-12));
        if (sd is null) Assert.That(e.Sd, Is.Null);
        else Assert.That(e.Sd, Is.EqualTo(sd.Value).Within(1e-12));
        Assert.That((e.N, e.HoldsIn, e.Reproduced), Is.EqualTo((n, holdsIn, reproduced)));
    }

    [Test]
    public void MeanPlusMinusPrintsTheSdAsAMagnitudeAndTheCountWhenSeedsLackTheNumber()
    {
        Assert.That(DemoSeeds.MeanPlusMinus(SeedValueKind.Factor, 2.0, 0.5, 3, 3), Is.EqualTo("2.0× ± 0.5×"));
        Assert.That(DemoSeeds.MeanPlusMinus(SeedValueKind.Signed, -0.05, 0.02, 2, 3), Is.EqualTo("−5.0% ± 2.0% (n = 2)"));
        Assert.That(DemoSeeds.MeanPlusMinus(SeedValueKind.Fraction, 0.76, null, 1, 1), Is.EqualTo("76%"));
        Assert.That(DemoSeeds.MeanPlusMinus(SeedValueKind.Perplexity, null, null, 0, 3), Is.EqualTo("—"));
    }

    /// <summary>Seed 0 shows every effect but the clock; seed 1 misses several (the runs of the report tests).</summary>
    static SeedSet TwoSeeds()
    {
        var kdBetter = Curve((0, 0, 55), (100, 1_000_000, 38), (400, 4_000_000, 28));
        var late = Curve((0, 0, 90), (200, 2_000_000, 60), (400, 4_000_000, 40));
        var saltSlow = Curve((0, 0, 100), (500, 500_000, 45), (1000, 1_000_000, 32));
        var good = HandMade(Fast, kdBetter, SaltFast, evolutionBest: 50, importance: 55);
        var bad = HandMade(Slow, late, saltSlow, evolutionBest: 56, importance: 55);
        return new SeedSet([new SeedRun(0, good), new SeedRun(1, bad)], TeacherSeed: 0, DetailSeed: 0, Seconds: 30);
    }

    [Test]
    public void EffectsAcrossSeedsComeFromEachSeedsFindings()
    {
        var effects = DemoSeeds.EffectsOf(TwoSeeds().Runs).ToDictionary(e => e.Key);
        // subnet-init: seed 0 reaches random-init's 40 at 1M tokens (random-init needs its whole 4M): 4×; seed 1 never does.
        var subnet = effects["subnet_init_speed_up"];
        Assert.That(subnet.Values.Select(v => v.Value), Is.EqualTo(new double?[] { 4.0, null }).Within(1e-9));
        Assert.That((subnet.HoldsIn, subnet.Reproduced, subnet.N, subnet.Sd), Is.EqualTo((1, false, 1, (double?)null)));
        // Distillation's final gap below subnet-init: (30 − 28) / 30 and (45 − 40) / 45, both > 0: reproduced.
        var kd = effects["kd_ends_lower"];
        Assert.That(kd.Values.Select(v => v.Value), Is.EqualTo(new double?[] { 2.0 / 30, 5.0 / 45 }).Within(1e-9));
        Assert.That(kd.Reproduced);
        // Evolution against random search (best 70): (70 − 50) / 70 and (70 − 56) / 70; mean and sd of the two by hand.
        var random = effects["evolution_vs_random"];
        double a = 20.0 / 70, b = 14.0 / 70;
        Assert.That(random.Mean, Is.EqualTo((a + b) / 2).Within(1e-12));
        Assert.That(random.Sd, Is.EqualTo(Math.Abs(a - b) / Math.Sqrt(2)).Within(1e-12));
        Assert.That(random.Reproduced);
        // Against importance (55): +5/55 in seed 0, −1/55 in seed 1: holds in one seed.
        var importance = effects["evolution_vs_importance"];
        Assert.That(importance.Values.Select(v => v.Holds), Is.EqualTo(new[] { true, false }));
        Assert.That(importance.Reproduced, Is.False);
        // SALT reaches the baseline's 30 at step 700 of 1,000 in seed 0 and never in seed 1; it ends 28 vs 30, then 32 vs 30.
        Assert.That(effects["salt_steps"].Values.Select(v => v.Value), Is.EqualTo(new double?[] { 0.7, null }).Within(1e-9));
        Assert.That(effects["salt_ends_lower"].Values.Select(v => v.Value), Is.EqualTo(new double?[] { 2.0 / 30, -2.0 / 30 }).Within(1e-9));
        // The hand-made runs carry no clock: the wall-clock effect is measured in no seed and is not reproduced.
        Assert.That((effects["salt_step_time_saving"].N, effects["salt_step_time_saving"].Reproduced), Is.EqualTo((0, false)));

        var quantities = DemoSeeds.QuantitiesOf(TwoSeeds().Runs);
        var final = quantities.Single(q => q.Arm == "subnet-init+kd" && q.Quantity == "final perplexity");
        Assert.That(final.Mean, Is.EqualTo(34).Within(1e-9));   // 28 and 40
        Assert.That(final.Sd, Is.EqualTo(12 / Math.Sqrt(2)).Within(1e-9));
        Assert.That(quantities.Any(q => q.Arm == "salt-cached"), Is.False, "an arm no seed ran has no rows");
    }

    [Test]
    public void TheReportStatesTheRuleAndEveryEffectsSpreadAndResultsJsonHoldsThem()
    {
        var dir = Directory.CreateTempSubdirectory("whittle-seeds-").FullName;
        try
        {
            var seeds = TwoSeeds();
            DemoReport.Write(seeds.Runs[0].Results, dir, seeds);
            string md = File.ReadAllText(Path.Combine(dir, DemoReport.MarkdownFile));
            Assert.That(md, Does.Contain("## Claims across 2 seeds").And.Contain("## Arms across seeds"));
            Assert.That(md, Does.Contain("An effect counts as reproduced only when it holds in every seed"));
            Assert.That(md, Does.Contain("| seed 0 | seed 1 | Mean ± sd | Holds in | Verdict |"));
            // Evolution against random search: +20/70 and +14/70, mean 17/70, sd 6/70/√2 (6.1%).
            Assert.That(md, Does.Contain("| +29% | +20% | +24% ± 6.1% | 2 of 2 | reproduced |"));
            Assert.That(md, Does.Contain("**Not reproduced in this run:** subnet-init reaches random-init's final perplexity"));
            Assert.That(md, Does.Contain("it holds in 1 of 2 seeds; 4.0× (n = 1)."));
            // The detailed sections of the seed shown in detail follow.
            Assert.That(md.IndexOf("## Students trained", StringComparison.Ordinal),
                Is.GreaterThan(md.IndexOf("## Arms across seeds", StringComparison.Ordinal)));

            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, DemoReport.ResultsFile)))!["across_seeds"]!;
            Assert.That(json["seeds"]!.AsArray().Select(s => s!.GetValue<int>()), Is.EqualTo(new[] { 0, 1 }));
            Assert.That(json["rule"]!.GetValue<string>(), Is.EqualTo(DemoSeeds.Rule));
            var random = json["effects"]!.AsArray().Single(e => e!["key"]!.GetValue<string>() == "evolution_vs_random")!;
            Assert.That(random["mean"]!.GetValue<double>(), Is.EqualTo(17.0 / 70).Within(1e-12));
            Assert.That(random["reproduced"]!.GetValue<bool>());
            // The per-seed results still load as one seed's results.
            Assert.That(DemoReport.Load(Path.Combine(dir, DemoReport.ResultsFile)).Students, Has.Count.EqualTo(3));
        }
        finally { Directory.Delete(dir, true); }
    }
}
