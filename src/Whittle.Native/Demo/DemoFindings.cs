// Policy: every claim the report makes is a sentence built here from numbers measured in this run; nothing is
// asserted that the data does not show. When an expected effect is missing (an arm never reaches the target, reaches
// it no sooner than the reference, the search does not beat a baseline), the sentence starts with "Not reproduced in
// this run:" and gives the numbers that show it. Arms and strategies are found by the names DemoResults documents;
// a missing one is said to be missing rather than guessed.
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

/// <summary>A training arm with its final evaluation and how soon it reached the reference's final perplexity.</summary>
public sealed record ArmSummary(string Name, string Description, long Parameters, CurvePoint? Final, double? ToTarget, double? SpeedUp);

/// <summary>
/// A SALT arm against the clock: steps and training seconds to the baseline's final perplexity, its total training
/// seconds, its median step times in the KD phase and after it, the teacher's share of a KD step (the small model's
/// forward, or the cache read), and the KD phase's overhead per step, KdStepMs / PlainStepMs − 1 (one run's own steps).
/// </summary>
public sealed record ArmClock(string Name, double? StepToTarget, double? SecondsToTarget, double? TotalSeconds, double? KdStepMs,
    double? PlainStepMs, double? TeacherMsPerKdStep, double? Overhead);

/// <summary>
/// SALT's wall-clock findings. Savings are fractions of the baseline's total training seconds: Saving with the small model
/// taken as given (the paper's convention), SavingWithSmall counting its own training; for the cached arm, with the cache
/// taken as given, counting its build, and counting the small model's training too. The StepTime savings time both
/// sides by one run's own median steps (<see cref="DemoFindings.StepTimeSaving"/>), so load that differs between runs
/// (a shared machine, the first run's JIT warm-up) drops out.
/// </summary>
public sealed record SaltClockFindings(IReadOnlyList<ArmClock> Arms, double? Saving, double? SavingWithSmall, double? StepTimeSaving,
    double? CachedSaving, double? CachedSavingWithBuild, double? CachedSavingWithAll, double? CachedStepTimeSaving,
    double? BreakEvenOverhead, IReadOnlyList<string> Sentences)
{
    public ArmClock? Arm(string name) => Arms.FirstOrDefault(a => a.Name == name);
}

/// <summary>One search strategy: how many candidates it evaluated and its best.</summary>
public sealed record StrategySummary(string Strategy, int Evaluated, SearchPoint? Best);

public sealed record DemoFindings
{
    public const string RandomInit = "random-init", SubnetInit = "subnet-init", SubnetInitKd = "subnet-init+kd";
    public const string SaltArm = "salt", SaltBaseline = "baseline", SaltCached = "salt-cached";
    public const string Evolution = "evolution", RandomSearch = "random", Importance = "importance";
    public const string NotReproduced = "Not reproduced in this run: ";

    /// <summary>random-init's final perplexity, the target every student is measured against (null without random-init).</summary>
    public double? StudentTarget { get; init; }
    /// <summary>Tokens random-init itself needed to reach its final perplexity (the numerator of every speed-up).</summary>
    public double? ReferenceTokens { get; init; }
    public required IReadOnlyList<ArmSummary> Students { get; init; }
    public required IReadOnlyList<string> StudentSentences { get; init; }

    public required IReadOnlyList<StrategySummary> Strategies { get; init; }
    public required IReadOnlyList<SearchPoint> Pareto { get; init; }
    /// <summary>Relative perplexity improvement of the evolutionary search's best over each other strategy's best: (other − evo) /
    /// other.</summary>
    public required IReadOnlyDictionary<string, double> EvolutionGain { get; init; }
    public required IReadOnlyList<string> SearchSentences { get; init; }

    /// <summary>The SALT arms (ToTarget in steps, measured against the baseline's final perplexity), the step and its fraction of all
    /// steps.</summary>
    public double? SaltTarget { get; init; }
    public required IReadOnlyList<ArmSummary> Salt { get; init; }
    public double? SaltStep { get; init; }
    public double? SaltFraction { get; init; }
    public double? KdFraction { get; init; }
    public required IReadOnlyList<string> SaltSentences { get; init; }
    public required SaltClockFindings SaltClock { get; init; }
    /// <summary>The supernet stage: the searched best on the sandwich parent against the plain teacher and the standard control.</summary>
    public SupernetFindings? Supernet { get; init; }
    /// <summary>The search's (ppl, params, FLOPs) view as measured (DemoResults.SearchFront), null without it.</summary>
    public SearchObjectives? SearchFront { get; init; }

    public static DemoFindings Of(DemoResults r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var (target, refTokens, students, studentSentences) = StudentsOf(r);
        var (strategies, pareto, gain, searchSentences) = SearchOf(r);
        var (saltTarget, salt, step, fraction, kdFraction, saltSentences) = SaltOf(r);
        return new DemoFindings
        {
            StudentTarget = target, ReferenceTokens = refTokens, Students = students, StudentSentences = studentSentences,
            Strategies = strategies, Pareto = pareto, EvolutionGain = gain, SearchSentences = searchSentences,
            SaltTarget = saltTarget, Salt = salt, SaltStep = step, SaltFraction = fraction, KdFraction = kdFraction,
                SaltSentences = saltSentences, SaltClock = SaltClockOf(r, saltTarget),
            Supernet = DemoSupernet.Of(r), SearchFront = r.SearchFront,
        };
    }

    static (double?, double?, List<ArmSummary>, List<string>) StudentsOf(DemoResults r)
    {
        var sentences = new List<string>();
        var reference = r.Students.FirstOrDefault(a => a.Name == RandomInit);
        var refFinal = reference is null ? null : DemoAnalysis.Final(reference.Curve);
        double? target = refFinal is { ValLoss: var l } && double.IsFinite(l) ? refFinal.Perplexity : null;
        double? refTokens = target is { } t0 ? DemoAnalysis.TokensToReach(reference!.Curve, t0) : null;

        var arms = new List<ArmSummary>();
        foreach (var a in r.Students)
        {
            var final = DemoAnalysis.Final(a.Curve);
            double? tokens = target is { } t ? DemoAnalysis.TokensToReach(a.Curve, t) : null;
            double? speedUp = tokens is > 0 && refTokens is > 0 ? refTokens / tokens : null;
            arms.Add(new ArmSummary(a.Name, a.Description, a.Parameters, final, tokens, speedUp));
        }

        if (r.Students.Count == 0) { sentences.Add("No student arms were trained in this run."); return (null, null, arms, sentences); }
        if (target is null || refFinal is null)
        {
            sentences.Add(reference is null
                ? $"No {RandomInit} arm in this run, so there is no reference for the tokens-to-reach comparison."
                : $"{RandomInit} has no finite final perplexity in this run, so there is no reference for the tokens-to-reach comparison.");
            return (target, refTokens, arms, sentences);
        }
        sentences.Add($"{RandomInit} ends at perplexity {Perplexity(target.Value)} after {Si(refFinal.Tokens)} tokens; every arm is " +
            $"measured by the tokens it needs to reach that perplexity.");
        foreach (var a in arms.Where(a => a.Name != RandomInit))
        {
            string budget = a.Final is null ? "its budget" : $"its budget of {Si(a.Final.Tokens)} tokens";
            string ended = a.Final is null ? "it has no evaluations" : $"it ended at {Perplexity(a.Final.Perplexity)}";
            if (a.ToTarget is not { } t)
                sentences.Add($"{NotReproduced}{a.Name} did not reach {RandomInit}'s final perplexity ({Perplexity(target.Value)}) " +
                    $"within {budget} ({ended}).");
            else if (t <= 0)
                sentences.Add($"{a.Name} is already at or below {RandomInit}'s final perplexity before any training (its evaluation at 0 " +
                    $"tokens).");
            else if (a.SpeedUp is not { } s || s <= 1)
                sentences.Add($"{NotReproduced}{a.Name} reached {RandomInit}'s final perplexity only after {Si(t)} tokens, no sooner " +
                    $"than {RandomInit} ({Si(refTokens ?? 0)} tokens).");
            else
                sentences.Add($"{a.Name} reaches it after {Si(t)} tokens: {Factor(s)} fewer.");
        }
        var plain = arms.FirstOrDefault(a => a.Name == SubnetInit);
        var kd = arms.FirstOrDefault(a => a.Name == SubnetInitKd);
        if (plain?.Final is { } pf && kd?.Final is { } kf)
            sentences.Add(kf.ValLoss < pf.ValLoss
                ? $"Distillation helps: {SubnetInitKd} ends at perplexity {Perplexity(kf.Perplexity)}, {SubnetInit} at " +
                    $"{Perplexity(pf.Perplexity)}."
                : $"{NotReproduced}{SubnetInitKd} does not end below {SubnetInit} (perplexity {Perplexity(kf.Perplexity)} vs " +
                    $"{Perplexity(pf.Perplexity)}).");
        return (target, refTokens, arms, sentences);
    }

    static (List<StrategySummary>, IReadOnlyList<SearchPoint>, Dictionary<string, double>, List<string>) SearchOf(DemoResults r)
    {
        var sentences = new List<string>();
        // Strategies in the order they first appear, so the table follows the run.
        var strategies = r.Search.GroupBy(p => p.Strategy)
            .Select(g =>
                new StrategySummary(
                g.Key, g.Count(),
                g.Where(p => double.IsFinite(p.Perplexity)).OrderBy(p => p.Perplexity).ThenBy(p => p.Index).FirstOrDefault()))
            .ToList();
        var pareto = DemoAnalysis.ParetoFront(r.Search);
        var gain = new Dictionary<string, double>();
        if (r.Search.Count == 0)
        {
            sentences.Add("The search evaluated no candidates in this run.");
            return (strategies, pareto, gain, sentences);
        }

        var evo = strategies.FirstOrDefault(s => s.Strategy == Evolution)?.Best;
        if (evo is null) sentences.Add($"No {Evolution} candidates in this run, so the search is not compared with its baselines.");
        else
        {
            sentences.Add($"The evolutionary search's best sub-network has perplexity {Perplexity(evo.Perplexity)} with " +
                $"{Si(evo.Parameters)} parameters (budget {Si(r.BudgetParams)}).");
            foreach (var (name, what) in new[] { (Importance, "the importance-only baseline"), (RandomSearch, "random search") })
            {
                var other = strategies.FirstOrDefault(s => s.Strategy == name)?.Best;
                if (other is null)
                {
                    sentences.Add($"No {name} candidates in this run, so the search is not compared with {what}.");
                    continue;
                }
                double g = (other.Perplexity - evo.Perplexity) / other.Perplexity;
                gain[name] = g;
                sentences.Add(evo.Perplexity < other.Perplexity
                    ? $"It beats {what} (best perplexity {Perplexity(other.Perplexity)}) by {Percent(g)}."
                    : $"{NotReproduced}the evolutionary search's best ({Perplexity(evo.Perplexity)}) is not better than {what} " +
                        $"({Perplexity(other.Perplexity)}).");
            }
        }
        if (pareto.Count > 0)
            sentences.Add(pareto.Count == 1
                ? $"The Pareto front is a single candidate: {Si(pareto[0].Parameters)} parameters, perplexity " +
                    $"{Perplexity(pareto[0].Perplexity)}."
                : $"The (parameters, perplexity) Pareto front has {pareto.Count} candidates, from {Si(pareto[0].Parameters)} parameters " +
                    $"at perplexity {Perplexity(pareto[0].Perplexity)} to {Si(pareto[^1].Parameters)} at " +
                    $"{Perplexity(pareto[^1].Perplexity)}.");
        return (strategies, pareto, gain, sentences);
    }

    static (double?, List<ArmSummary>, double?, double?, double?, List<string>) SaltOf(DemoResults r)
    {
        var sentences = new List<string>();
        var salt = r.Salt.FirstOrDefault(a => a.Name == SaltArm);
        var baseline = r.Salt.FirstOrDefault(a => a.Name == SaltBaseline);
        var baseFinal = baseline is null ? null : DemoAnalysis.Final(baseline.Curve);
        double? target = baseFinal is { ValLoss: var l } && double.IsFinite(l) ? baseFinal.Perplexity : null;
        var arms = r.Salt.Select(a => new ArmSummary(a.Name, a.Description, a.Parameters, DemoAnalysis.Final(a.Curve),
            target is { } t ? DemoAnalysis.StepToReach(a.Curve, t) : null, null)).ToList();
        double? kdFraction = r.SaltTotalSteps > 0 ? (double)r.SaltKdSteps / r.SaltTotalSteps : null;
        if (salt is null || baseline is null || target is null)
        {
            sentences.Add(
                r.Salt.Count == 0 ? "No SALT comparison was run." : $"The SALT comparison needs both a {SaltArm} and a {SaltBaseline} " +
                $"arm with a finite final perplexity; this run lacks one.");
            return (target, arms, null, null, kdFraction, sentences);
        }
        var saltSummary = arms.First(a => a.Name == SaltArm);
        var saltFinal = saltSummary.Final;
        string total = Count(r.SaltTotalSteps);
        double? step = saltSummary.ToTarget;
        double? fraction = step is { } st && r.SaltTotalSteps > 0 ? st / r.SaltTotalSteps : null;
        int lastStep = saltFinal?.Step ?? 0;
        if (step is not { } s)
            sentences.Add($"{NotReproduced}SALT did not reach the baseline's final perplexity ({Perplexity(target.Value)}) within " +
                $"{total} steps"
                + (saltFinal is null ? "." : $" (it ended at {Perplexity(saltFinal.Perplexity)})."));
        else if (s >= lastStep || s >= r.SaltTotalSteps)
            sentences.Add($"{NotReproduced}SALT reached the baseline's final perplexity ({Perplexity(target.Value)}) only at the end of " +
                $"training (step {Step(s)} of {total}).");
        else
            sentences.Add($"SALT reaches the baseline's final perplexity ({Perplexity(target.Value)}) at step {Step(s)} of {total}"
                + (fraction is { } f ? $": {Percent(f)} of the steps." : "."));
        if (saltFinal is not null && baseFinal is not null)
            sentences.Add(saltFinal.ValLoss < baseFinal.ValLoss
                ? $"At the end SALT's perplexity is {Perplexity(saltFinal.Perplexity)}, the baseline's {Perplexity(baseFinal.Perplexity)}."
                : $"{NotReproduced}SALT does not end below the baseline (perplexity {Perplexity(saltFinal.Perplexity)} vs " +
                    $"{Perplexity(baseFinal.Perplexity)}).");
        return (target, arms, step, fraction, kdFraction, sentences);
    }

    /// <summary>
    /// The saving an arm shows when every step is timed at its own run's medians: reaching the target at step s costs
    /// min(s, n)·kd + max(0, s − n)·plain, the baseline's N plain steps N·plain (the same computation as the arm's plain
    /// steps), so saving = 1 − (min(s, n)·kd + max(0, s − n)·plain) / (N·plain); null without both medians or a step.
    /// </summary>
    public static double? StepTimeSaving(ArmClock arm, int kdSteps, int totalSteps) =>
        arm is { StepToTarget: { } s, KdStepMs: { } kd, PlainStepMs: { } plain } && plain > 0 && totalSteps > 0
            ? 1 - (Math.Min(s, kdSteps) * kd + Math.Max(0, s - kdSteps) * plain) / (totalSteps * plain) : null;

    /// <summary>
    /// The KD overhead per step at which SALT's steps to the target cost as much as the baseline's N plain steps:
    /// min(s, n)·(1 + o) + max(0, s − n) = N, so o* = (N − max(0, s − n)) / min(s, n) − 1; below it SALT saves wall-clock.
    /// It depends on steps alone, so no machine load enters it.
    /// </summary>
    public static double? BreakEvenOverhead(double? stepToTarget, int kdSteps, int totalSteps) =>
        stepToTarget is { } s && Math.Min(s, kdSteps) > 0 ? (totalSteps - Math.Max(0, s - kdSteps)) / Math.Min(s, kdSteps) - 1 : null;

    static SaltClockFindings SaltClockOf(DemoResults r, double? target)
    {
        var sentences = new List<string>();
        var arms = r.Salt.Select(a =>
        {
            var c = a.Clock;
            double? total = c?.Seconds ?? DemoAnalysis.Final(a.Curve)?.Seconds;
            double? overhead = c is { KdStepMs: { } kd, PlainStepMs: { } plain } && plain > 0 ? kd / plain - 1 : null;
            double? teacherMs = c is { KdSteps: > 0 } ? 1000 * c.TeacherSeconds / c.KdSteps : null;
            return new ArmClock(a.Name, target is { } t ? DemoAnalysis.StepToReach(a.Curve, t) : null,
                target is { } t2 ? DemoAnalysis.SecondsToReach(a.Curve, t2) : null, total, c?.KdStepMs, c?.PlainStepMs, teacherMs,
                overhead);
        }).ToList();
        var salt = arms.FirstOrDefault(a => a.Name == SaltArm);
        var baseline = arms.FirstOrDefault(a => a.Name == SaltBaseline);
        var cached = arms.FirstOrDefault(a => a.Name == SaltCached);
        double? baseSeconds = baseline?.TotalSeconds is > 0 ? baseline.TotalSeconds : null;
        // 1 − (seconds to the target + what else is counted) / the baseline's seconds; null when a term is unknown.
        double? Saving(ArmClock? arm, params double?[] counted) =>
            arm?.SecondsToTarget is { } st && baseSeconds is { } b && counted.All(c => c is not null)
                ? 1 - (st + counted.Sum(c => c!.Value)) / b : null;
        double? StepTime(ArmClock? arm) => arm is null ? null : StepTimeSaving(arm, r.SaltKdSteps, r.SaltTotalSteps);
        var clock = new SaltClockFindings(arms, Saving(salt), Saving(salt, r.SaltSmallSeconds), StepTime(salt),
            Saving(cached), Saving(cached, r.SaltCacheSeconds), Saving(cached, r.SaltCacheSeconds, r.SaltSmallSeconds), StepTime(cached),
            BreakEvenOverhead(salt?.StepToTarget, r.SaltKdSteps, r.SaltTotalSteps), sentences);

        if (salt is null || baseline is null || target is null)
        {
            sentences.Add("No SALT wall-clock comparison: the run lacks the SALT arm, its baseline or a finite target.");
            return clock;
        }
        if (salt.TotalSeconds is null || baseSeconds is null)
        {
            sentences.Add("No SALT wall-clock comparison: the runs' metrics.jsonl hold no training wall-clock (elapsed_s); "
                + "they predate it.");
            return clock;
        }
        string t = Perplexity(target.Value);
        if (salt.SecondsToTarget is not { } st)
            sentences.Add($"{NotReproduced}SALT did not reach the baseline's final perplexity ({t}), so it saves no wall-clock "
                + $"(it trained for {Seconds(salt.TotalSeconds.Value)}, the baseline for {Seconds(baseSeconds.Value)}).");
        else
            sentences.Add((clock.Saving is > 0 ? "" : NotReproduced)
                + $"SALT reaches the baseline's final perplexity ({t}) after {Seconds(st)} of training"
                + (salt.StepToTarget is { } step ? $" (step {Step(step)})" : "")
                + $"; the baseline ends after {Seconds(baseSeconds.Value)}: "
                + $"{LessOrMore(clock.Saving ?? double.NaN)} wall-clock with the small model taken as given (the paper's convention)"
                + (clock.SavingWithSmall is { } w
                    ? $", {LessOrMore(w)} counting the small model's own training ({Seconds(r.SaltSmallSeconds!.Value)})." : "."));
        if (salt.Overhead is { } o)
            sentences.Add($"A KD-phase step takes {Ms(salt.KdStepMs!.Value)} (median), "
                + $"a plain step after it {Ms(salt.PlainStepMs!.Value)}: "
                + $"the KD phase costs {LessOrMore(-o)} per step"
                + (salt.TeacherMsPerKdStep is { } tm ? $"; the small model's forward pass is {Ms(tm)} of each KD-phase step." : "."));
        if (clock.BreakEvenOverhead is { } be)
            sentences.Add($"Reaching the target at step {Step(salt.StepToTarget!.Value)} of {Count(r.SaltTotalSteps)}, SALT saves "
                + $"wall-clock as long as a KD-phase step costs less than {Percent(be)} more than a plain one (a count of steps, free of "
                + "machine load).");
        if (clock.StepTimeSaving is { } sts)
            sentences.Add((sts > 0 ? "" : NotReproduced)
                + "Timed by the SALT run's own medians instead (its steps to the target, those of the KD phase at the KD-phase median "
                + $"and the rest at the plain one, against {Count(r.SaltTotalSteps)} plain steps for the baseline, so load that differs "
                + $"between runs drops out), SALT takes {LessOrMore(sts)} wall-clock than the baseline"
                + (sts > 0 ? "." : ": the KD phase's overhead outweighs the steps it saves."));
        if (cached is null)
            sentences.Add("The cached variant (`salt --teacher-cache`: no small-model forward in the KD phase) was not run; "
                + "`whittle demo --salt-cache` adds it.");
        else if (cached.SecondsToTarget is not { } ct)
            sentences.Add($"{NotReproduced}SALT from the small model's top-{r.SaltCacheTopK} cache did not reach the baseline's "
                + $"final perplexity ({t}).");
        else
            sentences.Add($"From a top-{r.SaltCacheTopK} cache of the small model's soft labels"
                + (r.SaltCacheSeconds is { } cs ? $" (built in {Seconds(cs)})" : "")
                + (cached.Overhead is { } co ? $", a KD-phase step costs {LessOrMore(-co)} than a plain one" : "")
                + (cached.TeacherMsPerKdStep is { } cr ? $" ({Ms(cr)} of it reading the cache)" : "")
                + $"; the cached run reaches the target after {Seconds(ct)}"
                + (cached.StepToTarget is { } cs2 ? $" (step {Step(cs2)})" : "")
                + $": {LessOrMore(clock.CachedSaving ?? double.NaN)} wall-clock than the baseline with the cache taken as given"
                + (clock.CachedSavingWithBuild is { } cb ? $", {LessOrMore(cb)} counting its build" : "")
                + (clock.CachedSavingWithAll is { } ca ? $", {LessOrMore(ca)} counting the small model's training too" : "")
                + (clock.CachedStepTimeSaving is { } cst ? $"; by its own step times, {LessOrMore(cst)}." : "."));
        return clock;
    }
}
