// Policy: the report's sentences on the demo search's multi-objective view (ppl, params, FLOPs): the size of the
// n-dimensional Pareto set, each strategy's hypervolume as `whittle search` computed it (one frame for all strategies:
// every objective rescaled to [0, 1] by the best and worst value any strategy reached, reference point 1.1 in each), and
// that reference point in the objectives' own units. Numbers are the search's, read from its summary.json; nothing is
// recomputed here, so the report and summary.json cannot disagree.
using System.Globalization;
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

public static class DemoObjectives
{
    /// <summary>An objective's value as the report prints it: perplexity, a count, or FLOPs per token.</summary>
    public static string Show(string objective, double v) => objective switch
    {
        "ppl" => Perplexity(v),
        "latency" => Ms(v),
        _ => Si(v),
    };

    /// <summary>The reference point, "ppl 812.3, params 27.5k, flops 1.07M".</summary>
    public static string ReferencePoint(SearchObjectives s) =>
        string.Join(", ", s.Objectives.Where(s.ReferencePoint.ContainsKey).Select(o => $"{o} {Show(o, s.ReferencePoint[o])}"));

    /// <summary>The sub-networks the search evaluated, each once (strategies may propose the same one).</summary>
    public static int DistinctEvaluated(DemoResults r) => r.Search.Select(p => p.Spec).Distinct().Count();

    /// <summary>The reference point's value in every rescaled objective: the d-th root of the maximum hypervolume.</summary>
    public static double ReferenceScaled(SearchObjectives s) => Math.Pow(s.Maximum, 1.0 / s.Objectives.Count);

    public static IReadOnlyList<string> Sentences(DemoResults r)
    {
        ArgumentNullException.ThrowIfNull(r);
        if (r.SearchFront is not { } s)
            return ["This run's search did not record FLOPs (a search stage from before the demo asked for `--objectives " +
                "ppl,params,flops`), so there is no three-objective view."];
        var list = new List<string>
        {
            $"Over ({string.Join(", ", s.Objectives)}), all minimised, the search's Pareto set (pareto.json) holds {s.Pareto.Count} " +
                $"of the {DistinctEvaluated(r)} distinct sub-networks evaluated.",
        };
        var ranked = s.Hypervolume.OrderByDescending(kv => kv.Value).ToList();
        if (ranked.Count > 0)
            list.Add("Hypervolume per strategy (larger is better; the maximum is " +
                $"{s.Maximum.ToString("0.###", CultureInfo.InvariantCulture)}): " +
                string.Join(", ", ranked.Select(kv => $"{kv.Key} {kv.Value.ToString("F4", CultureInfo.InvariantCulture)}")) +
                $". Reference point: {ReferencePoint(s)} ({ReferenceScaled(s).ToString("0.##", CultureInfo.InvariantCulture)} in each " +
                "objective rescaled to [0, 1] by the best and worst value any " +
                "strategy reached). A strategy with few candidates can score high when they sit where no other strategy went.");
        return list;
    }
}
