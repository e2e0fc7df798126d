// Policy: the picture of a multi-objective search (`whittle search` writes it next to pareto.json): one plot per size
// objective (parameters, FLOPs per token, latency) against validation perplexity, every candidate by strategy, and each
// strategy's front in that plane as a staircase, so fronts are compared by eye as hypervolume compares them by number.
// With three objectives a candidate off a plane's staircase may still be on the 3-D front; pareto.json is the truth.
namespace Whittle.Native.Demo;

public static class SearchFrontPlot
{
    /// <summary>A standalone SVG: x = a size objective, y = perplexity (log), per strategy its candidates and its 2-D front.</summary>
    public static string Render(string xLabel, IReadOnlyList<(string Strategy, IReadOnlyList<(double X, double Ppl)> Points)> strategies)
    {
        var plot = new SvgPlot($"Search fronts: validation perplexity vs {xLabel}", xLabel, "validation perplexity", false, true,
            DemoFormat.Tick, DemoFormat.Tick);
        for (int i = 0; i < strategies.Count; i++)
        {
            var (name, points) = strategies[i];
            string color = SvgPlot.Palette[i % SvgPlot.Palette.Length];
            var marker = SvgPlot.Markers[i % SvgPlot.Markers.Length];
            plot.Scatter($"{name} ({points.Count})", color, points, marker, points.Count <= 3 ? 6 : 3.5);   // a lone baseline drawn large
            var front = new List<(double X, double Ppl)>();
            foreach (var p in points.OrderBy(p => p.X).ThenBy(p => p.Ppl))
                if (front.Count == 0 || p.Ppl < front[^1].Ppl) front.Add(p);
            if (front.Count > 1) plot.Steps($"{name} front", color, front);
        }
        return plot.Render("search-front", standalone: true);
    }
}
