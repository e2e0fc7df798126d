// Policy: the five plots of the demo report, each built from DemoResults and DemoFindings alone. Colours are fixed per
// arm and strategy name so the same thing has the same colour in every plot and every run; unknown names take the
// next palette colour. Perplexity axes are logarithmic (the early evaluations sit far above the late ones).
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

/// <summary>A plot of the report: the file it is also written to, a caption, and the element.</summary>
sealed record DemoPlot(string File, string Caption, ISvgFigure Plot)
{
    public string Id => Path.GetFileNameWithoutExtension(File);
}

static class DemoPlots
{
    static readonly Dictionary<string, string> Colors = new()
    {
        [DemoFindings.RandomInit] = "#000000", [DemoFindings.SubnetInit] = "#0072B2", [DemoFindings.SubnetInitKd] = "#D55E00",
        [DemoFindings.Evolution] = "#0072B2", [DemoFindings.RandomSearch] = "#E69F00", [DemoFindings.Importance] = "#009E73",
        [DemoFindings.SaltArm] = "#D55E00", [DemoFindings.SaltBaseline] = "#000000", [DemoFindings.SaltCached] = "#009E73",
    };

    static string ColorOf(string name, int index) =>
        Colors.TryGetValue(name, out var c) ? c : SvgPlot.Palette[index % SvgPlot.Palette.Length];
    static Marker MarkerOf(int index) => SvgPlot.Markers[index % SvgPlot.Markers.Length];

    public static IReadOnlyList<DemoPlot> Of(DemoResults r, DemoFindings f) =>
        [Students(r, f), Search(r, f), Progress(r), Salt(r, f), SaltClock(r, f), .. Objectives(r)];

    public const string ObjectivesFile = "search-objectives.svg", ParetoSetSeries = "Pareto set (ppl, params, FLOPs)";

    /// <summary>
    /// The search over (perplexity, parameters, FLOPs) as two panels sharing the perplexity axis: perplexity against
    /// parameters, then against FLOPs per token; every candidate by strategy, and the three-objective Pareto set of
    /// pareto.json drawn over them as large rings of one colour, the same sub-networks in both panels. No plot when the
    /// search ran without the flops objective.
    /// </summary>
    static IEnumerable<DemoPlot> Objectives(DemoResults r)
    {
        if (r.SearchFront is not { } front) yield break;
        SvgPlot Panel(string title, string xLabel, Func<SearchPoint, double?> x, Func<ParetoPoint, double> px)
        {
            var plot = new SvgPlot(title, xLabel, "validation perplexity", false, true, Tick, Tick);
            int i = 0;
            foreach (var g in r.Search.GroupBy(p => p.Strategy))
            {
                var points = g.Where(p => x(p) is not null).Select(p => (x(p)!.Value, p.Perplexity)).ToList();
                plot.Scatter($"{g.Key} ({points.Count})", ColorOf(g.Key, i), points, MarkerOf(i), points.Count <= 3 ? 6 : 3);
                i++;
            }
            plot.Scatter($"{ParetoSetSeries} ({front.Pareto.Count})", "#CC79A7", front.Pareto.Select(p => (px(p), p.Perplexity)),
                Marker.Ring, 7);
            return plot;
        }
        var figure = new SvgPanels("Search over perplexity, parameters and FLOPs",
        [
            Panel("Perplexity vs parameters (non-embedding)", "non-embedding parameters", p => p.Parameters, p => p.Parameters),
            Panel("Perplexity vs forward FLOPs per token", "forward FLOPs per token", p => p.Flops, p => p.Flops),
        ]);
        yield return new DemoPlot(ObjectivesFile,
            "Every sub-network the search evaluated, by strategy, against its two costs: parameters (top) and forward FLOPs per token " +
            "at the search's sequence length (bottom), sharing the perplexity axis. Rings mark the Pareto set over all three objectives " +
            "(pareto.json), the same sub-networks in both panels: a ring off a panel's lower-left edge is beaten in that plane but not " +
            "in the other cost.", figure);
    }

    /// <summary>
    /// A y cap for learning curves: the first evaluation (often untrained, perplexity near the vocabulary size) would
    /// flatten everything after it, so when it is over twice as high as any later point the axis stops just above those.
    /// </summary>
    static double? CurveCap(IEnumerable<Arm> arms)
    {
        var rest = arms.SelectMany(a => a.Curve.OrderBy(p => p.Step).Skip(1)).Select(p => p.Perplexity).Where(double.IsFinite).ToList();
        var first = arms.Where(a => a.Curve.Count > 0).Select(a => a.Curve.MinBy(p => p.Step)!.Perplexity).Where(double.IsFinite).ToList();
        if (rest.Count == 0 || first.Count == 0) return null;
        double cap = rest.Max() * 1.15;
        return first.Max() > 2 * cap ? cap : null;
    }

    static DemoPlot Students(DemoResults r, DemoFindings f)
    {
        var plot = ArmCurves("Students: validation perplexity vs training tokens", "training tokens", r.Students, p => p.Tokens);
        if (f.StudentTarget is { } t) plot.HorizontalLine(t, $"{DemoFindings.RandomInit} final ({Perplexity(t)})");
        return new DemoPlot("students.svg",
            "Validation perplexity of every student arm against the tokens it has trained on; the dashed line is random-init's final " +
            "perplexity.", plot);
    }

    static DemoPlot Search(DemoResults r, DemoFindings f)
    {
        var plot = new SvgPlot("Search: candidates and the Pareto front", "parameters", "validation perplexity", false, true, Tick, Tick);
        int i = 0;
        foreach (var g in r.Search.GroupBy(p => p.Strategy))
        {
            // A baseline of one or a few candidates is drawn large enough to find among the many.
            plot.Scatter($"{g.Key} ({g.Count()})", ColorOf(g.Key, i), g.Select(p => ((double)p.Parameters, p.Perplexity)), MarkerOf(i),
                g.Count() <= 3 ? 6 : 3.5);
            i++;
        }
        if (f.Pareto.Count > 0) plot.Steps("Pareto front", "#CC79A7", f.Pareto.Select(p => ((double)p.Parameters, p.Perplexity)));
        if (r.BudgetParams > 0) plot.VerticalLine(r.BudgetParams, $"budget {Si(r.BudgetParams)}");
        return new DemoPlot("search.svg",
            "Every sub-network the search evaluated (parameters, perplexity), by strategy; the staircase is the Pareto front, the dashed " +
            "line the parameter budget.", plot);
    }

    static DemoPlot Progress(DemoResults r)
    {
        var plot = new SvgPlot("Search progress: best perplexity so far", "evaluations of the strategy", "best validation perplexity",
            false, true, Tick, Tick);
        int i = 0;
        foreach (var g in r.Search.GroupBy(p => p.Strategy))
        {
            var points = g.OrderBy(p => p.Index).ToList();
            var best = DemoAnalysis.BestSoFar(points);
            string color = ColorOf(g.Key, i);
            // A strategy that evaluates one candidate (the importance baseline) is a level to beat, not a curve.
            if (points.Count == 1) plot.HorizontalLine(best[0], $"{g.Key} ({Perplexity(best[0])})", color);
            else plot.Line(g.Key, color, best.Select((b, k) => ((double)(k + 1), b)), points.Count <= 40 ? MarkerOf(i) : Marker.None);
            i++;
        }
        return new DemoPlot("search-progress.svg",
            "Best perplexity found after each evaluation, per strategy; a strategy with a single candidate is drawn as a dashed " +
            "level.", plot);
    }

    static DemoPlot Salt(DemoResults r, DemoFindings f)
    {
        var plot = ArmCurves("SALT vs baseline: validation perplexity vs step", "optimizer step", r.Salt, p => p.Step);
        if (r.Salt.Count > 0 && r.SaltKdSteps > 0) plot.VerticalLine(r.SaltKdSteps, $"KD ends: step {Count(r.SaltKdSteps)}");
        if (f.SaltTarget is { } t) plot.HorizontalLine(t, $"baseline final ({Perplexity(t)})");
        return new DemoPlot("salt.svg",
            "SALT (knowledge distillation from the small model for the first steps, then plain training) against the baseline trained on " +
            "the data alone.", plot);
    }

    static DemoPlot SaltClock(DemoResults r, DemoFindings f)
    {
        var plot = ArmCurves("SALT vs baseline: validation perplexity vs training wall-clock", "training seconds", r.Salt,
            p => p.Seconds);
        if (f.SaltTarget is { } t) plot.HorizontalLine(t, $"baseline final ({Perplexity(t)})");
        return new DemoPlot("salt-clock.svg",
            "The same runs against their training wall-clock (the steps' own times; evaluations and checkpoint saves excluded).", plot);
    }

    /// <summary>
    /// Validation perplexity of each arm against x (tokens, steps or seconds), points in step order. An arm with a point
    /// that has no x is left out rather than drawn at made-up places (a run logged before elapsed_s existed has no seconds).
    /// </summary>
    static SvgPlot ArmCurves(string title, string xLabel, IReadOnlyList<Arm> arms, Func<CurvePoint, double?> x)
    {
        var plot = new SvgPlot(title, xLabel, "validation perplexity", false, true, Tick, Tick) { YCap = CurveCap(arms) };
        for (int i = 0; i < arms.Count; i++)
        {
            var a = arms[i];
            if (a.Curve.Any(p => x(p) is null)) continue;
            plot.Line(a.Name, ColorOf(a.Name, i), a.Curve.OrderBy(p => p.Step).Select(p => (x(p)!.Value, p.Perplexity)), MarkerOf(i));
        }
        return plot;
    }
}
