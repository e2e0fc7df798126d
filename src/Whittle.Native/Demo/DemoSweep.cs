// Policy: a seed sweep judges each run by the same DemoFindings its report.md prints: an effect counts as reproduced in a
// seed exactly when its section of the report has no "Not reproduced" sentence, so the table and the reports cannot
// disagree. The margins beside each verdict are the numbers those sentences are built from, so a reader sees how close
// a seed came, not only whether it passed.
using System.Globalization;
using System.Text;
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

/// <summary>One seed's run of a sweep: its seed, its results, and the wall time of the whole run (null when unknown).</summary>
public sealed record SweepRun(int Seed, DemoResults Results, double? WallSeconds = null);

public static class DemoSweep
{
    /// <summary>Whether each of the three effects (students, search, SALT) shows in a run, by the report's own findings.</summary>
    public static (bool Students, bool Search, bool Salt) Verdicts(DemoFindings f)
    {
        ArgumentNullException.ThrowIfNull(f);
        static bool Shown(IReadOnlyList<string> sentences) =>
            sentences.Count > 0 && !sentences.Any(s => s.StartsWith(DemoFindings.NotReproduced, StringComparison.Ordinal));
        // A section whose comparison could not be made at all (an arm missing) has no "Not reproduced" sentence but no
        // number either; it does not count as shown.
        bool students = Shown(f.StudentSentences) && f.Students.Any(a => a.Name == DemoFindings.SubnetInitKd && a.SpeedUp is > 1);
        bool search = Shown(f.SearchSentences) && f.EvolutionGain.TryGetValue(DemoFindings.RandomSearch, out var r) && r > 0
            && f.EvolutionGain.TryGetValue(DemoFindings.Importance, out var i) && i > 0;
        bool salt = Shown(f.SaltSentences) && f.SaltStep is not null;
        return (students, search, salt);
    }

    /// <summary>A Markdown table, one row per seed, of the three effects with their margins, and a last line counting the seeds that show
    /// each.</summary>
    public static string Table(IReadOnlyList<SweepRun> runs)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var sb = new StringBuilder();
        sb.AppendLine("| seed | students: subnet-init+kd speed-up (final ppl kd / no kd) | search: evolution's best vs random / " +
            "importance (evolution's perplexity relative to each) | SALT: step reaching the baseline's final ppl (final ppl SALT / " +
            "baseline) | all three | wall time |");
        sb.AppendLine("|---:|---|---|---|---|---:|");
        int nStudents = 0, nSearch = 0, nSalt = 0, nAll = 0;
        foreach (var run in runs)
        {
            var f = DemoFindings.Of(run.Results);
            var (st, se, sa) = Verdicts(f);
            nStudents += st ? 1 : 0; nSearch += se ? 1 : 0; nSalt += sa ? 1 : 0; nAll += st && se && sa ? 1 : 0;
            string Mark(bool ok) => ok ? "yes" : "**no**";

            var kd = f.Students.FirstOrDefault(a => a.Name == DemoFindings.SubnetInitKd);
            var plain = f.Students.FirstOrDefault(a => a.Name == DemoFindings.SubnetInit);
            string students = $"{Mark(st)}: {(kd?.SpeedUp is { } s ? Factor(s) : "—")} ({Ppl(kd?.Final)} / {Ppl(plain?.Final)})";

            var evo = f.Strategies.FirstOrDefault(x => x.Strategy == DemoFindings.Evolution)?.Best;
            var rnd = f.Strategies.FirstOrDefault(x => x.Strategy == DemoFindings.RandomSearch)?.Best;
            var imp = f.Strategies.FirstOrDefault(x => x.Strategy == DemoFindings.Importance)?.Best;
            // Evolution's perplexity relative to the other strategy's: "−5.9%" is 5.9% lower (better), "0.0%" a tie.
            string Gain(string name) =>
                f.EvolutionGain.TryGetValue(name, out var g) ? (g > 0 ? "−" : g < 0 ? "+" : "") + Percent(Math.Abs(g)) : "—";
            string search = $"{Mark(se)}: {P(evo)} vs {P(rnd)} ({Gain(DemoFindings.RandomSearch)}) / {P(imp)} " +
                $"({Gain(DemoFindings.Importance)})";

            var salt = f.Salt.FirstOrDefault(a => a.Name == DemoFindings.SaltArm);
            var baseline = f.Salt.FirstOrDefault(a => a.Name == DemoFindings.SaltBaseline);
            string reached = f.SaltStep is { } step ? $"{Step(step)} of {Count(run.Results.SaltTotalSteps)} " +
                $"({Percent(f.SaltFraction ?? double.NaN)})" : "not reached";
            string saltCell = $"{Mark(sa)}: {reached} ({Ppl(salt?.Final)} / {Ppl(baseline?.Final)})";

            sb.AppendLine($"| {run.Seed} | {students} | {search} | {saltCell} | {Mark(st && se && sa)} | " +
                $"{(run.WallSeconds is { } w ? Seconds(w) : "—")} |");
        }
        sb.AppendLine();
        sb.AppendLine($"Seeds showing the effect: students {nStudents}/{runs.Count}, search {nSearch}/{runs.Count}, SALT " +
            $"{nSalt}/{runs.Count}; all three {nAll}/{runs.Count}.");
        sb.AppendLine();
        sb.Append(ClockTable(runs));
        return sb.ToString();
    }

    /// <summary>
    /// SALT against the clock, one row per seed and a last row of mean ± sample sd over the seeds that have the number:
    /// steps and training seconds to the baseline's final perplexity, the baseline's seconds, the KD overhead per step
    /// and the savings (small model given / counted; the cached arm's with the cache given / its build counted).
    /// </summary>
    public static string ClockTable(IReadOnlyList<SweepRun> runs)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var columns = new (string Header, Func<DemoFindings, double?> Value, Func<double, string> Show)[]
        {
            ("SALT steps to the target", f => f.SaltClock.Arm(DemoFindings.SaltArm)?.StepToTarget,
                x => x.ToString("F0", CultureInfo.InvariantCulture)),
            ("SALT seconds to the target", f => f.SaltClock.Arm(DemoFindings.SaltArm)?.SecondsToTarget, Seconds),
            ("baseline seconds", f => f.SaltClock.Arm(DemoFindings.SaltBaseline)?.TotalSeconds, Seconds),
            ("KD overhead per step", f => f.SaltClock.Arm(DemoFindings.SaltArm)?.Overhead, Signed),
            ("break-even KD overhead", f => f.SaltClock.BreakEvenOverhead, Signed),
            ("saving, small model given", f => f.SaltClock.Saving, Signed),
            ("saving, small model counted", f => f.SaltClock.SavingWithSmall, Signed),
            ("saving by SALT's own step times", f => f.SaltClock.StepTimeSaving, Signed),
            ("cached: KD overhead per step", f => f.SaltClock.Arm(DemoFindings.SaltCached)?.Overhead, Signed),
            ("cached: saving, cache given", f => f.SaltClock.CachedSaving, Signed),
            ("cached: saving, build counted", f => f.SaltClock.CachedSavingWithBuild, Signed),
            ("cached: saving by its own step times", f => f.SaltClock.CachedStepTimeSaving, Signed),
        };
        var values = runs.Select(run => DemoFindings.Of(run.Results)).Select(f => columns.Select(c => c.Value(f)).ToArray()).ToList();
        var sb = new StringBuilder();
        sb.AppendLine("SALT against the clock (training seconds; a saving is a fraction of the baseline's training seconds, negative " +
            "when SALT took longer; KD overhead: median KD-phase step over median plain step of the same run, minus 1):");
        sb.AppendLine();
        sb.AppendLine("| seed | " + string.Join(" | ", columns.Select(c => c.Header)) + " |");
        sb.AppendLine("|---:|" + string.Concat(columns.Select(_ => "---:|")));
        for (int i = 0; i < runs.Count; i++)
            sb.AppendLine($"| {runs[i].Seed} | "
                + string.Join(" | ", values[i].Select((v, j) => v is { } x && double.IsFinite(x) ? columns[j].Show(x) : "—")) + " |");
        var summary = columns.Select((c, j) =>
        {
            var have = values.Select(v => v[j]).Where(v => v is { } x && double.IsFinite(x)).Select(v => v!.Value).ToList();
            if (DemoAnalysis.MeanSd(have) is not { } ms) return "—";
            var (mean, sd) = ms;
            string n = have.Count < runs.Count ? $" (n = {have.Count})" : "";
            return c.Show(mean) + (sd is { } d ? " ± " + c.Show(d).TrimStart('+') : "") + n;
        });
        sb.AppendLine("| mean ± sd | " + string.Join(" | ", summary) + " |");
        return sb.ToString();
    }

    static string Signed(double fraction) => (fraction > 0 ? "+" : fraction < 0 ? "−" : "") + Percent(Math.Abs(fraction));

    static string Ppl(CurvePoint? p) => p is null ? "—" : Perplexity(p.Perplexity);
    static string P(SearchPoint? p) => p is null ? "—" : Perplexity(p.Perplexity);
}
