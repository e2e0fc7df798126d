// Policy: the report's numbers are computed here, from DemoResults only, by small pure functions that tests check on
// hand-made data. "Reaching" a perplexity means the curve's perplexity is at or below it; between two evaluations the
// log-perplexity (the validation loss) is taken as linear in tokens (or steps, or training seconds), the same
// assumption the paper's "×-fewer-tokens" reading of a loss curve makes. A point whose loss is not finite never reaches
// anything. Nothing here decides wording; DemoFindings turns these numbers into sentences.
namespace Whittle.Native.Demo;

public static class DemoAnalysis
{
    // ln(exp(L)) can come back one ulp above L: a curve must reach its own final perplexity.
    const double RelativeSlack = 1e-12;

    /// <summary>
    /// The first token count at which <paramref name="curve"/> reaches <paramref name="targetPerplexity"/>: the first point's
    /// tokens when it is already at or below the target, the interpolated crossing inside the first segment that crosses it,
    /// or null when no evaluation reaches it.
    /// </summary>
    public static double? TokensToReach(IReadOnlyList<CurvePoint> curve, double targetPerplexity) =>
        FirstReach(curve, p => p.Tokens, targetPerplexity);

    /// <summary>As <see cref="TokensToReach"/>, in optimizer steps.</summary>
    public static double? StepToReach(IReadOnlyList<CurvePoint> curve, double targetPerplexity) =>
        FirstReach(curve, p => p.Step, targetPerplexity);

    /// <summary>
    /// As <see cref="TokensToReach"/>, in training seconds (the points' <see cref="CurvePoint.Seconds"/>, by the same rule);
    /// null unless every point has its seconds.
    /// </summary>
    public static double? SecondsToReach(IReadOnlyList<CurvePoint> curve, double targetPerplexity)
    {
        ArgumentNullException.ThrowIfNull(curve);
        return curve.All(p => p.Seconds is not null) ? FirstReach(curve, p => p.Seconds!.Value, targetPerplexity) : null;
    }

    /// <summary>The median (the mean of the middle two for an even count); null for no values.</summary>
    public static double? Median(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count == 0 ? null : v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    /// <summary>The mean and the sample standard deviation (n − 1 in the denominator; null below two values); null for no values.</summary>
    public static (double Mean, double? Sd)? MeanSd(IEnumerable<double> values)
    {
        var v = values.ToList();
        if (v.Count == 0) return null;
        double mean = v.Average();
        return (mean, v.Count < 2 ? null : Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1)));
    }

    static double? FirstReach(IReadOnlyList<CurvePoint> curve, Func<CurvePoint, double> x, double targetPerplexity)
    {
        ArgumentNullException.ThrowIfNull(curve);
        if (!(targetPerplexity > 0) || double.IsInfinity(targetPerplexity))
            throw new ArgumentOutOfRangeException(
                nameof(targetPerplexity), targetPerplexity, "a target perplexity must be positive and finite");
        double target = Math.Log(targetPerplexity);
        double slack = RelativeSlack * Math.Max(1, Math.Abs(target));
        // Evaluations in the order they were made along x; a stable sort keeps the caller's order on ties.
        var points = curve.OrderBy(x).ToList();
        CurvePoint? previous = null;
        foreach (var p in points)
        {
            if (!double.IsFinite(p.ValLoss)) { previous = null; continue; }
            if (p.ValLoss <= target + slack)
            {
                if (previous is null) return x(p);
                // The segment from previous (above the target) to p (at or below it) crosses it once.
                double fraction = (previous.ValLoss - target) / (previous.ValLoss - p.ValLoss);
                return x(previous) + Math.Clamp(fraction, 0, 1) * (x(p) - x(previous));
            }
            previous = p;
        }
        return null;
    }

    /// <summary>
    /// The candidates no other candidate beats on both parameters (fewer or equal) and perplexity (lower or equal), sorted
    /// by parameters. Of exact duplicates the first evaluated is kept; candidates with a non-finite perplexity are ignored.
    /// </summary>
    public static IReadOnlyList<SearchPoint> ParetoFront(IEnumerable<SearchPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var front = new List<SearchPoint>();
        foreach (var p in points.Where(p => double.IsFinite(p.Perplexity)).OrderBy(p => p.Parameters).ThenBy(p =>
            p.Perplexity).ThenBy(p => p.Index))
            if (front.Count == 0 || p.Perplexity < front[^1].Perplexity) front.Add(p);
        return front;
    }

    /// <summary>Best perplexity seen so far after each of the points, in the order given (the running minimum).</summary>
    public static IReadOnlyList<double> BestSoFar(IEnumerable<SearchPoint> points)
    {
        var best = new List<double>();
        double min = double.PositiveInfinity;
        foreach (var p in points)
        {
            if (double.IsFinite(p.Perplexity) && p.Perplexity < min) min = p.Perplexity;
            best.Add(min);
        }
        return best;
    }

    /// <summary>The last evaluation of a curve (the arm's final perplexity), or null for an empty curve.</summary>
    public static CurvePoint? Final(IReadOnlyList<CurvePoint> curve) =>
        curve.Count == 0 ? null : curve.OrderBy(p => p.Tokens).ThenBy(p => p.Step).Last();
}
