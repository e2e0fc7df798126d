// Policy: the report of `whittle demo` is rendered from one document model (sections of tables, sentences and plots)
// into report.md and report.html, so both say exactly the same thing. Every number and sentence is derived from
// DemoResults (through DemoFindings); results.json, written beside it, holds the measurements and the derived numbers.
// report.html is self-contained: inline CSS and SVG, no scripts, fonts, images or links to anything outside the file.
// report.md shows the same plots as the .svg files written next to it. Every file is written atomically; the HTML is
// written last, so a complete report.html implies the rest is complete too.
using System.Text;
using System.Text.Json;
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

public static class DemoReport
{
    public const string ResultsFile = "results.json", MarkdownFile = "report.md", HtmlFile = "report.html";

    /// <summary>
    /// Writes results.json, the plots as .svg files, report.md and report.html into <paramref name="dir"/>. With
    /// <paramref name="seeds"/> (the top-level report of a demo run) the report opens with the claims and arms across the
    /// seeds, and results.json gains "across_seeds"; <paramref name="r"/> is then the seed shown in detail.
    /// </summary>
    public static void Write(DemoResults r, string dir, SeedSet? seeds = null)
    {
        ArgumentNullException.ThrowIfNull(r);
        var f = DemoFindings.Of(r);
        var plots = DemoPlots.Of(r, f);
        var across = seeds is null ? null : new Across(seeds, DemoSeeds.EffectsOf(seeds.Runs), DemoSeeds.QuantitiesOf(seeds.Runs));
        Directory.CreateDirectory(dir);
        var json = DemoJson.ToJson(r, f);
        if (across is not null) json["across_seeds"] = DemoJson.AcrossSeeds(across.Seeds, across.Effects, across.Quantities);
        AtomicFile.WriteAllText(
            Path.Combine(dir, ResultsFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        foreach (var p in plots) AtomicFile.WriteAllText(Path.Combine(dir, p.File), p.Plot.Render(p.Id, standalone: true));
        var doc = Document(r, f, plots, across);
        AtomicFile.WriteAllText(Path.Combine(dir, MarkdownFile), Markdown(doc));
        AtomicFile.WriteAllText(Path.Combine(dir, HtmlFile), Html(doc));
    }

    /// <summary>Reads a results.json written by <see cref="Write"/> back into the measurements.</summary>
    public static DemoResults Load(string path) => DemoJson.Load(path);

    // ---------------------------------------------------------------- document model

    sealed record Table(string[] Headers, bool[] Numeric, List<string[]> Rows, bool CodeLastColumn = false);
    sealed record Section(
        string Title, string? Intro, IReadOnlyList<DemoPlot> Plots, IReadOnlyList<Table> Tables, IReadOnlyList<string> Sentences);
    sealed record Doc(string Title, IReadOnlyList<(string Key, string Value)> Header, IReadOnlyList<Section> Sections);
    sealed record Across(SeedSet Seeds, IReadOnlyList<EffectAcross> Effects, IReadOnlyList<QuantityAcross> Quantities);

    static Doc Document(DemoResults r, DemoFindings f, IReadOnlyList<DemoPlot> plots, Across? across)
    {
        DemoPlot Plot(string file) => plots.First(p => p.File == file);
        var header = new List<(string, string)>
        {
            ("Preset", r.Preset),
            ("Device", r.Device),
            ("Started", Date(r.Started)),
            ("Total time", $"{Seconds(r.Seconds)} ({Duration(r.Seconds)})"),
            ("Teacher", $"{Count(r.TeacherParameters)} parameters ({Count(r.TeacherNonEmbedding)} non-embedding), {r.TeacherArchitecture}; "
                + $"validation perplexity {Perplexity(Math.Exp(r.TeacherValLoss))} after {Si(r.TeacherTokens)} training tokens"),
            ("Search budget", $"{Count(r.BudgetParams)} parameters ({Percent(r.BudgetRatio)} of the teacher's non-embedding parameters)"),
        };

        string target = f.StudentTarget is { } t ? Perplexity(t) : "—";
        var students = new Table(
            ["Arm", "Initialisation", "Parameters", "Tokens trained", "Final perplexity",
                $"Tokens to reach {DemoFindings.RandomInit}'s final perplexity ({target})", "Speed-up"],
            [false, false, true, true, true, true, true],
            f.Students.Select(a => new[]
            {
                a.Name, a.Description, Si(a.Parameters), a.Final is { } fp ? Si(fp.Tokens) : "—",
                    a.Final is { } fp2 ? Perplexity(fp2.Perplexity) : "—",
                a.ToTarget is { } tt ? Si(tt) : f.StudentTarget is null ? "—" : "not reached",
                a.Name == DemoFindings.RandomInit ? "reference" : a.SpeedUp is { } s ? Factor(s) : a.ToTarget is <= 0 ? "before " +
                    "training" : "—",
            }).ToList());

        var strategies = new Table(
            ["Strategy", "Candidates evaluated", "Best perplexity", "Parameters of the best"],
            [false, true, true, true],
            f.Strategies.Select(
                s => new[] { s.Strategy, Count(s.Evaluated), s.Best is { } b ? Perplexity(b.Perplexity) : "—",
                s.Best is { } b2 ? Si(b2.Parameters) : "—" }).ToList());
        var pareto = new Table(
            ["Parameters", "Perplexity", "Strategy", "Sub-network"],
            [true, true, false, false],
            f.Pareto.Select(p => new[] { Count(p.Parameters), Perplexity(p.Perplexity), p.Strategy, p.Spec }).ToList(),
                CodeLastColumn: true);

        string saltTarget = f.SaltTarget is { } st ? Perplexity(st) : "—";
        var salt = new Table(
            ["Arm", "Description", "Parameters", "Steps", "Final perplexity",
                $"Step reaching the baseline's final perplexity ({saltTarget})", "Fraction of all steps"],
            [false, false, true, true, true, true, true],
            f.Salt.Select(a => new[]
            {
                a.Name, a.Description, Si(a.Parameters), a.Final is { } fp ? Count(fp.Step) : "—",
                    a.Final is { } fp2 ? Perplexity(fp2.Perplexity) : "—",
                a.ToTarget is { } s ? Step(s) : f.SaltTarget is null ? "—" : "not reached",
                a.ToTarget is { } s2 && r.SaltTotalSteps > 0 ? Percent(s2 / r.SaltTotalSteps) : "—",
            }).ToList());

        var clock = new Table(
            ["Arm", $"Steps to the baseline's final perplexity ({saltTarget})", "Training seconds to it", "Total training seconds",
                "KD-phase step (median)", "of which soft labels (forward or cache read)", "Plain step (median)", "KD overhead per step"],
            [false, true, true, true, true, true, true, true],
            f.SaltClock.Arms.Select(a => new[]
            {
                a.Name, a.StepToTarget is { } st2 ? Step(st2) : "—", a.SecondsToTarget is { } ts ? Seconds(ts) : "—",
                a.TotalSeconds is { } tt2 ? Seconds(tt2) : "—", a.KdStepMs is { } k ? Ms(k) : "—",
                a.TeacherMsPerKdStep is { } tm ? Ms(tm) : "—",
                a.PlainStepMs is { } pm ? Ms(pm) : "—", a.Overhead is { } o ? (o >= 0 ? "+" : "−") + Percent(Math.Abs(o)) : "—",
            }).ToList());

        var stages = new Table(["Stage", "Time", "Cached"], [false, true, false],
            r.Stages.Select(
                s => new[] { s.Stage, Seconds(s.Seconds),
                s.Cached ? "cached (time of the run that computed it)" : "computed in this run" }).ToList());

        var sections = new List<Section>();
        if (across is not null)
        {
            header.AddRange(SeedsHeader(across.Seeds));
            sections.AddRange(SeedsSections(across));
        }
        sections.AddRange(new List<Section>
        {
            new("Students trained for the same token budget",
                "Students of the searched architecture, each trained on the same number of tokens; the Initialisation column says how " +
                    "each one started.",
                [Plot("students.svg")], [students], f.StudentSentences),
            new("Sub-network search",
                "Evolutionary search over sub-networks of the teacher under the parameter budget, against random search and the " +
                    "importance-only baseline (every dimension shrunk uniformly, keeping the most important units).",
                [Plot("search.svg"), Plot("search-progress.svg")], pareto.Rows.Count > 0 ? [strategies, pareto] : [strategies],
                    f.SearchSentences),
            ObjectivesSection(r, plots),
            SupernetSection(r, f),
            new("SALT: distillation from a small model early in training",
                $"SALT trains the large model with distillation from {r.SaltSmallModel} for the first {Count(r.SaltKdSteps)} of " +
                    $"{Count(r.SaltTotalSteps)} steps"
                + (f.KdFraction is { } kf ? $" ({Percent(kf)})" : "") + ", then on the data alone; the baseline trains on the data alone " +
                    "for all the steps.",
                [Plot("salt.svg")], [salt], f.SaltSentences),
            new("SALT against the clock",
                "Training wall-clock is the sum of a run's step times (metrics.jsonl's elapsed_s; evaluations and checkpoint saves are "
                + "not counted). Steps and seconds to a perplexity are interpolated between evaluations by one rule: the log-perplexity "
                + "is taken as linear in steps (or seconds) between two evaluations, and the first crossing counts. Savings are fractions "
                + "of the baseline's total training seconds. The KD overhead per step (median KD-phase step over median plain step) and "
                + "the savings by step times use one run's own steps, so they hold up better than times across runs: the runs ran one "
                + "after another on "
                + $"{r.Device}, the baseline first (it is the teacher's run), and each saw whatever else the machine was doing.",
                [Plot("salt-clock.svg")], [clock], f.SaltClock.Sentences),
            new("Stage times", null, [], [stages], []),
        });
        return new Doc($"Whittle demo report: {r.Preset}", header, sections);
    }

    /// <summary>The search over (ppl, params, FLOPs): the two-panel plot, each strategy's hypervolume, the Pareto set.</summary>
    static Section ObjectivesSection(DemoResults r, IReadOnlyList<DemoPlot> plots)
    {
        const string title = "Search objectives: perplexity, parameters and FLOPs";
        if (r.SearchFront is not { } s) return new Section(title, null, [], [], DemoObjectives.Sentences(r));
        var hypervolume = new Table(["Strategy", "Candidates evaluated", "Hypervolume", "Share of the maximum"], [false, true, true, true],
            s.Hypervolume.Select(kv => new[]
            {
                kv.Key, Count(r.Search.Count(p => p.Strategy == kv.Key)), DemoSeeds.Show(SeedValueKind.Hypervolume, kv.Value),
                Percent(kv.Value / s.Maximum),
            }).ToList());
        var set = new Table(["Parameters", "FLOPs per token", "Perplexity", "Found by", "Sub-network"], [true, true, true, false, false],
            s.Pareto.Select(p => new[] { Count(p.Parameters), Si(p.Flops), Perplexity(p.Perplexity), p.Strategy, p.Spec }).ToList(),
            CodeLastColumn: true);
        return new Section(title,
            "The search recorded three objectives for every candidate (`search --objectives ppl,params,flops`), all minimised: validation "
            + "perplexity, non-embedding parameters (what the budget counts) and forward FLOPs per token (analytic, matrix products "
            + "only, attention at the full context). Evolution and random search still choose by perplexity inside the budget window; "
            + "the Pareto set and the hypervolumes are over all three.",
            [plots.First(p => p.File == DemoPlots.ObjectivesFile)], [hypervolume, set], DemoObjectives.Sentences(r));
    }

    /// <summary>The supernet stage: the searched best on the plain teacher, the sandwich supernet and the standard control.</summary>
    static Section SupernetSection(DemoResults r, DemoFindings f)
    {
        const string title = "Supernet training (whittle's first stage)";
        var sn = f.Supernet!;
        if (r.Supernet is not { } s) return new Section(title, null, [], [], sn.Sentences);
        var evolution = f.Strategies.FirstOrDefault(x => x.Strategy == DemoFindings.Evolution);
        string Gap(double? best) => DemoSeeds.Show(SeedValueKind.Signed, DemoSupernet.Gain(best, sn.SandwichBest));
        var rows = new List<string[]>
        {
            new[]
            {
                "plain teacher", "the importance-permuted teacher, not trained further", Perplexity(Math.Exp(r.TeacherValLoss)),
                evolution is null ? "—" : Count(evolution.Evaluated), sn.PlainBest is { } pb ? Perplexity(pb) : "—",
                evolution?.Best is { } b ? Si(b.Parameters) : "—", Gap(sn.PlainBest), evolution?.Best?.Spec ?? "—",
            },
        };
        rows.AddRange(s.Arms.Select(a => new[]
        {
            a.Name, a.Description, Perplexity(a.WholePerplexity), Count(a.Evaluated), Perplexity(a.BestPerplexity), Si(a.BestParameters),
            a.Name == DemoSupernet.Sandwich ? "—" : Gap(a.BestPerplexity), a.BestSpec,
        }));
        var table = new Table(
            ["Parent", "How it was trained", "Whole-network perplexity", "Candidates evaluated", "Searched best perplexity",
                "Parameters of the best", "Sandwich's best below it", "Best sub-network"],
            [false, false, true, true, true, true, true, false], rows, CodeLastColumn: true);
        return new Section(title,
            $"whittle trains the pretrained model as a weight-sharing supernet before searching it. Here the importance-permuted "
            + $"teacher is trained {Count(s.Steps)} more steps with the sandwich rule (`train-supernet --strategy sandwich`: the whole "
            + "network, two random sub-networks of the search space and its smallest, each step), and, as the control for those extra "
            + "steps, the same steps, data order and schedule with standard training. The evolutionary search then runs on each "
            + "parent with the budget, space, evaluations and seed of the search on the plain teacher, so all three start from the "
            + "same candidates; each sub-network is evaluated in place, without fine-tuning. Per seed: the supernet training's "
            + "sampling and data order take the seed too, so the claims across seeds judge the whole two-stage pipeline.",
            [], [table], sn.Sentences);
    }

    static IEnumerable<(string, string)> SeedsHeader(SeedSet s)
    {
        string list = string.Join(", ", s.Runs.Select(x => x.Seed));
        yield return ("Seeds", $"{s.Runs.Count} ({list}): the teacher trained once (seed {s.TeacherSeed}), the search, students, "
            + $"SALT's small model and SALT once per seed; all seeds took {Seconds(s.Seconds)} ({Duration(s.Seconds)})");
        if (s.Runs.Count > 1)
            yield return ("Detail", $"the sections after the claims show seed {s.DetailSeed}; every other seed's report is in "
                + "seed-N/report.html");
    }

    static IEnumerable<Section> SeedsSections(Across a)
    {
        var seeds = a.Seeds.Runs.Select(x => x.Seed).ToList();
        string[] seedHeaders = [.. seeds.Select(s => $"seed {s}")];
        int n = seeds.Count;
        var effects = new Table(
            ["Effect", .. seedHeaders, "Mean ± sd", "Holds in", "Verdict"],
            [false, .. seeds.Select(_ => true), true, true, false],
            a.Effects.Select(e => (string[])[
                e.Claim, .. e.Values.Select(v => DemoSeeds.Show(e.Kind, v.Value) + (v.Holds ? "" : " (no)")),
                DemoSeeds.MeanPlusMinus(e.Kind, e.Mean, e.Sd, e.N, n), $"{e.HoldsIn} of {n}",
                e.Reproduced ? "reproduced" : "not reproduced",
            ]).ToList());
        var sentences = a.Effects.Select(e => e.Reproduced
            ? $"Reproduced ({(n == 1 ? "its one seed" : $"all {n} seeds")}): {e.Claim}; "
                + $"{DemoSeeds.MeanPlusMinus(e.Kind, e.Mean, e.Sd, e.N, n)}."
            : $"{DemoFindings.NotReproduced}{e.Claim}: it holds in {e.HoldsIn} of {n} seed{(n == 1 ? "" : "s")}; "
                + $"{DemoSeeds.MeanPlusMinus(e.Kind, e.Mean, e.Sd, e.N, n)}.").ToList();
        var quantities = new Table(
            ["Arm", "Quantity", .. seedHeaders, "Mean ± sd"],
            [false, false, .. seeds.Select(_ => true), true],
            a.Quantities.Select(q => (string[])[
                q.Arm, q.Quantity, .. q.Values.Select(v => DemoSeeds.Show(q.Kind, v.Value)),
                DemoSeeds.MeanPlusMinus(q.Kind, q.Mean, q.Sd, q.N, n),
            ]).ToList());
        string one = n == 1 ? " With one seed there is no standard deviation: `whittle demo --seeds 3` gives error bars." : "";
        yield return new Section($"Claims across {(n == 1 ? "one seed" : $"{n} seeds")}",
            $"{DemoSeeds.Rule} Each seed's number is its own report's. The search, the students and SALT's small model "
            + "take the seed; SALT itself keeps the teacher's initialisation and data order, so it is compared with the one baseline "
            + "(the teacher's run) like for like, and its seeds differ by their small model." + one,
            [], [effects], sentences);
        yield return new Section("Arms across seeds", null, [], [quantities], []);
    }

    // ---------------------------------------------------------------- Markdown

    static string Markdown(Doc d)
    {
        var sb = new StringBuilder();
        sb.Append($"# {MdText(d.Title)}\n\n");
        sb.Append("| | |\n|---|---|\n");
        foreach (var (k, v) in d.Header) sb.Append($"| {MdCell(k)} | {MdCell(v)} |\n");
        sb.Append($"\nThe plots are inline in [{HtmlFile}]({HtmlFile}) and written as .svg files next to this file; every number comes " +
            $"from [{ResultsFile}]({ResultsFile}).\n");
        foreach (var s in d.Sections)
        {
            sb.Append($"\n## {MdText(s.Title)}\n\n");
            if (s.Intro is not null) sb.Append(MdText(s.Intro)).Append("\n\n");
            foreach (var line in s.Sentences)
                sb.Append("- ").Append(line.StartsWith(DemoFindings.NotReproduced, StringComparison.Ordinal)
                    ? $"**{DemoFindings.NotReproduced.TrimEnd()}** " +
                        $"{MdText(line[DemoFindings.NotReproduced.Length..])}" : MdText(line)).Append('\n');
            if (s.Sentences.Count > 0) sb.Append('\n');
            foreach (var p in s.Plots) sb.Append($"![{MdText(p.Caption)}]({p.File})\n\n");
            foreach (var t in s.Tables)
            {
                sb.Append("| ").Append(string.Join(" | ", t.Headers.Select(MdCell))).Append(" |\n|");
                sb.Append(string.Join("|", t.Numeric.Select(n => n ? "---:" : "---"))).Append("|\n");
                foreach (var row in t.Rows)
                    sb.Append("| ").Append(
                        string.Join(" | ",
                        row.Select((c, i) => t.CodeLastColumn && i == row.Length - 1 ? MdCode(c) : MdCell(c)))).Append(" |\n");
                if (t.Rows.Count == 0)
                    sb.Append("| ").Append(
                    string.Join(" | ", t.Headers.Select((_, i) => i == 0 ? "(none in this run)" : ""))).Append(" |\n");
                sb.Append('\n');
            }
        }
        return sb.ToString();
    }

    // Markdown specials that could turn data (arm names, specs, descriptions) into markup.
    static string MdText(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            if (c is '\\' or '`' or '*' or '_' or '[' or ']' or '<' or '>' or '|' or '#') sb.Append('\\');
            sb.Append(c is '\n' or '\r' ? ' ' : c);
        }
        return sb.ToString();
    }

    static string MdCell(string s) => MdText(s);

    static string MdCode(string s)
    {
        // A code span cannot escape; use a fence longer than any run of backticks inside, and keep pipes out of the table syntax.
        s = s.Replace('\n', ' ').Replace('\r', ' ').Replace("|", "\\|");
        int longest = 0, run = 0;
        foreach (char c in s) { run = c == '`' ? run + 1 : 0; longest = Math.Max(longest, run); }
        string fence = new('`', longest + 1);
        return $"{fence} {s} {fence}";
    }

    // ---------------------------------------------------------------- HTML

    const string Css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328; background: #ffffff;
               max-width: 980px; margin: 2rem auto; padding: 0 1.25rem; line-height: 1.5; font-size: 15px; }
        h1 { font-size: 1.7rem; margin-bottom: .5rem; }
        h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d8dee4; padding-bottom: .3rem; }
        table { border-collapse: collapse; margin: 1rem 0; font-size: 14px; }
        th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; vertical-align: top; text-align: left; }
        th { background: #f6f8fa; font-weight: 600; }
        tr:nth-child(even) td { background: #fbfbfc; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.num { white-space: nowrap; }
        div.scroll { overflow-x: auto; }
        table.header th { width: 9rem; }
        code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
        figure { margin: 1.2rem 0; }
        figure svg { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
        figcaption { color: #57606a; font-size: 13px; margin-top: .3rem; }
        ul.findings { padding-left: 0; list-style: none; }
        ul.findings li { margin: .45rem 0; padding: .45rem .75rem; border-left: 4px solid #0072B2; background: #f3f8fc; }
        ul.findings li.absent { border-left-color: #D55E00; background: #fdf4ee; }
        .none { color: #57606a; font-style: italic; }
        footer { margin-top: 2.5rem; color: #57606a; font-size: 13px; }
        """;

    static string Html(Doc d)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" " +
            "content=\"width=device-width, initial-scale=1\">\n");
        sb.Append($"<title>{H(d.Title)}</title>\n<style>\n{Css}</style>\n</head>\n<body>\n");
        sb.Append($"<h1>{H(d.Title)}</h1>\n<table class=\"header\">\n");
        foreach (var (k, v) in d.Header) sb.Append($"<tr><th scope=\"row\">{H(k)}</th><td>{H(v)}</td></tr>\n");
        sb.Append("</table>\n");
        foreach (var s in d.Sections)
        {
            sb.Append($"<section>\n<h2>{H(s.Title)}</h2>\n");
            if (s.Intro is not null) sb.Append($"<p>{H(s.Intro)}</p>\n");
            if (s.Sentences.Count > 0)
            {
                sb.Append("<ul class=\"findings\">\n");
                foreach (var line in s.Sentences)
                    sb.Append(line.StartsWith(DemoFindings.NotReproduced, StringComparison.Ordinal)
                        ? $"<li class=\"absent\"><strong>{H(DemoFindings.NotReproduced.TrimEnd())}</strong> " +
                            $"{H(line[DemoFindings.NotReproduced.Length..])}</li>\n"
                        : $"<li>{H(line)}</li>\n");
                sb.Append("</ul>\n");
            }
            foreach (var p in s.Plots)
                sb.Append("<figure>\n").Append(p.Plot.Render(p.Id, standalone: false)).Append(
                    $"<figcaption>{H(p.Caption)}</figcaption>\n</figure>\n");
            foreach (var t in s.Tables)
            {
                sb.Append("<div class=\"scroll\"><table>\n<thead><tr>");
                for (int i = 0; i < t.Headers.Length; i++)
                    sb.Append($"<th scope=\"col\"{(t.Numeric[i] ? " class=\"num\"" : "")}>{H(t.Headers[i])}</th>");
                sb.Append("</tr></thead>\n<tbody>\n");
                foreach (var row in t.Rows)
                {
                    sb.Append("<tr>");
                    for (int i = 0; i < row.Length; i++)
                        sb.Append(t.CodeLastColumn && i == row.Length - 1
                            ? $"<td><code>{H(row[i])}</code></td>"
                            : $"<td{(t.Numeric[i] ? " class=\"num\"" : "")}>{H(row[i])}</td>");
                    sb.Append("</tr>\n");
                }
                if (t.Rows.Count == 0) sb.Append($"<tr><td class=\"none\" colspan=\"{t.Headers.Length}\">none in this run</td></tr>\n");
                sb.Append("</tbody>\n</table></div>\n");
            }
            sb.Append("</section>\n");
        }
        sb.Append($"<footer>Every number on this page was measured in this run; the measurements are in {H(ResultsFile)} next to this " +
            $"file.</footer>\n");
        sb.Append("</body>\n</html>\n");
        return sb.ToString();
    }

    static string H(string s) => SvgPlot.Xml(s);
}
