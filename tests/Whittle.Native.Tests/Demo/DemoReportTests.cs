using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Whittle.Native.Demo;

namespace Whittle.Native.Tests.Demo;

/// <summary>The demo report: its sentences on hand-made runs, its self-containment, and its agreement with results.json.</summary>
public class DemoReportTests
{
    string _dir = "";

    [SetUp]
    public void SetUp() => _dir = Directory.CreateTempSubdirectory("whittle-report-").FullName;

    [TearDown]
    public void TearDown() { try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } }

    internal static CurvePoint[] Curve(params (int Step, long Tokens, double Ppl)[] points) =>
        points.Select(p => new CurvePoint(p.Step, p.Tokens, Math.Log(p.Ppl))).ToArray();

    /// <summary>A run small enough to work out by hand; the arms' curves are given by the caller.</summary>
    internal static DemoResults HandMade(
        CurvePoint[] subnet, CurvePoint[] kd, CurvePoint[] salt, double evolutionBest, double importance) => new()
    {
        Preset = "hand", Device = "cpu", Started = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero), Seconds = 12.5,
        TeacherParameters = 1000, TeacherNonEmbedding = 800, TeacherArchitecture = "toy", TeacherValLoss = Math.Log(20),
            TeacherTokens = 5000,
        BudgetParams = 400, BudgetRatio = 0.5,
        Search =
        [
            new(0, "evolution", 390, evolutionBest + 5, "a"), new(1, "evolution", 380, evolutionBest, "b"),
            new(2, "random", 395, 70, "c"), new(3, "importance", 400, importance, "d"),
        ],
        Students =
        [
            // random-init: 100 → 40 over 4M tokens (steps 0..400), its final perplexity 40 is the target.
            new("random-init", "random", 300,
                Curve((0, 0, 100), (100, 1_000_000, 80), (200, 2_000_000, 60), (300, 3_000_000, 50), (400, 4_000_000, 40))),
            new("subnet-init", "subnet", 300, subnet),
            new("subnet-init+kd", "subnet + kd", 300, kd),
        ],
        Salt =
        [
            new("salt", "salt", 1000, salt),
            new("baseline", "baseline", 1000, Curve((0, 0, 100), (500, 500_000, 40), (1000, 1_000_000, 30))),
        ],
        SaltKdSteps = 200, SaltTotalSteps = 1000, SaltSmallModel = "subnet-init+kd",
        Stages = [new("pretrain", 10, true), new("search", 2.5, false)],
    };

    internal static readonly CurvePoint[] Slow = Curve((0, 0, 90), (200, 2_000_000, 60), (400, 4_000_000, 45));
    internal static readonly CurvePoint[] Fast = Curve((0, 0, 60), (100, 1_000_000, 40), (400, 4_000_000, 30));
    internal static readonly CurvePoint[] SaltFast = Curve((0, 0, 100), (350, 350_000, 35), (700, 700_000, 30), (1000, 1_000_000, 28));

    [Test]
    public void SentencesStateTheEffectWithThisRunsNumbers()
    {
        var f = DemoFindings.Of(HandMade(Slow, Fast, SaltFast, evolutionBest: 50, importance: 55));
        Assert.That(f.StudentTarget, Is.EqualTo(40).Within(1e-9));
        Assert.That(f.ReferenceTokens, Is.EqualTo(4_000_000).Within(1e-6));
        // kd reaches 40 exactly at its 1M-token evaluation: 4M / 1M = 4× fewer.
        Assert.That(f.StudentSentences, Has.Member("subnet-init+kd reaches it after 1.00M tokens: 4.0× fewer."));
        Assert.That(
            f.StudentSentences,
            Has.Member("Not reproduced in this run: subnet-init did not reach random-init's final perplexity (40.00) within its budget " +
            "of 4.00M tokens (it ended at 45.00)."));
        Assert.That(f.StudentSentences, Has.Member("Distillation helps: subnet-init+kd ends at perplexity 30.00, subnet-init at 45.00."));
        // Evolution 50 vs importance 55: (55 − 50) / 55 = 9.09…%; vs random 70: 28.6%.
        Assert.That(f.SearchSentences, Has.Member("It beats the importance-only baseline (best perplexity 55.00) by 9.1%."));
        Assert.That(f.SearchSentences, Has.Member("It beats random search (best perplexity 70.00) by 29%."));
        // SALT reaches the baseline's final 30 at step 700 of 1000.
        Assert.That(f.SaltStep, Is.EqualTo(700).Within(1e-9));
        Assert.That(f.SaltFraction, Is.EqualTo(0.7).Within(1e-12));
        Assert.That(
            f.SaltSentences, Has.Member("SALT reaches the baseline's final perplexity (30.00) at step 700 of 1,000: 70% of the steps."));
        Assert.That(
            f.SaltSentences.Concat(f.SearchSentences).Concat(f.StudentSentences).Count(s => s.StartsWith("Not reproduced")), Is.EqualTo(1));
    }

    [Test]
    public void AbsentEffectsAreSaidPlainly()
    {
        // kd reaches 40 only at its last evaluation (no sooner than random-init), SALT never reaches 30, evolution loses to importance.
        var late = Curve((0, 0, 90), (200, 2_000_000, 60), (400, 4_000_000, 40));
        var saltSlow = Curve((0, 0, 100), (500, 500_000, 45), (1000, 1_000_000, 32));
        var f = DemoFindings.Of(HandMade(Slow, late, saltSlow, evolutionBest: 56, importance: 55));
        Assert.That(
            f.StudentSentences,
            Has.Member("Not reproduced in this run: subnet-init+kd reached random-init's final perplexity only after 4.00M tokens, no " +
            "sooner than random-init (4.00M tokens)."));
        var noKdGain = DemoFindings.Of(HandMade(late, Slow, saltSlow, 56, 55));   // swapped: the distilled arm ends higher
        Assert.That(
            noKdGain.StudentSentences,
            Has.Member("Not reproduced in this run: subnet-init+kd does not end below subnet-init (perplexity 45.00 vs 40.00)."));
        Assert.That(
            f.SearchSentences,
            Has.Member("Not reproduced in this run: the evolutionary search's best (56.00) is not better than the importance-only " +
            "baseline (55.00)."));
        Assert.That(
            f.SaltSentences,
            Has.Member("Not reproduced in this run: SALT did not reach the baseline's final perplexity (30.00) within 1,000 steps (it " +
            "ended at 32.00)."));
        Assert.That(
            f.SaltSentences, Has.Member("Not reproduced in this run: SALT does not end below the baseline (perplexity 32.00 vs 30.00)."));

        // SALT that reaches the target exactly at its last step reaches it "only at the end".
        var atEnd = Curve((0, 0, 100), (500, 500_000, 45), (1000, 1_000_000, 30));
        var g = DemoFindings.Of(HandMade(Slow, late, atEnd, 56, 55));
        Assert.That(
            g.SaltSentences,
            Has.Member("Not reproduced in this run: SALT reached the baseline's final perplexity (30.00) only at the end of training " +
            "(step 1,000 of 1,000)."));

        var report = Path.Combine(_dir, "r");
        DemoReport.Write(HandMade(Slow, late, saltSlow, 56, 55), report);
        string md = File.ReadAllText(Path.Combine(report, DemoReport.MarkdownFile));
        string html = File.ReadAllText(Path.Combine(report, DemoReport.HtmlFile));
        Assert.That(md, Does.Contain("**Not reproduced in this run:** SALT did not reach"));
        Assert.That(html, Does.Contain("<li class=\"absent\"><strong>Not reproduced in this run:</strong> SALT did not reach"));
        Assert.That(md, Does.Contain("| subnet-init | subnet | 300 | 4.00M | 45.00 | not reached | — |"));
        Assert.That(
            md, Does.Contain("SALT trains the large model with distillation from subnet-init+kd for the first 200 of 1,000 steps (20%), " +
            "then on the data alone"));
    }

    [Test]
    public void MissingArmsAndStrategiesAreNamedNotGuessed()
    {
        var r = HandMade(Slow, Fast, SaltFast, 50, 55) with { Students = [], Salt = [], Search = [] };
        var f = DemoFindings.Of(r);
        Assert.That(f.StudentSentences, Is.EqualTo(new[] { "No student arms were trained in this run." }));
        Assert.That(f.SearchSentences, Is.EqualTo(new[] { "The search evaluated no candidates in this run." }));
        Assert.That(f.SaltSentences, Is.EqualTo(new[] { "No SALT comparison was run." }));
        DemoReport.Write(r, _dir);   // an empty run still renders
        foreach (var svg in SvgBlocks(File.ReadAllText(Path.Combine(_dir, DemoReport.HtmlFile)))) XDocument.Parse(svg);
        var noReference = DemoFindings.Of(HandMade(Slow, Fast, SaltFast, 50, 55) with { Students = [new("subnet-init", "s", 1, Slow)] });
        Assert.That(
            noReference.StudentSentences,
            Is.EqualTo(new[] { "No random-init arm in this run, so there is no reference for the tokens-to-reach comparison." }));
    }

    /// <summary>
    /// SaltFast and the baseline with training seconds: the baseline's 1000 plain steps at 100 ms (100 s); SALT's 200 KD
    /// steps at kdMs (20 ms of each the small model's forward) and the rest at 100 ms, so its evaluations at steps 350, 700
    /// and 1000 fall at 0.2·kdMs + 15, + 50 and + 80 s; the small model trained for 10 s.
    /// </summary>
    static DemoResults Clocked(double kdMs)
    {
        var r = HandMade(Slow, Fast, SaltFast, 50, 55);
        CurvePoint[] Timed(IReadOnlyList<CurvePoint> c, int kd, double ms) =>
            [.. c.Select(p => p with { Seconds = (Math.Min(p.Step, kd) * ms + Math.Max(0, p.Step - kd) * 100) / 1000 })];
        return r with
        {
            Salt =
            [
                r.Salt[0] with
                {
                    Curve = Timed(r.Salt[0].Curve, 200, kdMs), Clock = new RunClock(0.2 * kdMs + 80, 200, kdMs, 100, 200 * 0.020),
                },
                r.Salt[1] with { Curve = Timed(r.Salt[1].Curve, 0, 0), Clock = new RunClock(100, 0, null, 100, 0) },
            ],
            SaltSmallSeconds = 10,
        };
    }

    [Test]
    public void SaltAgainstTheClockStatesStepsSecondsOverheadAndSavings()
    {
        // kd 150 ms: the target (30) is SALT's evaluation at step 700, 30 + 50 = 80 s, against the baseline's 100 s.
        var f = DemoFindings.Of(Clocked(150)).SaltClock;
        var salt = f.Arm("salt")!;
        Assert.That((salt.StepToTarget, salt.SecondsToTarget, salt.TotalSeconds), Is.EqualTo(((double?)700, (double?)80, (double?)110)));
        Assert.That(salt.Overhead, Is.EqualTo(0.5).Within(1e-15), "150 ms over 100 ms");
        Assert.That(salt.TeacherMsPerKdStep, Is.EqualTo(20).Within(1e-12));
        Assert.That(f.Saving, Is.EqualTo(0.2).Within(1e-12), "1 − 80/100");
        Assert.That(f.SavingWithSmall, Is.EqualTo(0.1).Within(1e-12), "1 − (80 + 10)/100");
        Assert.That(f.StepTimeSaving, Is.EqualTo(0.2).Within(1e-12), "1 − (200·150 + 500·100)/(1000·100)");
        Assert.That(f.Sentences, Is.EqualTo(new[]
        {
            "SALT reaches the baseline's final perplexity (30.00) after 80.0 s of training (step 700); the baseline ends after 100 s: "
                + "20% less wall-clock with the small model taken as given (the paper's convention), 10.0% less counting the small "
                + "model's own training (10.0 s).",
            "A KD-phase step takes 150 ms (median), a plain step after it 100 ms: the KD phase costs 50% more per step; the small "
                + "model's forward pass is 20.0 ms of each KD-phase step.",
            // (1000 − 500) / 200 − 1: 200 KD-phase steps may cost what 500 plain ones save.
            "Reaching the target at step 700 of 1,000, SALT saves wall-clock as long as a KD-phase step costs less than 150% more than "
                + "a plain one (a count of steps, free of machine load).",
            "Timed by the SALT run's own medians instead (its steps to the target, those of the KD phase at the KD-phase median and "
                + "the rest at the plain one, against 1,000 plain steps for the baseline, so load that differs between runs drops out), "
                + "SALT takes 20% less wall-clock than the baseline.",
            "The cached variant (`salt --teacher-cache`: no small-model forward in the KD phase) was not run; "
                + "`whittle demo --salt-cache` adds it.",
        }));

        // kd 400 ms: 80 + 50 = 130 s to the target, 30% more than the baseline, by either measure.
        var slow = DemoFindings.Of(Clocked(400)).SaltClock;
        Assert.That(slow.Saving, Is.EqualTo(-0.3).Within(1e-12));
        Assert.That(slow.StepTimeSaving, Is.EqualTo(-0.3).Within(1e-12));
        Assert.That(slow.Sentences[0],
            Does.StartWith("Not reproduced in this run: SALT reaches the baseline's final perplexity (30.00) after 130 s")
            .And.Contain("30% more wall-clock"));
        Assert.That(slow.Sentences[3], Does.StartWith("Not reproduced in this run: Timed by")
            .And.EndWith("the KD phase's overhead outweighs the steps it saves."));
        // Across seeds the steps effect stays about steps; the clock is an effect of its own.
        var effects = DemoSeeds.EffectsOf([new SeedRun(0, Clocked(150)), new SeedRun(1, Clocked(400))]).ToDictionary(e => e.Key);
        Assert.That((effects["salt_steps"].Reproduced, effects["salt_step_time_saving"].HoldsIn), Is.EqualTo((true, 1)));
        // Savings +20% and −30%: mean −5.0%, sample sd √(2·0.25²) = 35%.
        Assert.That(effects["salt_step_time_saving"].Mean, Is.EqualTo(-0.05).Within(1e-12));
        Assert.That(effects["salt_step_time_saving"].Sd, Is.EqualTo(Math.Sqrt(2 * 0.25 * 0.25)).Within(1e-12));
        var seconds = DemoSeeds.QuantitiesOf([new SeedRun(0, Clocked(150)), new SeedRun(1, Clocked(400))])
            .Single(q => q.Arm == "salt" && q.Quantity == "training seconds to it");
        Assert.That(DemoSeeds.MeanPlusMinus(seconds.Kind, seconds.Mean, seconds.Sd, seconds.N, 2), Is.EqualTo("105 s ± 35.4 s"));
        var noClock = DemoFindings.Of(HandMade(Slow, Fast, SaltFast, 50, 55)).SaltClock;
        Assert.That(noClock.Sentences,
            Is.EqualTo(new[] { "No SALT wall-clock comparison: the runs' metrics.jsonl hold no training wall-clock (elapsed_s); "
                + "they predate it." }));
    }

    [Test]
    public void ResultsJsonRoundTrips()
    {
        var r = DemoSamples.Plausible();
        // Non-finite values (a diverged candidate or evaluation) must survive too.
        r = r with
        {
            Search = [.. r.Search, new SearchPoint(999, "random", 3_000_000, double.PositiveInfinity, "{\"diverged\":true}")],
            Salt = [r.Salt[0] with { Curve = [.. r.Salt[0].Curve, new CurvePoint(1600, 1600 * 2048, double.NaN)] }, r.Salt[1]],
        };
        DemoReport.Write(r, _dir);
        var back = DemoReport.Load(Path.Combine(_dir, DemoReport.ResultsFile));
        Assert.That(
            (back.Preset, back.Device, back.Started, back.Started.Offset), Is.EqualTo((r.Preset, r.Device, r.Started, r.Started.Offset)));
        Assert.That(BitConverter.DoubleToInt64Bits(back.Seconds), Is.EqualTo(BitConverter.DoubleToInt64Bits(r.Seconds)));
        Assert.That((back.TeacherParameters, back.TeacherNonEmbedding, back.TeacherArchitecture, back.TeacherValLoss, back.TeacherTokens),
            Is.EqualTo((r.TeacherParameters, r.TeacherNonEmbedding, r.TeacherArchitecture, r.TeacherValLoss, r.TeacherTokens)));
        Assert.That((back.BudgetParams, back.BudgetRatio, back.SaltKdSteps, back.SaltTotalSteps, back.SaltSmallModel),
            Is.EqualTo((r.BudgetParams, r.BudgetRatio, r.SaltKdSteps, r.SaltTotalSteps, r.SaltSmallModel)));
        Assert.That(back.Search, Is.EqualTo(r.Search));   // records: value equality, doubles bit-exact (∞ included)
        Assert.That(back.Stages, Is.EqualTo(r.Stages));
        foreach (var (a, b) in r.Students.Concat(r.Salt).Zip(back.Students.Concat(back.Salt)))
        {
            Assert.That((b.Name, b.Description, b.Parameters), Is.EqualTo((a.Name, a.Description, a.Parameters)));
            Assert.That(b.Curve.Select(p => (p.Step, p.Tokens, BitConverter.DoubleToInt64Bits(p.ValLoss), p.Seconds)),
                Is.EqualTo(a.Curve.Select(p => (p.Step, p.Tokens, BitConverter.DoubleToInt64Bits(p.ValLoss), p.Seconds))));
            Assert.That(b.Clock, Is.EqualTo(a.Clock));
        }
        Assert.That((back.SaltSmallSeconds, back.SaltCacheSeconds, back.SaltCacheTopK),
            Is.EqualTo((r.SaltSmallSeconds, r.SaltCacheSeconds, r.SaltCacheTopK)));
        Assert.That(DemoSamples.Plausible().Salt.All(a => a.Clock is not null && a.Curve.All(p => p.Seconds is not null)),
            "the sample carries wall-clock to round-trip");
        Assert.That(back.Students.Count + back.Salt.Count, Is.EqualTo(r.Students.Count + r.Salt.Count));

        File.WriteAllText(Path.Combine(_dir, "bad.json"), "{\"format\": \"something else\"}");
        var ex = Assert.Throws<InvalidFileException>(() => DemoReport.Load(Path.Combine(_dir, "bad.json")));
        Assert.That(ex!.Message, Does.Contain("bad.json").And.Contain("whittle-demo-results"));
        File.WriteAllText(Path.Combine(_dir, "cut.json"), File.ReadAllText(Path.Combine(_dir, DemoReport.ResultsFile))[..200]);
        Assert.Throws<InvalidFileException>(() => DemoReport.Load(Path.Combine(_dir, "cut.json")));
    }

    [Test]
    public void HtmlIsSelfContainedAndItsPlotsParse()
    {
        DemoReport.Write(DemoSamples.Plausible() with { Preset = "small <&> \"quoted\"" }, _dir);
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName).Order(),
            Is.EqualTo(new[]
            {
                "report.html", "report.md", "results.json", "salt-clock.svg", "salt.svg", "search-objectives.svg", "search-progress.svg",
                "search.svg", "students.svg",
            }),
            "no temporary files left behind");
        string html = File.ReadAllText(Path.Combine(_dir, DemoReport.HtmlFile));
        foreach (var forbidden in new[] { "http", "src=", "<script", "@import", "<link", "href=", "<img", "<iframe", "<object" })
            Assert.That(
                html, Does.Not.Contain(forbidden).IgnoreCase, $"report.html must not reference anything outside itself ({forbidden})");
        Assert.That(
            Regex.IsMatch(html, @"url\((?!#)", RegexOptions.IgnoreCase), Is.False,
            "url(...) may only name an element of the page (url(#id))");
        var svgs = SvgBlocks(html).ToList();
        Assert.That(svgs, Has.Count.EqualTo(6));
        foreach (var svg in svgs)
        {
            var doc = XDocument.Parse(svg);
            Assert.That(doc.Root!.Name.LocalName, Is.EqualTo("svg"));
            Assert.That(
                doc.Descendants().Any(e => e.Name.LocalName is "polyline" or "circle" or "path"), "a plot with data draws something");
        }
        // Arm names, strategies and the untrusted spec text (which holds '<' and '"') are escaped, not markup.
        var search = XDocument.Parse(svgs[1]);
        Assert.That(
            search.Descendants("text").Select(t => t.Value), Has.Some.StartsWith("evolution (64)").And.Some.StartsWith("importance (1)"));
        Assert.That(html, Does.Contain("small &lt;&amp;&gt; &quot;quoted&quot;").And.Not.Contain("<&>"));
        foreach (var file in Directory.GetFiles(_dir, "*.svg"))
            Assert.That(XDocument.Load(file).Root!.Name, Is.EqualTo(XName.Get("svg", "http://www.w3.org/2000/svg")));
        // The Pareto staircase must pass through every front point; check it against the front recomputed here by brute force.
        var r = DemoSamples.Plausible();
        var brute = r.Search.Where(
            p => !r.Search.Any(
            q => q.Parameters <= p.Parameters && q.Perplexity <= p.Perplexity
            && (q.Parameters < p.Parameters || q.Perplexity < p.Perplexity))).ToList();
        Assert.That(DemoAnalysis.ParetoFront(r.Search).Select(p => p.Index).Order(), Is.EqualTo(brute.Select(p => p.Index).Order()));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void EveryNumberInTheMarkdownIsInResultsJson(bool seeds)   // except the start date and the duration spelled out
    {
        // With seeds: the top-level report of a three-seed run (the same sample thrice, its search shifted in two).
        var r = DemoSamples.Plausible();
        var runs = new[] { 0, 1, 2 }.Select(s => new SeedRun(s, r with
        {
            Search = [.. r.Search.Select(p => p with { Perplexity = p.Perplexity * (1 + 0.01 * s) })],
        })).ToList();
        DemoReport.Write(r, _dir, seeds ? new SeedSet(runs, 0, 0, 123.4) : null);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, DemoReport.ResultsFile)))!;
        var numbers = new List<double>();
        var strings = new List<string>();
        void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o: foreach (var kv in o) Walk(kv.Value); break;
                case JsonArray a: foreach (var x in a) Walk(x); break;
                case JsonValue v when v.TryGetValue<string>(out var s): strings.Add(s); break;
                // The report prints a signed quantity's sign as a word ("5.0% more") or a − before the digits, which are its magnitude.
                case JsonValue v when v.GetValueKind() == System.Text.Json.JsonValueKind.Number:
                    numbers.Add(Math.Abs(v.GetValue<double>()));
                    break;
            }
        }
        Walk(json);
        // Text that is data (names, descriptions, specs, the architecture) may hold digits of its own; take it out first.
        var texts = strings.Where(s => s.Length >= 3).Distinct().OrderByDescending(s => s.Length).ToList();

        var lines = File.ReadAllLines(Path.Combine(_dir, DemoReport.MarkdownFile))
            .Where(l => l.Trim().Length > 0 && !l.StartsWith("| Started") && !l.StartsWith("| Total time") && !l.StartsWith("|---"))
            .Select(l => l.StartsWith("| Seeds") ? l[..l.IndexOf(" (", StringComparison.Ordinal)] : l)   // the duration spelled out
            .ToList();
        Assert.That(lines, Has.Count.GreaterThan(20));
        int checkedNumbers = 0;
        var number = new Regex(@"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(\s?[kMB%×])?(?![\w])");
        foreach (var raw in lines)
        {
            string line = Regex.Replace(raw, @"\\([\\`*_\[\]<>|#])", "$1");
            foreach (var t in texts) line = line.Replace(t, " ");
            foreach (Match m in number.Matches(line))
            {
                string digits = m.Groups[1].Value.Replace(",", "");
                string suffix = m.Groups[2].Value.Trim();
                double shown = double.Parse(digits, CultureInfo.InvariantCulture);
                int decimals = digits.Contains('.') ? digits.Length - digits.IndexOf('.') - 1 : 0;
                double scale = suffix switch { "k" => 1e3, "M" => 1e6, "B" => 1e9, "%" => 0.01, _ => 1 };
                double value = shown * scale, halfUnit = 0.5 * Math.Pow(10, -decimals) * scale;
                Assert.That(
                    numbers.Any(x => Math.Abs(x - value) <= halfUnit * (1 + 1e-9)),
                    $"'{m.Value}' in \"{raw}\" is not a number of results.json");
                checkedNumbers++;
            }
        }
        Assert.That(checkedNumbers, Is.GreaterThan(50));
    }

    [Test]
    public void WritesTheSampleReport()
    {
        // WHITTLE_SAMPLE_REPORT=dir keeps the sample for tools/screenshot-report.sh; otherwise it is written and checked in a temporary
        // directory.
        string dir = Environment.GetEnvironmentVariable("WHITTLE_SAMPLE_REPORT") is { Length: > 0 } keep ? keep : _dir;
        DemoReport.Write(DemoSamples.Plausible(), dir);
        string md = File.ReadAllText(Path.Combine(dir, DemoReport.MarkdownFile));
        string[] headings =
        [
            "## Students trained for the same token budget", "## Sub-network search", "## SALT", "## SALT against the clock",
            "## Stage times", "## Search objectives: perplexity, parameters and FLOPs", "## Supernet training (whittle's first stage)",
        ];
        foreach (var heading in headings)
            Assert.That(md, Does.Contain(heading));
        Assert.That(md, Does.Contain("![").And.Contain("(students.svg)"));
        TestContext.Out.WriteLine(md);
    }

    /// <summary>The page's top-level &lt;svg&gt; elements (a figure of panels nests one &lt;svg&gt; per panel inside its own).</summary>
    internal static IEnumerable<string> SvgBlocks(string html)
    {
        int at = 0;
        while ((at = html.IndexOf("<svg", at, StringComparison.Ordinal)) >= 0)
        {
            int depth = 0, i = at;
            do
            {
                int open = html.IndexOf("<svg", i + 1, StringComparison.Ordinal);
                int close = html.IndexOf("</svg>", i + 1, StringComparison.Ordinal);
                Assert.That(close, Is.GreaterThan(at), "an <svg> without </svg>");
                if (open >= 0 && open < close) { depth++; i = open; }
                else { depth--; i = close; }
            } while (depth >= 0);
            yield return html[at..(i + "</svg>".Length)];
            at = i;
        }
    }
}
