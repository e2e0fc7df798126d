// Policy: what a multi-objective search minimises, as whittle does: validation perplexity against the sub-network's
// size (exact parameter count, as the budget measure counts it), its analytic forward FLOPs per token at the search's
// sequence length (SubnetCosts.FlopsPerToken), or its measured latency (Latency.cs). Every objective is minimised.
// Strategies are compared by the hypervolume of the points each evaluated, in one frame for the whole run: each
// objective is rescaled to [0, 1] by the smallest and largest value ANY strategy reached (so units and magnitudes do
// not weigh objectives), and the reference point is 1.1 in every rescaled objective (10% beyond the worst value, so the
// extreme points of a front still add volume). A strategy's hypervolume is then in [0, 1.1^d].
namespace Whittle.Native.Search;

public enum Objective { Perplexity, Params, Flops, Latency }

public sealed record ObjectiveSet(Objective[] Items)
{
    public static string Name(Objective o) => o switch
    {
        Objective.Perplexity => "ppl",
        Objective.Params => "params",
        Objective.Flops => "flops",
        _ => "latency",
    };

    /// <summary>A comma-separated list: ppl and one to three of params, flops, latency, each once.</summary>
    public static ObjectiveSet Parse(string text)
    {
        var names = text.Split(',', StringSplitOptions.TrimEntries);
        var items = names.Select(n => n switch
        {
            "ppl" => Objective.Perplexity,
            "params" => Objective.Params,
            "flops" => Objective.Flops,
            "latency" => Objective.Latency,
            _ => throw new WhittleException($"--objectives: unknown objective '{n}' (expected ppl, params, flops, latency)"),
        }).ToArray();
        if (items.Distinct().Count() != items.Length) throw new WhittleException($"--objectives '{text}' names an objective twice");
        if (!items.Contains(Objective.Perplexity) || items.Length < 2)
            throw new WhittleException($"--objectives '{text}' must be ppl and at least one of params, flops, latency");
        return new ObjectiveSet(items);
    }

    public bool Has(Objective o) => Items.Contains(o);
    public string Describe => string.Join(",", Items.Select(Name));

    /// <summary>The objective vector of an evaluated candidate (parameters as <paramref name="budgeted"/> counts them).</summary>
    public double[] Vector(HistoryEntry e, Func<Model.ParameterCount, long> budgeted, Func<double> latencyMs) =>
        Items.Select(o => o switch
        {
            Objective.Perplexity => e.Perplexity,
            Objective.Params => budgeted(e.Parameters),
            Objective.Flops => (double)e.Flops.Total,
            _ => latencyMs(),
        }).ToArray();
}

/// <summary>The common frame strategies' hypervolumes are computed in (see the file's policy).</summary>
public sealed record HypervolumeFrame(double[] Ideal, double[] Worst)
{
    public const double ReferenceScaled = 1.1;

    public static HypervolumeFrame Of(IReadOnlyList<double[]> all)
    {
        if (all.Count == 0) throw new ArgumentException("a hypervolume frame needs at least one point");
        int d = all[0].Length;
        return new(Enumerable.Range(0, d).Select(k => all.Min(p => p[k])).ToArray(),
            Enumerable.Range(0, d).Select(k => all.Max(p => p[k])).ToArray());
    }

    double Span(int k) => Worst[k] > Ideal[k] ? Worst[k] - Ideal[k] : 1;

    /// <summary>The reference point in the objectives' own units.</summary>
    public double[] Reference => Ideal.Select((lo, k) => lo + ReferenceScaled * Span(k)).ToArray();

    public double[] Scale(double[] p) => p.Select((v, k) => (v - Ideal[k]) / Span(k)).ToArray();

    /// <summary>The hypervolume of the points in the rescaled objectives, against 1.1 in each.</summary>
    public double Hypervolume(IEnumerable<double[]> points) =>
        Pareto.Hypervolume(points.Select(Scale).ToList(), Enumerable.Repeat(ReferenceScaled, Ideal.Length).ToArray());
}
