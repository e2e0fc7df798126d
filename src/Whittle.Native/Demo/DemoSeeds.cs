// Policy: claims across seeds. Each effect the report claims is one number per seed (a speed-up, a relative gap, a
// fraction of steps) and a test of that number; the rule, stated once here and printed in the report, decides:
// an effect is REPRODUCED only when it holds in every seed. A seed where the number cannot be measured (an arm that
// never reaches the target, a missing strategy) counts as a seed where the effect does not hold. Means and sample
// standard deviations (n − 1) are over the seeds that have the number, and the report shows n when that is fewer than
// all seeds. The per-seed numbers are those of each seed's own report (DemoFindings), so the two cannot disagree.
// Pure functions of the per-seed DemoResults, checked by tests on hand-computed numbers.
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

/// <summary>One seed of a multi-seed demo: the seed its stochastic arms ran with and that seed's results.</summary>
public sealed record SeedRun(int Seed, DemoResults Results);

/// <summary>How a number across seeds is printed: a speed-up factor, a fraction (of steps), a signed relative gap, a
/// perplexity, a count (tokens, parameters, steps) or seconds.</summary>
public enum SeedValueKind { Factor, Fraction, Signed, Perplexity, Count, Seconds, Hypervolume }

/// <summary>One seed's number for an effect (null: it could not be measured in that seed) and whether the effect holds.</summary>
public sealed record SeedValue(int Seed, double? Value, bool Holds);

/// <summary>
/// An effect across seeds: its claim (what holding means), the per-seed numbers, their mean and sample sd over the N
/// seeds that have one (Sd null below two), the number of seeds it holds in, and the verdict of the rule.
/// </summary>
public sealed record EffectAcross(string Key, string Claim, SeedValueKind Kind, IReadOnlyList<SeedValue> Values, double? Mean,
    double? Sd, int N, int HoldsIn, bool Reproduced);

/// <summary>A measured quantity of one arm across seeds (a final perplexity, tokens to the target, ...), with mean and sd.</summary>
public sealed record QuantityAcross(string Arm, string Quantity, SeedValueKind Kind, IReadOnlyList<(int Seed, double? Value)> Values,
    double? Mean, double? Sd, int N);

public static class DemoSeeds
{
    /// <summary>The rule, as the report and the README state it.</summary>
    public const string Rule = "An effect counts as reproduced only when it holds in every seed; a seed where it cannot be " +
        "measured counts as a seed where it does not hold. Mean ± standard deviation (sample, n − 1) is over the seeds that " +
        "have the number.";

    /// <summary>An effect: its key, its claim, how its number prints, the number in one seed's findings and when it holds.</summary>
    /// <summary>OnlyWhenRun: an arm a run may leave out (the supernet stage of results from before it existed); the effect is
    /// listed only when some seed measured it.</summary>
    sealed record EffectDef(string Key, string Claim, SeedValueKind Kind, Func<DemoFindings, double?> Value, Func<double, bool> Holds,
        bool OnlyWhenRun = false);

    static ArmSummary? Student(DemoFindings f, string name) => f.Students.FirstOrDefault(a => a.Name == name);
    static ArmSummary? SaltArm(DemoFindings f, string name) => f.Salt.FirstOrDefault(a => a.Name == name);

    /// <summary>(reference − arm) / reference of two final perplexities: positive when the arm ends lower.</summary>
    static double? Gap(CurvePoint? reference, CurvePoint? arm) =>
        reference is { } r && arm is { } a && double.IsFinite(r.Perplexity) && double.IsFinite(a.Perplexity) && r.Perplexity > 0
            ? (r.Perplexity - a.Perplexity) / r.Perplexity : null;

    static readonly EffectDef[] Effects =
    [
        new("subnet_init_speed_up", $"{DemoFindings.SubnetInit} reaches {DemoFindings.RandomInit}'s final perplexity in fewer tokens " +
            "(speed-up > 1×)", SeedValueKind.Factor, f => Student(f, DemoFindings.SubnetInit)?.SpeedUp, v => v > 1),
        new("kd_speed_up", $"{DemoFindings.SubnetInitKd} reaches {DemoFindings.RandomInit}'s final perplexity in fewer tokens " +
            "(speed-up > 1×)", SeedValueKind.Factor, f => Student(f, DemoFindings.SubnetInitKd)?.SpeedUp, v => v > 1),
        new("kd_ends_lower", $"{DemoFindings.SubnetInitKd} ends below {DemoFindings.SubnetInit} (its final perplexity's gap below " +
            $"{DemoFindings.SubnetInit}'s > 0)", SeedValueKind.Signed,
            f => Gap(Student(f, DemoFindings.SubnetInit)?.Final, Student(f, DemoFindings.SubnetInitKd)?.Final), v => v > 0),
        new("evolution_vs_random", "the evolutionary search's best beats random search's best at the same number of evaluations " +
            "(perplexity gap > 0)", SeedValueKind.Signed, f => Gain(f, DemoFindings.RandomSearch), v => v > 0),
        new("evolution_vs_importance", "the evolutionary search's best beats the importance-only baseline (perplexity gap > 0)",
            SeedValueKind.Signed, f => Gain(f, DemoFindings.Importance), v => v > 0),
        new("salt_steps", "SALT reaches the baseline's final perplexity before the last step (fraction of the steps < 100%)",
            SeedValueKind.Fraction, f => f.SaltFraction, v => v < 1),
        new("salt_ends_lower", "SALT ends below the baseline (final perplexity gap > 0)", SeedValueKind.Signed,
            f => Gap(SaltArm(f, DemoFindings.SaltBaseline)?.Final, SaltArm(f, DemoFindings.SaltArm)?.Final), v => v > 0),
        new("salt_step_time_saving", "SALT takes less training wall-clock than the baseline to its final perplexity, timed by the " +
            "SALT run's own median steps (saving > 0)", SeedValueKind.Signed, f => f.SaltClock.StepTimeSaving, v => v > 0),
        new("supernet_vs_plain", "the evolutionary search's best sub-network on the sandwich-trained supernet beats its best on the " +
            "plain teacher, same budget and search (perplexity gap > 0)", SeedValueKind.Signed, f => f.Supernet?.GainOverPlain, v => v > 0,
            OnlyWhenRun: true),
        new("supernet_vs_standard", "it also beats its best on the teacher trained the same steps with standard training, the " +
            "control for the extra steps (perplexity gap > 0)", SeedValueKind.Signed, f => f.Supernet?.GainOverStandard, v => v > 0,
            OnlyWhenRun: true),
    ];

    static double? Gain(DemoFindings f, string strategy) => f.EvolutionGain.TryGetValue(strategy, out var g) ? g : null;

    /// <summary>Every effect of the report across the seeds, in the report's order, judged by <see cref="Rule"/>.</summary>
    public static IReadOnlyList<EffectAcross> EffectsOf(IReadOnlyList<SeedRun> runs)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var findings = runs.Select(r => (r.Seed, F: DemoFindings.Of(r.Results))).ToList();
        return Effects.Where(e => !e.OnlyWhenRun || findings.Any(x => e.Value(x.F) is not null)).Select(e => Judge(e.Key, e.Claim, e.Kind,
            findings.Select(x => (x.Seed, e.Value(x.F))).ToList(), e.Holds)).ToList();
    }

    /// <summary>
    /// The rule applied to one effect's per-seed numbers: a seed holds when its number is finite and passes
    /// <paramref name="holds"/>; reproduced when every seed holds (and there is at least one seed).
    /// </summary>
    public static EffectAcross Judge(string key, string claim, SeedValueKind kind, IReadOnlyList<(int Seed, double? Value)> values,
        Func<double, bool> holds)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(holds);
        var seeds = values.Select(v => new SeedValue(v.Seed, v.Value, v.Value is { } x && double.IsFinite(x) && holds(x))).ToList();
        var (mean, sd, n) = Spread(values.Select(v => v.Value));
        int holdsIn = seeds.Count(s => s.Holds);
        return new EffectAcross(key, claim, kind, seeds, mean, sd, n, holdsIn, seeds.Count > 0 && holdsIn == seeds.Count);
    }

    /// <summary>Mean and sample sd of the finite values, and how many there were.</summary>
    static (double? Mean, double? Sd, int N) Spread(IEnumerable<double?> values)
    {
        var have = values.Where(v => v is { } x && double.IsFinite(x)).Select(v => v!.Value).ToList();
        return DemoAnalysis.MeanSd(have) is { } ms ? (ms.Mean, ms.Sd, have.Count) : (null, null, 0);
    }

    /// <summary>Each arm's measured quantities across the seeds: students, search strategies, SALT arms and SALT's clock.</summary>
    public static IReadOnlyList<QuantityAcross> QuantitiesOf(IReadOnlyList<SeedRun> runs)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var findings = runs.Select(r => (r.Seed, F: DemoFindings.Of(r.Results))).ToList();
        var list = new List<QuantityAcross>();
        void Add(string arm, string quantity, SeedValueKind kind, Func<DemoFindings, double?> value)
        {
            var values = findings.Select(x => (x.Seed, value(x.F))).ToList();
            if (values.All(v => v.Item2 is null)) return;   // an arm no seed ran (salt-cached without --salt-cache)
            var (mean, sd, n) = Spread(values.Select(v => v.Item2));
            list.Add(new QuantityAcross(arm, quantity, kind, values, mean, sd, n));
        }
        string[] students = [DemoFindings.RandomInit, DemoFindings.SubnetInit, DemoFindings.SubnetInitKd];
        foreach (var name in students)
        {
            Add(name, "final perplexity", SeedValueKind.Perplexity, f => Student(f, name)?.Final?.Perplexity);
            Add(name, $"tokens to {DemoFindings.RandomInit}'s final perplexity", SeedValueKind.Count, f => Student(f, name)?.ToTarget);
            if (name != DemoFindings.RandomInit) Add(name, "speed-up", SeedValueKind.Factor, f => Student(f, name)?.SpeedUp);
        }
        foreach (var name in new[] { DemoFindings.Evolution, DemoFindings.RandomSearch, DemoFindings.Importance })
        {
            Add(name, "best perplexity", SeedValueKind.Perplexity, f => Best(f, name)?.Perplexity);
            Add(name, "parameters of the best", SeedValueKind.Count, f => Best(f, name)?.Parameters);
        }
        foreach (var name in new[] { DemoFindings.SaltArm, DemoFindings.SaltBaseline, DemoFindings.SaltCached })
        {
            Add(name, "final perplexity", SeedValueKind.Perplexity, f => SaltArm(f, name)?.Final?.Perplexity);
            Add(name, "step reaching the baseline's final perplexity", SeedValueKind.Count, f => SaltArm(f, name)?.ToTarget);
            Add(name, "training seconds to it", SeedValueKind.Seconds, f => f.SaltClock.Arm(name)?.SecondsToTarget);
            Add(name, "KD overhead per step", SeedValueKind.Signed, f => f.SaltClock.Arm(name)?.Overhead);
        }
        Add(DemoFindings.SaltArm, "break-even KD overhead", SeedValueKind.Signed, f => f.SaltClock.BreakEvenOverhead);
        Add(DemoFindings.SaltArm, "wall-clock saving, small model given", SeedValueKind.Signed, f => f.SaltClock.Saving);
        Add(DemoFindings.SaltArm, "wall-clock saving, small model counted", SeedValueKind.Signed, f => f.SaltClock.SavingWithSmall);
        foreach (var name in new[] { DemoSupernet.Sandwich, DemoSupernet.Standard })
        {
            Add($"supernet: {name}", "searched best perplexity", SeedValueKind.Perplexity,
                f => name == DemoSupernet.Sandwich ? f.Supernet?.SandwichBest : f.Supernet?.StandardBest);
            Add($"supernet: {name}", "whole-network perplexity", SeedValueKind.Perplexity,
                f => name == DemoSupernet.Sandwich ? f.Supernet?.SandwichWhole : f.Supernet?.StandardWhole);
        }
        foreach (var name in new[] { DemoFindings.Evolution, DemoFindings.RandomSearch, DemoFindings.Importance })
            Add(name, "hypervolume (ppl, params, FLOPs)", SeedValueKind.Hypervolume,
                f => f.SearchFront?.Hypervolume.TryGetValue(name, out var hv) == true ? hv : null);
        return list;
    }

    static SearchPoint? Best(DemoFindings f, string strategy) => f.Strategies.FirstOrDefault(s => s.Strategy == strategy)?.Best;

    /// <summary>A number as its kind prints ("2.3×", "76%", "+4.1%", "145.6", "307k", "12.0 s"); "—" for none.</summary>
    public static string Show(SeedValueKind kind, double? value) => value is not { } v || !double.IsFinite(v) ? "—" : kind switch
    {
        SeedValueKind.Factor => Factor(v),
        SeedValueKind.Fraction => Percent(v),
        SeedValueKind.Signed => (v > 0 ? "+" : v < 0 ? "−" : "") + Percent(Math.Abs(v)),
        SeedValueKind.Perplexity => Perplexity(v),
        SeedValueKind.Count => Si(v),
        SeedValueKind.Hypervolume => v.ToString("F4", System.Globalization.CultureInfo.InvariantCulture),
        _ => Seconds(v),
    };

    /// <summary>"mean ± sd" (the sd printed as a magnitude of the same kind), "mean" alone for one value, and "(n = k)"
    /// when fewer than all <paramref name="seeds"/> have a value.</summary>
    public static string MeanPlusMinus(SeedValueKind kind, double? mean, double? sd, int n, int seeds)
    {
        if (mean is null) return "—";
        string s = Show(kind, mean) + (sd is { } d ? " ± " + Show(kind == SeedValueKind.Signed ? SeedValueKind.Fraction : kind, d) : "");
        return n < seeds ? $"{s} (n = {n})" : s;
    }
}

/// <summary>
/// The seeds of one demo run: each seed's results, the teacher's seed offset (the shared stages: data split, teacher,
/// importance), the seed whose detailed sections the top-level report shows, and the wall time of the whole run.
/// </summary>
public sealed record SeedSet(IReadOnlyList<SeedRun> Runs, int TeacherSeed, int DetailSeed, double Seconds);
