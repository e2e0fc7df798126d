// Synthetic but plausible demo results: power-law loss curves, a search whose perplexity falls with parameters and
// whose evolutionary strategy improves over time. The shapes only need to look like a real run; the tests that check
// exact numbers build their own tiny curves by hand.
using Whittle.Native.Demo;

namespace Whittle.Native.Tests.Demo;

static class DemoSamples
{
    /// <summary>loss(tokens) = floor + scale · (1 + tokens / t0)^(−alpha): a typical pretraining curve.</summary>
    public static List<CurvePoint> PowerCurve(
        int steps, int every, long tokensPerStep, double floor, double scale, double t0, double alpha, double wobble = 0, int seed = 1)
    {
        var rng = new Random(seed);
        var curve = new List<CurvePoint>();
        for (int s = 0; s <= steps; s += every)
        {
            long tokens = s * tokensPerStep;
            double loss = floor + scale * Math.Pow(1 + tokens / t0, -alpha) + wobble * (rng.NextDouble() - 0.5);
            curve.Add(new CurvePoint(s, tokens, loss));
        }
        return curve;
    }

    /// <summary>A curve's evaluations timed as a run logs them, the first kdSteps steps at msKd each and the rest at msPlain.</summary>
    public static List<CurvePoint> Timed(List<CurvePoint> curve, int kdSteps, double msKd, double msPlain) =>
        curve.Select(p => p with { Seconds = (Math.Min(p.Step, kdSteps) * msKd + Math.Max(0, p.Step - kdSteps) * msPlain) / 1000 })
            .ToList();

    /// <summary>
    /// The clock of a run timed as <see cref="Timed"/> over totalSteps steps, its KD steps spending teacherMs each on the teacher.
    /// </summary>
    public static RunClock Clock(int totalSteps, int kdSteps, double msKd, double msPlain, double teacherMs) =>
        new((kdSteps * msKd + (totalSteps - kdSteps) * msPlain) / 1000, kdSteps, kdSteps > 0 ? msKd : null,
            totalSteps > kdSteps ? msPlain : null, kdSteps * teacherMs / 1000);

    public static DemoResults Plausible()
    {
        const long tokensPerStep = 8 * 256;
        const int steps = 2000;
        var rng = new Random(7);
        var search = new List<SearchPoint>();
        int index = 0;
        // Evolution: a population that drifts toward the budget and lower perplexity as generations pass.
        for (int i = 0; i < 64; i++)
        {
            long p = 2_600_000 + (long)(rng.NextDouble() * 600_000 * (0.4 + 0.6 * i / 64.0));
            double ppl = 60 - (p - 2_600_000) / 60_000.0 - 6.0 * i / 64 + 4 * rng.NextDouble();
            search.Add(new SearchPoint(index++, "evolution", p, ppl, $"{{\"embed\":192,\"layers\":[0,1,2,{i % 4 + 3}]}}"));
        }
        for (int i = 0; i < 64; i++)
        {
            long p = 2_600_000 + (long)(rng.NextDouble() * 600_000);
            double ppl = 62 - (p - 2_600_000) / 60_000.0 + 6 * rng.NextDouble();
            search.Add(new SearchPoint(index++, "random", p, ppl, $"{{\"embed\":160,\"heads\":\"<{i}>\"}}"));
        }
        search.Add(new SearchPoint(index++, "importance", 3_150_000, 55.8, "{\"embed\":224,\"uniform\":true}"));
        // FLOPs per token: about twice the parameters, plus an attention term that varies with the heads kept.
        search = search.Select(p => p with { Flops = 2.0 * p.Parameters + 40_000 * (p.Index % 5) }).ToList();

        return new DemoResults
        {
            Preset = "small",
            Device = "cuda (NVIDIA H100 80GB HBM3)",
            Started = new DateTimeOffset(2025, 11, 3, 14, 5, 0, TimeSpan.Zero),
            Seconds = 1834.6,
            TeacherParameters = 7_340_032,
            TeacherNonEmbedding = 5_242_880,
            TeacherArchitecture = "GPT-NeoX, 6 layers, d_model 256, 8 heads × 32, MLP 1024, context 256, vocab 4096",
            TeacherValLoss = Math.Log(31.7),
            TeacherTokens = 40_960_000,
            BudgetParams = 3_200_000,
            BudgetRatio = 0.4,
            Search = search,
            Students =
            [
                new Arm("random-init", "random initialisation", 3_180_544,
                    PowerCurve(steps, 100, tokensPerStep, 3.35, 4.95, 60_000, 0.55, 0.02, 1)),
                new Arm("subnet-init", "sub-network of the teacher", 3_180_544,
                    PowerCurve(steps, 100, tokensPerStep, 3.30, 1.40, 200_000, 0.5, 0.02, 2)),
                new Arm("subnet-init+kd", "sub-network + distillation from the teacher", 3_180_544,
                    PowerCurve(steps, 100, tokensPerStep, 3.22, 1.40, 200_000, 0.6, 0.02, 3)),
            ],
            Salt =
            [
                new Arm("salt", "KD from the small model, then data alone", 7_340_032,
                    Timed(PowerCurve(1500, 75, tokensPerStep, 3.20, 5.0, 45_000, 0.6, 0.015, 4), 300, 183.4, 121.7),
                    Clock(1500, 300, 183.4, 121.7, 38.2)),
                new Arm("baseline", "data alone", 7_340_032,
                    Timed(PowerCurve(1500, 75, tokensPerStep, 3.25, 5.0, 60_000, 0.55, 0.015, 5), 0, 0, 123.1),
                    Clock(1500, 0, 0, 123.1, 0)),
                new Arm("salt-cached", "KD from a top-64 cache of the small model, then data alone", 7_340_032,
                    Timed(PowerCurve(1500, 75, tokensPerStep, 3.21, 5.0, 46_000, 0.6, 0.015, 6), 300, 141.9, 122.4),
                    Clock(1500, 300, 141.9, 122.4, 3.3)),
            ],
            SaltKdSteps = 300,
            SaltTotalSteps = 1500,
            SaltSmallModel = "subnet-init+kd",
            SaltSmallSeconds = 96.3,
            SaltCacheSeconds = 14.8,
            SaltCacheTopK = 64,
            Stages =
            [
                new StageTiming("pretrain teacher", 812.4, true),
                new StageTiming("importance", 14.2, false),
                new StageTiming("search", 221.9, false),
                new StageTiming("students", 540.3, false),
                new StageTiming("salt", 245.8, false),
            ],
            SearchFront = FrontOf(search),
            Supernet = new SupernetResults(500,
            [
                new SupernetArm("sandwich", "sandwich, 500 steps", 32.46, 64, 3_181_000, 47.13, "{\"embed_dim\":192}"),
                new SupernetArm("standard", "standard, 500 steps", 31.92, 64, 3_190_500, 49.02, "{\"embed_dim\":200}"),
            ]),
        };
    }

    /// <summary>
    /// The (ppl, params, FLOPs) view of a search as `whittle search` would record it: the non-dominated set over the three
    /// (by brute force), hypervolumes and a reference point made up (the report only prints them).
    /// </summary>
    public static SearchObjectives FrontOf(IReadOnlyList<SearchPoint> search)
    {
        static bool Dominates(SearchPoint q, SearchPoint p) =>
            q.Parameters <= p.Parameters && q.Flops <= p.Flops && q.Perplexity <= p.Perplexity
            && (q.Parameters < p.Parameters || q.Flops < p.Flops || q.Perplexity < p.Perplexity);
        var set = search.Where(p => !search.Any(q => Dominates(q, p))).DistinctBy(p => p.Spec)
            .Select(p => new ParetoPoint(p.Strategy, p.Parameters, p.Flops!.Value, p.Perplexity, p.Spec)).ToList();
        return new SearchObjectives(["ppl", "params", "flops"], set,
            new Dictionary<string, double> { ["evolution"] = 0.8123, ["random"] = 0.7011, ["importance"] = 0.4512 },
            new Dictionary<string, double> { ["ppl"] = 70.1, ["params"] = 3_260_000, ["flops"] = 6_720_000 }, 1.331);
    }
}
