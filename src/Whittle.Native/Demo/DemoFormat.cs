// Policy: one place decides how the report prints numbers, so the Markdown, the HTML and the plots agree, and a reader
// (or a test) can tell from the printed digits how much was rounded: counts of tokens and parameters with three
// significant digits and an SI suffix (k, M, B), perplexities with two decimals below 100, ratios with one decimal.
using System.Globalization;

namespace Whittle.Native.Demo;

static class DemoFormat
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>3 significant digits with k / M / B ("2.10M", "512k", "950"); exact below 1000 for whole numbers.</summary>
    public static string Si(double v)
    {
        if (!double.IsFinite(v)) return v.ToString(Inv);
        double a = Math.Abs(v);
        (double scale, string suffix) = a >= 999.5e6 ? (1e9, "B") : a >= 999.5e3 ? (1e6, "M") : a >= 999.5 ? (1e3, "k") : (1, "");
        double m = v / scale;
        if (scale == 1 && m == Math.Round(m)) return m.ToString("0", Inv);
        int decimals = Math.Max(0, 2 - (int)Math.Floor(Math.Log10(Math.Max(Math.Abs(m), 1e-300))));
        // Rounding can carry into a new digit (999.7 → "1000"): print the carried value with one digit fewer.
        string s = Math.Round(m, decimals).ToString("F" + decimals, Inv);
        if (decimals > 0 && s.Replace("-", "").Split('.')[0].Length > 3 - decimals)
            s = Math.Round(m, decimals - 1).ToString("F" + (decimals - 1), Inv);
        return s + suffix;
    }

    /// <summary>Tick labels: as short as the value allows ("500k", "1M", "1.5M", "20").</summary>
    public static string Tick(double v)
    {
        double a = Math.Abs(v);
        (double scale, string suffix) = a >= 1e9 ? (1e9, "B") : a >= 1e6 ? (1e6, "M") : a >= 1e4 ? (1e3, "k") : (1, "");
        return (v / scale).ToString("0.###", Inv) + suffix;
    }

    public static string Perplexity(double p) =>
        !double.IsFinite(p) ? p.ToString(Inv) : p < 100 ? p.ToString("F2", Inv) : p < 1000 ? p.ToString("F1", Inv) : p.ToString("N0", Inv);

    public static string Count(long n) => n.ToString("N0", Inv);

    public static string Step(double s) => Math.Round(s).ToString("N0", Inv);

    public static string Factor(double x) => x.ToString(x < 10 ? "F1" : "F0", Inv) + "×";

    public static string Percent(double fraction)
    {
        double pct = 100 * fraction;
        return pct.ToString(Math.Abs(pct) < 10 ? "F1" : "F0", Inv) + "%";
    }

    /// <summary>A saving as a reader says it: 0.25 → "25% less", −0.05 → "5.0% more".</summary>
    public static string LessOrMore(double fraction) =>
        !double.IsFinite(fraction) ? "—" : fraction >= 0 ? Percent(fraction) + " less" : Percent(-fraction) + " more";

    public static string Ms(double ms) => ms.ToString(ms < 100 ? "F1" : "F0", Inv) + " ms";

    public static string Seconds(double s) => s.ToString(s < 100 ? "F1" : "F0", Inv) + " s";

    /// <summary>A duration a person reads at a glance: "42.0 s", "3 min 05 s", "1 h 02 min".</summary>
    public static string Duration(double seconds)
    {
        if (!double.IsFinite(seconds) || seconds < 60) return Seconds(seconds);
        long s = (long)Math.Round(seconds);
        return s < 3600 ? $"{s / 60} min {s % 60:00} s" : $"{s / 3600} h {s / 60 % 60:00} min";
    }

    public static string Date(DateTimeOffset t) => t.ToUniversalTime().ToString("yyyy-MM-dd HH:mm 'UTC'", Inv);
}
