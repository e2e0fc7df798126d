// Policy: plots are written by hand as plain SVG 1.1 text: no scripts, no external fonts, images or stylesheets, so a
// plot reads the same inline in report.html, as a standalone .svg file, and on GitHub. Every piece of text goes through
// Xml() escaping. Axes fit the data (plus the reference lines) with a small margin; a log axis gets 1-2-5 ticks per
// decade, or "nice" linear ticks placed logarithmically when the data spans less than a decade. Points that a log
// axis cannot show (≤ 0) and non-finite points are left out, never clamped into view; with a y cap, lines above it
// run off the top edge (clipped to the plot area) and a note gives the highest value. Series are told apart by colour
// (the Okabe–Ito palette, readable with the common colour-vision deficiencies) and by marker shape.
using System.Globalization;
using System.Text;

namespace Whittle.Native.Demo;

/// <summary>Ring: an open circle, drawn over filled markers to mark a subset of them (a Pareto set).</summary>
enum Marker { Circle, Square, Triangle, Diamond, Cross, None, Ring }

sealed class SvgPlot : ISvgFigure
{
    /// <summary>Okabe & Ito's colour-blind-safe palette, minus yellow (too faint on white).</summary>
    public static readonly string[] Palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
    public static readonly Marker[] Markers = [Marker.Circle, Marker.Square, Marker.Triangle, Marker.Diamond, Marker.Cross];

    enum Kind { Line, Scatter, Step }
    sealed record Series(string Name, string Color, (double X, double Y)[] Points, Marker Marker, Kind Kind, bool Dashed, double Size = 4);
    sealed record Reference(bool Vertical, double Value, string Label, string Color);

    readonly string _title, _xLabel, _yLabel;
    readonly bool _logX, _logY;
    readonly Func<double, string> _xTick, _yTick;
    readonly List<Series> _series = new();
    readonly List<Reference> _references = new();

    /// <summary>
    /// An upper limit for the y-axis (data units), for curves whose first evaluation sits far above the rest. Points above
    /// it are not hidden: their lines run off the top edge (clipped there) and a note names the highest value.
    /// </summary>
    public double? YCap { get; init; }

    public int Width { get; init; } = 900;
    public int Height { get; init; } = 420;
    const int Left = 68, Right = 225, Top = 38, Bottom = 52;

    public SvgPlot(string title, string xLabel, string yLabel, bool logX, bool logY, Func<double, string> xTick, Func<double, string> yTick)
    {
        (_title, _xLabel, _yLabel, _logX, _logY, _xTick, _yTick) = (title, xLabel, yLabel, logX, logY, xTick, yTick);
    }

    public void Line(string name, string color, IEnumerable<(double X, double Y)> points, Marker marker, bool dashed = false) =>
        _series.Add(new Series(name, color, points.ToArray(), marker, Kind.Line, dashed));

    public void Scatter(string name, string color, IEnumerable<(double X, double Y)> points, Marker marker, double size = 3.5) =>
        _series.Add(new Series(name, color, points.ToArray(), marker, Kind.Scatter, false, size));

    /// <summary>A staircase through the points sorted by x: horizontal to the next x, then vertical to its y (a Pareto front), ending at
    /// the last point.</summary>
    public void Steps(string name, string color, IEnumerable<(double X, double Y)> points) =>
        _series.Add(new Series(name, color, points.OrderBy(p => p.X).ToArray(), Marker.None, Kind.Step, false));

    public void VerticalLine(double x, string label, string color = "#555555") => _references.Add(new Reference(true, x, label, color));
    public void HorizontalLine(double y, string label, string color = "#555555") => _references.Add(new Reference(false, y, label, color));

    bool Visible(double v, bool log) => double.IsFinite(v) && (!log || v > 0);

    /// <summary>The plot as an &lt;svg&gt; element; standalone adds the namespace a .svg file needs (HTML5 implies it inline).</summary>
    public string Render(string id, bool standalone)
    {
        var sb = new StringBuilder();
        int x0 = Left, x1 = Width - Right, y0 = Top, y1 = Height - Bottom;
        sb.Append($"<svg{(standalone ? " xmlns=\"http://www.w3.org/2000/svg\"" : "")} viewBox=\"0 0 {Width} {Height}\" width=\"{Width}\" " +
            $"height=\"{Height}\" role=\"img\" aria-labelledby=\"{id}-title\" ")
          .Append("font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\" font-size=\"12\" " +
              "class=\"plot\">\n");
        sb.Append($"<title id=\"{id}-title\">{Xml(_title)}</title>\n");
        sb.Append($"<rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{Height}\" fill=\"#ffffff\"/>\n");
        sb.Append($"<text x=\"{x0}\" y=\"22\" font-size=\"15\" font-weight=\"600\" fill=\"#222222\">{Xml(_title)}</text>\n");

        var xs = _series.SelectMany(s => s.Points).Where(p => Visible(p.X, _logX) && Visible(p.Y, _logY)).Select(p => p.X)
            .Concat(_references.Where(r => r.Vertical && Visible(r.Value, _logX)).Select(r => r.Value)).ToList();
        var ys = _series.SelectMany(s => s.Points).Where(p => Visible(p.X, _logX) && Visible(p.Y, _logY)).Select(p => p.Y)
            .Concat(_references.Where(r => !r.Vertical && Visible(r.Value, _logY)).Select(r => r.Value)).ToList();
        if (xs.Count == 0 || ys.Count == 0)
        {
            sb.Append($"<text x=\"{(x0 + x1) / 2}\" y=\"{(y0 + y1) / 2}\" text-anchor=\"middle\" fill=\"#555555\">no data in this " +
                $"run</text>\n</svg>\n");
            return sb.ToString();
        }
        double yMax = ys.Max();
        bool capped = YCap is { } cap && cap < yMax && cap > ys.Min();
        var xAxis = new Axis(xs.Min(), xs.Max(), _logX, x0, x1);
        var yAxis = new Axis(ys.Min(), capped ? YCap!.Value : yMax, _logY, y1, y0);
        sb.Append($"<defs><clipPath id=\"{id}-area\"><rect x=\"{x0}\" y=\"{y0}\" width=\"{x1 - x0}\" " +
            $"height=\"{y1 - y0}\"/></clipPath></defs>\n");

        // Grid, ticks and tick labels.
        sb.Append("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n");
        foreach (var t in xAxis.Ticks()) sb.Append($"<line x1=\"{F(xAxis.Map(t))}\" y1=\"{y0}\" x2=\"{F(xAxis.Map(t))}\" y2=\"{y1}\"/>\n");
        foreach (var t in yAxis.Ticks()) sb.Append($"<line x1=\"{x0}\" y1=\"{F(yAxis.Map(t))}\" x2=\"{x1}\" y2=\"{F(yAxis.Map(t))}\"/>\n");
        sb.Append("</g>\n");
        sb.Append($"<rect x=\"{x0}\" y=\"{y0}\" width=\"{x1 - x0}\" height=\"{y1 - y0}\" fill=\"none\" stroke=\"#888888\"/>\n");
        sb.Append("<g fill=\"#333333\">\n");
        foreach (var t in xAxis.Ticks())
            sb.Append($"<text x=\"{F(xAxis.Map(t))}\" y=\"{y1 + 16}\" text-anchor=\"middle\">{Xml(_xTick(t))}</text>\n");
        foreach (var t in yAxis.Ticks())
            sb.Append($"<text x=\"{x0 - 6}\" y=\"{F(yAxis.Map(t) + 4)}\" text-anchor=\"end\">{Xml(_yTick(t))}</text>\n");
        sb.Append($"<text x=\"{(x0 + x1) / 2}\" y=\"{Height - 12}\" text-anchor=\"middle\">{Xml(_xLabel)}</text>\n");
        sb.Append($"<text transform=\"translate(16 {(y0 + y1) / 2}) rotate(-90)\" " +
            $"text-anchor=\"middle\">{Xml(_yLabel)}{(_logY ? " (log scale)" : "")}</text>\n");
        sb.Append("</g>\n");

        foreach (var r in _references)
        {
            if (r.Vertical && Visible(r.Value, _logX))
            {
                double x = xAxis.Map(r.Value);
                sb.Append($"<line x1=\"{F(x)}\" y1=\"{y0}\" x2=\"{F(x)}\" y2=\"{y1}\" stroke=\"{r.Color}\" stroke-width=\"1.5\" " +
                    $"stroke-dasharray=\"6 4\"/>\n");
                bool right = x < (x0 + x1) / 2.0;
                sb.Append($"<text x=\"{F(right ? x + 5 : x - 5)}\" y=\"{y0 + 14}\" text-anchor=\"{(right ? "start" : "end")}\" " +
                    $"fill=\"{r.Color}\"{Halo}>{Xml(r.Label)}</text>\n");
            }
            else if (!r.Vertical && Visible(r.Value, _logY))
            {
                double y = yAxis.Map(r.Value);
                // Labelled in the legend: a label on the line would sit on the curves that approach it.
                sb.Append($"<line x1=\"{x0}\" y1=\"{F(y)}\" x2=\"{x1}\" y2=\"{F(y)}\" stroke=\"{r.Color}\" stroke-width=\"1.5\" " +
                    $"stroke-dasharray=\"6 4\"/>\n");
            }
        }

        sb.Append($"<g clip-path=\"url(#{id}-area)\">\n");
        foreach (var s in _series)
        {
            var pts = s.Points.Where(p => Visible(p.X, _logX) && Visible(p.Y, _logY)).Select(
                p => (X: xAxis.Map(p.X), Y: yAxis.Map(p.Y))).ToList();
            if (pts.Count == 0) continue;
            sb.Append($"<g>\n<title>{Xml(s.Name)}</title>\n");
            if (s.Kind == Kind.Line && pts.Count > 1)
                sb.Append($"<polyline fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"2\" " +
                    $"stroke-linejoin=\"round\"{(s.Dashed ? " stroke-dasharray=\"7 4\"" : "")} " +
                    $"points=\"{string.Join(" ", pts.Select(p => $"{F(p.X)},{F(p.Y)}"))}\"/>\n");
            if (s.Kind == Kind.Step)
            {
                var path = new StringBuilder($"M{F(pts[0].X)},{F(pts[0].Y)}");
                for (int i = 1; i < pts.Count; i++) path.Append($" H{F(pts[i].X)} V{F(pts[i].Y)}");
                sb.Append($"<path d=\"{path}\" fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"2\"/>\n");
            }
            foreach (var p in pts) sb.Append(MarkerSvg(s.Marker, p.X, p.Y, s.Color, s.Size));
            sb.Append("</g>\n");
        }
        sb.Append("</g>\n");
        if (capped)
            sb.Append($"<text x=\"{x1 - 6}\" y=\"{y0 + 14}\" text-anchor=\"end\" fill=\"#555555\" font-size=\"11\"{Halo}>↑ off the top: " +
                $"values up to {Xml(yMax.ToString(yMax >= 100 ? "N0" : "0.##", CultureInfo.InvariantCulture))}</text>\n");

        // Legend in the right margin, one row per series.
        int lx = x1 + 16, ly = y0 + 8;
        foreach (var s in _series)
        {
            sb.Append($"<g>");
            if (s.Kind != Kind.Scatter)
                sb.Append($"<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{lx + 24}\" y2=\"{ly}\" stroke=\"{s.Color}\" " +
                    $"stroke-width=\"2\"{(s.Dashed ? " stroke-dasharray=\"7 4\"" : "")}/>");
            sb.Append(MarkerSvg(s.Marker, lx + 12, ly, s.Color, 4).TrimEnd('\n'));
            sb.Append($"<text x=\"{lx + 32}\" y=\"{ly + 4}\" fill=\"#222222\">{Xml(s.Name)}</text></g>\n");
            ly += 20;
        }
        foreach (var r in _references.Where(r => !r.Vertical && Visible(r.Value, _logY)))
        {
            sb.Append($"<g><line x1=\"{lx}\" y1=\"{ly}\" x2=\"{lx + 24}\" y2=\"{ly}\" stroke=\"{r.Color}\" stroke-width=\"1.5\" " +
                $"stroke-dasharray=\"6 4\"/>");
            sb.Append($"<text x=\"{lx + 32}\" y=\"{ly + 4}\" fill=\"#222222\">{Xml(r.Label)}</text></g>\n");
            ly += 20;
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    static string MarkerSvg(Marker m, double x, double y, string color, double r) => m switch
    {
        Marker.Circle => $"<circle cx=\"{F(x)}\" cy=\"{F(y)}\" r=\"{F(r)}\" fill=\"{color}\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>\n",
        Marker.Ring => $"<circle class=\"ring\" cx=\"{F(x)}\" cy=\"{F(y)}\" r=\"{F(r)}\" fill=\"none\" stroke=\"{color}\" " +
            $"stroke-width=\"2\"/>\n",
        Marker.Square =>
            $"<rect x=\"{F(x - r)}\" y=\"{F(y - r)}\" width=\"{F(2 * r)}\" height=\"{F(2 * r)}\" fill=\"{color}\" stroke=\"#ffffff\" " +
            $"stroke-width=\"0.8\"/>\n",
        Marker.Triangle =>
            $"<path d=\"M{F(x)},{F(y - 1.2 * r)} L{F(x + 1.1 * r)},{F(y + 0.8 * r)} L{F(x - 1.1 * r)},{F(y + 0.8 * r)} Z\" " +
            $"fill=\"{color}\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>\n",
        Marker.Diamond =>
            $"<path d=\"M{F(x)},{F(y - 1.3 * r)} L{F(x + 1.3 * r)},{F(y)} L{F(x)},{F(y + 1.3 * r)} L{F(x - 1.3 * r)},{F(y)} Z\" " +
            $"fill=\"{color}\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>\n",
        Marker.Cross =>
            $"<path d=\"M{F(x - r)},{F(y - r)} L{F(x + r)},{F(y + r)} M{F(x - r)},{F(y + r)} L{F(x + r)},{F(y - r)}\" stroke=\"{color}\" " +
            $"stroke-width=\"2\"/>\n",
        _ => "",
    };

    // A white outline under reference-line labels keeps them legible where they cross a curve.
    const string Halo = " stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\"";

    static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);

    /// <summary>Text safe inside XML/HTML content and double-quoted attributes.</summary>
    public static string Xml(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
            sb.Append(c switch
            {
                '&' => "&amp;", '<' => "&lt;", '>' => "&gt;", '"' => "&quot;", '\'' => "&#39;",
                // Control characters are not allowed in XML 1.0 at all: drop them rather than emit an unparsable document.
                _ when c < ' ' && c is not ('\n' or '\t') => "",
                _ => c.ToString(),
            });
        return sb.ToString();
    }

    /// <summary>A data range mapped onto a pixel range, with padding and ticks.</summary>
    sealed class Axis
    {
        readonly bool _log;
        readonly double _lo, _hi, _p0, _p1;   // data range (after padding) and its pixel range

        public Axis(double min, double max, bool log, double p0, double p1)
        {
            _log = log; _p0 = p0; _p1 = p1;
            double a = T(min), b = T(max);
            if (b - a < 1e-12 * Math.Max(1, Math.Abs(a)))
            {
                double half = log ? 0.05 : Math.Max(Math.Abs(a) * 0.1, 1);
                a -= half; b += half;
            }
            double pad = 0.04 * (b - a);
            // A linear axis of non-negative data (tokens, steps, parameters) never dips below zero.
            _lo = !log && min >= 0 ? Math.Max(0, a - pad) : a - pad;
            _hi = b + pad;
        }

        double T(double v) => _log ? Math.Log10(v) : v;
        double Inv(double t) => _log ? Math.Pow(10, t) : t;

        public double Map(double v) => _p0 + (T(v) - _lo) / (_hi - _lo) * (_p1 - _p0);

        public IEnumerable<double> Ticks()
        {
            double min = Inv(_lo), max = Inv(_hi);
            if (_log && _hi - _lo >= 1)
            {
                double[] mantissas = _hi - _lo <= 1.5 ? [1, 2, 3, 5, 7] : _hi - _lo <= 2.5 ? [1, 2, 5] : [1];
                int step = Math.Max(1, (int)Math.Ceiling((_hi - _lo) / 8));
                for (int e = (int)Math.Floor(_lo); e <= (int)Math.Ceiling(_hi); e += step)
                    foreach (var m in mantissas)
                    {
                        double v = m * Math.Pow(10, e);
                        if (v >= min && v <= max) yield return v;
                    }
                yield break;
            }
            foreach (var v in Linear(min, max, _log ? 4 : 6)) yield return v;
        }

        static IEnumerable<double> Linear(double min, double max, int target)
        {
            double raw = (max - min) / target;
            double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
            double norm = raw / mag;
            double step = (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * mag;
            for (double v = Math.Ceiling(min / step) * step; v <= max + 1e-9 * step; v += step)
                yield return Math.Abs(v) < 1e-9 * step ? 0 : Math.Round(v / step) * step;
        }
    }
}
