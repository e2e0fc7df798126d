using Whittle.Native.Demo;

namespace Whittle.Native.Tests.Demo;

/// <summary>Tokens/steps to reach a perplexity and the Pareto front, on hand-made data whose answers are worked out by hand.
/// Tolerances (1e-9, 1e-12) cover double rounding of a log-linear interpolation (a few ulps of values ≤ 3000); IEEE double
/// arithmetic and Math.Log (correctly rounded or within 1 ulp everywhere .NET runs) make them CPU-independent.</summary>
public class DemoAnalysisTests
{
    // Perplexity 100 → 50 → 25 → 20 at 0, 1000, 2000, 3000 tokens (steps 0, 10, 20, 30).
    static readonly CurvePoint[] Halving =
    [
        new(0, 0, Math.Log(100)), new(10, 1000, Math.Log(50)), new(20, 2000, Math.Log(25)), new(30, 3000, Math.Log(20)),
    ];

    [Test]
    public void InterpolatesLogPerplexityBetweenEvaluations()
    {
        // 25·√2 is the geometric mean of 50 and 25: halfway in log-perplexity, so halfway in tokens and steps.
        Assert.That(DemoAnalysis.TokensToReach(Halving, 25 * Math.Sqrt(2)), Is.EqualTo(1500).Within(1e-9));
        Assert.That(DemoAnalysis.StepToReach(Halving, 25 * Math.Sqrt(2)), Is.EqualTo(15).Within(1e-12));
        // 100 → 50 spans one halving; 100/2^0.25 is a quarter of the way down, so a quarter of the tokens.
        Assert.That(DemoAnalysis.TokensToReach(Halving, 100 / Math.Pow(2, 0.25)), Is.EqualTo(250).Within(1e-9));
        // 25 → 20: target 22 is ln(25/22)/ln(25/20) of the way along.
        Assert.That(
            DemoAnalysis.TokensToReach(Halving, 22), Is.EqualTo(2000 + 1000 * Math.Log(25.0 / 22) / Math.Log(25.0 / 20)).Within(1e-9));
    }

    [Test]
    public void ExactHitsFirstPointAndNeverReached()
    {
        Assert.That(DemoAnalysis.TokensToReach(Halving, 50), Is.EqualTo(1000).Within(1e-9));
        Assert.That(
            DemoAnalysis.TokensToReach(Halving, 20), Is.EqualTo(3000), "a curve reaches its own final perplexity at its last evaluation");
        Assert.That(DemoAnalysis.TokensToReach(Halving, 150), Is.EqualTo(0), "already below the target at the first evaluation");
        Assert.That(DemoAnalysis.TokensToReach(Halving, 100), Is.EqualTo(0));
        Assert.That(DemoAnalysis.TokensToReach(Halving, 19.99), Is.Null);
        Assert.That(DemoAnalysis.StepToReach(Halving, 19.99), Is.Null);
        Assert.That(DemoAnalysis.TokensToReach([], 10), Is.Null);
    }

    [Test]
    public void FirstCrossingOfANonMonotoneCurve()
    {
        // Dips to 30 at 1000, climbs back to 60, ends at 20: the first crossing of √(100·30) is halfway through the first segment.
        CurvePoint[] bumpy = [new(0, 0, Math.Log(100)), new(1, 1000, Math.Log(30)), new(2, 2000, Math.Log(60)), new(3, 3000, Math.Log(20))];
        Assert.That(DemoAnalysis.TokensToReach(bumpy, Math.Sqrt(100 * 30)), Is.EqualTo(500).Within(1e-9));
        // 25 is only reached after the bump: ln(60/25)/ln(60/20) of the way from 2000 to 3000.
        Assert.That(DemoAnalysis.TokensToReach(bumpy, 25), Is.EqualTo(2000 + 1000 * Math.Log(60.0 / 25) / Math.Log(3)).Within(1e-9));
        // The order the points are given in does not matter; their token counts do.
        Assert.That(DemoAnalysis.TokensToReach(bumpy.Reverse().ToArray(), 25), Is.EqualTo(DemoAnalysis.TokensToReach(bumpy, 25)));
    }

    [Test]
    public void NonFiniteEvaluationsNeverReachAndAreNotInterpolatedAcross()
    {
        CurvePoint[] diverged = [new(0, 0, Math.Log(100)), new(1, 1000, double.NaN), new(2, 2000, Math.Log(10))];
        Assert.That(DemoAnalysis.TokensToReach(diverged, 50), Is.EqualTo(2000));
        CurvePoint[] allNaN = [new(0, 0, double.NaN), new(1, 1000, double.PositiveInfinity)];
        Assert.That(DemoAnalysis.TokensToReach(allNaN, 50), Is.Null);
        Assert.Throws<ArgumentOutOfRangeException>(() => DemoAnalysis.TokensToReach(Halving, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => DemoAnalysis.TokensToReach(Halving, double.NaN));
    }

    [Test]
    public void ParetoFrontOfHandMadePoints()
    {
        SearchPoint P(int i, long n, double ppl) => new(i, "s", n, ppl, $"#{i}");
        var points = new[]
        {
            P(0, 10, 50), P(1, 20, 40), P(2, 15, 60) /* beaten by 0 */, P(3, 20, 45) /* beaten by 1 */,
                P(4, 30, 40) /* tie with 1, more params */,
            P(5, 5, 80), P(6, 40, 30), P(7, 10, 50) /* duplicate of 0, evaluated later */, P(8, 1, double.NaN), P(9, 35, 35),
        };
        var front = DemoAnalysis.ParetoFront(points);
        Assert.That(front.Select(p => p.Index), Is.EqualTo(new[] { 5, 0, 1, 9, 6 }));
        // Invariant: nothing in the input beats a front point on both axes.
        foreach (var f in front)
            Assert.That(points.Any(p => double.IsFinite(p.Perplexity) && p.Parameters <= f.Parameters && p.Perplexity <= f.Perplexity
                && (p.Parameters < f.Parameters || p.Perplexity < f.Perplexity)), Is.False, $"point {f.Index} is dominated");
        Assert.That(DemoAnalysis.ParetoFront([]), Is.Empty);
    }

    [Test]
    public void BestSoFarIsTheRunningMinimum()
    {
        SearchPoint P(double ppl) => new(0, "s", 1, ppl, "");
        Assert.That(
            DemoAnalysis.BestSoFar([P(50), P(60), P(40), P(double.NaN), P(45), P(30)]), Is.EqualTo(new[] { 50.0, 50, 40, 40, 40, 30 }));
    }

    // ------------------------------------------------------------------ wall-clock

    // The Halving curve with the training seconds a run would log at each evaluation: 2, 3 and 4 s between them.
    static readonly CurvePoint[] TimedHalving =
    [
        new(0, 0, Math.Log(100), 0), new(10, 1000, Math.Log(50), 2.0), new(20, 2000, Math.Log(25), 5.0), new(30, 3000, Math.Log(20), 9.0),
    ];

    [Test]
    public void SecondsToReachInterpolatesLogPerplexityLinearlyInSeconds()
    {
        // Halfway in log-perplexity between 50 (2 s) and 25 (5 s): halfway in seconds, 3.5 s (the same rule as for steps: 15).
        Assert.That(DemoAnalysis.SecondsToReach(TimedHalving, 25 * Math.Sqrt(2)), Is.EqualTo(3.5).Within(1e-12));
        // 22 lies ln(25/22)/ln(25/20) of the way from 25 (5 s) to 20 (9 s).
        Assert.That(DemoAnalysis.SecondsToReach(TimedHalving, 22),
            Is.EqualTo(5 + 4 * Math.Log(25.0 / 22) / Math.Log(25.0 / 20)).Within(1e-12));
        Assert.That(DemoAnalysis.SecondsToReach(TimedHalving, 50), Is.EqualTo(2.0).Within(1e-12), "an exact hit is its evaluation's time");
        Assert.That(DemoAnalysis.SecondsToReach(TimedHalving, 150), Is.EqualTo(0));
        Assert.That(DemoAnalysis.SecondsToReach(TimedHalving, 19.99), Is.Null);
        // A curve logged before elapsed_s existed (or with one point missing it) has no time to give.
        Assert.That(DemoAnalysis.SecondsToReach(Halving, 50), Is.Null);
        Assert.That(DemoAnalysis.SecondsToReach([TimedHalving[0], TimedHalving[1] with { Seconds = null }, TimedHalving[2]], 30), Is.Null);
    }

    [Test]
    public void MedianAndMeanWithSampleStandardDeviation()
    {
        Assert.That(DemoAnalysis.Median([3.0, 1, 2]), Is.EqualTo(2));
        Assert.That(DemoAnalysis.Median([4.0, 1, 3, 2]), Is.EqualTo(2.5));
        Assert.That(DemoAnalysis.Median([]), Is.Null);
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, so the sample sd is √(32/7).
        var (mean, sd) = DemoAnalysis.MeanSd([2.0, 4, 4, 4, 5, 5, 7, 9])!.Value;
        Assert.That(mean, Is.EqualTo(5).Within(1e-15));
        Assert.That(sd, Is.EqualTo(Math.Sqrt(32.0 / 7)).Within(1e-15));
        Assert.That(DemoAnalysis.MeanSd([3.0]), Is.EqualTo(((double, double?)?)(3.0, null)), "no spread from one value");
        Assert.That(DemoAnalysis.MeanSd([]), Is.Null);
    }

    [Test]
    public void StepTimeSavingCountsKdStepsAtTheirOwnMedian()
    {
        // 76 steps to the target: 36 KD-phase steps at 111 ms and 40 plain ones at 47.6 ms, against 120 plain steps:
        // 1 − (3996 + 1904) / 5712, a loss of 3.3%.
        var arm = new ArmClock("salt", 76, null, null, 111, 47.6, null, null);
        Assert.That(DemoFindings.StepTimeSaving(arm, 36, 120), Is.EqualTo(1 - 5900.0 / 5712).Within(1e-12));
        // Reached inside the KD phase: every step at the KD-phase median, 1 − 20·111 / 5712.
        Assert.That(DemoFindings.StepTimeSaving(arm with { StepToTarget = 20 }, 36, 120), Is.EqualTo(1 - 2220.0 / 5712).Within(1e-12));
        Assert.That(DemoFindings.StepTimeSaving(arm with { StepToTarget = null }, 36, 120), Is.Null);
        Assert.That(DemoFindings.StepTimeSaving(arm with { KdStepMs = null }, 36, 120), Is.Null);
        // Break-even: 36 KD-phase steps may cost what the 120 − 76 = 44 saved plain steps and their own 36 cost, (120 − 40)/36 − 1;
        // reached at step 20, inside the KD phase, 20 steps may cost 120: 120/20 − 1 = 5.
        Assert.That(DemoFindings.BreakEvenOverhead(76, 36, 120), Is.EqualTo(80.0 / 36 - 1).Within(1e-12));
        Assert.That(DemoFindings.BreakEvenOverhead(20, 36, 120), Is.EqualTo(5).Within(1e-12));
        Assert.That(DemoFindings.BreakEvenOverhead(null, 36, 120), Is.Null);
        Assert.That(DemoFindings.BreakEvenOverhead(76, 0, 120), Is.Null, "no KD phase, no overhead to break even on");
    }

    [Test]
    public void RunMetricsReadsTheCurveAndTheClock()
    {
        var file = Path.Combine(Path.GetTempPath(), $"whittle-metrics-{Guid.NewGuid():N}.jsonl");
        try
        {
            File.WriteAllLines(file,
            [
                """{"step":0,"precision":"fp32"}""",
                """{"step":1,"tokens":8,"loss":5,"ms":30,"elapsed_s":0.03,"teacher_ms":10,"ce":5,"kd":1}""",
                """{"step":2,"tokens":16,"loss":5,"ms":50,"elapsed_s":0.08,"teacher_ms":12,"ce":5,"kd":1}""",
                """{"step":3,"tokens":24,"loss":5,"ms":40,"elapsed_s":0.12,"teacher_ms":11,"ce":5,"kd":1}""",
                """{"step":3,"tokens":24,"val_loss":4,"val_perplexity":54.6,"eval_seconds":0.5,"elapsed_s":0.12}""",
                """{"step":4,"tokens":32,"loss":4,"ms":20,"elapsed_s":0.14}""",
                """{"step":5,"tokens":40,"loss":4,"ms":10,"elapsed_s":0.15}""",
                """{"step":5,"tokens":40,"val_loss":3.5,"val_perplexity":33.1,"eval_seconds":0.5,"elapsed_s":0.15}""",
            ]);
            // KD steps 30, 50, 40 ms: median 40; plain 20, 10: median 15; the teacher 10 + 12 + 11 ms.
            var clock = RunMetrics.Clock(file)!;
            Assert.That((clock.Seconds, clock.KdSteps, clock.KdStepMs, clock.PlainStepMs), Is.EqualTo((0.15, 3, (double?)40, (double?)15)));
            Assert.That(clock.TeacherSeconds, Is.EqualTo(0.033).Within(1e-15));
            Assert.That(RunMetrics.Curve(file), Is.EqualTo(new[] { new CurvePoint(3, 24, 4, 0.12), new CurvePoint(5, 40, 3.5, 0.15) }));

            File.AppendAllLines(file, ["""{"step":6,"tokens":48,"loss":4,"ms":10}"""]);
            Assert.That(RunMetrics.Clock(file), Is.Null, "a step without elapsed_s: no clock rather than a partial one");
        }
        finally { File.Delete(file); }
    }
}
