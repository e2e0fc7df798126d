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
}
