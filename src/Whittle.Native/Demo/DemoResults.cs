namespace Whittle.Native.Demo;

/// <summary>
/// One validation measurement of a training arm: perplexity = exp(ValLoss). Seconds: the run's training wall-clock at
/// this evaluation (metrics.jsonl's elapsed_s), null for a run logged before that was recorded.
/// </summary>
public sealed record CurvePoint(int Step, long Tokens, double ValLoss, double? Seconds = null)
{
    public double Perplexity => Math.Exp(ValLoss);
}

/// <summary>
/// A run's training wall-clock, from its metrics.jsonl: Seconds over all its steps (evaluations and checkpoint saves
/// excluded); KdSteps, the steps that consulted a teacher (SALT's KD phase), and the median time of those steps and of
/// the others (null where there are none); TeacherSeconds, what those steps spent obtaining the teacher's soft labels
/// (the small model's forward pass, or the cache read).
/// </summary>
public sealed record RunClock(double Seconds, int KdSteps, double? KdStepMs, double? PlainStepMs, double TeacherSeconds);

/// <summary>
/// A training run compared in the report (a student arm, SALT, its baseline); Clock is null when its metrics hold no wall-clock.
/// </summary>
public sealed record Arm(string Name, string Description, long Parameters, IReadOnlyList<CurvePoint> Curve, RunClock? Clock = null);

/// <summary>One sub-network evaluated by the search, in evaluation order; Parameters counts what the budget counts
/// (non-embedding).</summary>
/// <summary>Flops: forward FLOPs per token (the search's `flops` objective), null for a search run without it.</summary>
public sealed record SearchPoint(int Index, string Strategy, long Parameters, double Perplexity, string Spec, double? Flops = null);

/// <summary>How long a stage of the demo took (cached stages report the time of the run that computed them).</summary>
public sealed record StageTiming(string Stage, double Seconds, bool Cached);

/// <summary>Everything the demo measured; every number in the report comes from here.</summary>
public sealed record DemoResults
{
    public required string Preset { get; init; }
    public required string Device { get; init; }
    public required DateTimeOffset Started { get; init; }
    public required double Seconds { get; init; }
    /// <summary>The teacher: parameters (total, non-embedding), a one-line architecture summary and its final validation loss.</summary>
    public required long TeacherParameters { get; init; }
    public required long TeacherNonEmbedding { get; init; }
    public required string TeacherArchitecture { get; init; }
    public required double TeacherValLoss { get; init; }
    public required long TeacherTokens { get; init; }
    /// <summary>The search budget, in non-embedding parameters, and the fraction of the teacher's non-embedding parameters it is.</summary>
    public required long BudgetParams { get; init; }
    public required double BudgetRatio { get; init; }
    /// <summary>Every candidate evaluated, all strategies ("evolution", "random", "importance").</summary>
    public required IReadOnlyList<SearchPoint> Search { get; init; }
    /// <summary>Students trained for the same token budget: "random-init", "subnet-init", "subnet-init+kd".</summary>
    public required IReadOnlyList<Arm> Students { get; init; }
    /// <summary>
    /// SALT arms: "salt" (small model helps for the first SaltKdSteps steps), "baseline", and, when the demo ran it,
    /// "salt-cached" (the same with the small model's soft labels read from a top-SaltCacheTopK cache).
    /// </summary>
    public required IReadOnlyList<Arm> Salt { get; init; }
    public required int SaltKdSteps { get; init; }
    public required int SaltTotalSteps { get; init; }
    public required string SaltSmallModel { get; init; }
    /// <summary>The small model's own training wall-clock (its run's elapsed_s), null when unknown.</summary>
    public double? SaltSmallSeconds { get; init; }
    /// <summary>
    /// The time `cache-teacher` took to build the salt-cached arm's cache (its stage time), and the cache's k; null without that arm.
    /// </summary>
    public double? SaltCacheSeconds { get; init; }
    public int? SaltCacheTopK { get; init; }
    public required IReadOnlyList<StageTiming> Stages { get; init; }
    /// <summary>
    /// The search's (ppl, params, FLOPs) view from its summary.json and pareto.json; null for a search run without the
    /// flops objective (a run directory from before the demo asked for it).
    /// </summary>
    public SearchObjectives? SearchFront { get; init; }
    /// <summary>Sub-networks searched on a sandwich-trained supernet and on its standard-trained control; null when not run.</summary>
    public SupernetResults? Supernet { get; init; }
}

/// <summary>
/// A member of the search's n-dimensional Pareto set (pareto.json): its strategy, non-embedding parameters, forward FLOPs
/// per token (SubnetCosts.FlopsPerToken, at the search's sequence length), validation perplexity and spec.
/// </summary>
public sealed record ParetoPoint(string Strategy, long Parameters, double Flops, double Perplexity, string Spec);

/// <summary>
/// The demo search's multi-objective view (`search --objectives ppl,params,flops`): the objectives, the n-dimensional
/// Pareto set of everything evaluated, each strategy's hypervolume in the search's common frame, the reference point in
/// the objectives' units (1.1 in each objective rescaled to [0, 1] by the best and worst value any strategy reached) and
/// the largest hypervolume possible (1.1^d).
/// </summary>
public sealed record SearchObjectives(IReadOnlyList<string> Objectives, IReadOnlyList<ParetoPoint> Pareto,
    IReadOnlyDictionary<string, double> Hypervolume, IReadOnlyDictionary<string, double> ReferencePoint, double Maximum);

/// <summary>
/// One parent the supernet stage searched: how it was trained after the teacher (sandwich or standard, `train-supernet`),
/// its whole network's final validation perplexity, and the evolutionary search's best sub-network on it (in place, the
/// same budget, space, evaluations and seed as the search on the plain teacher).
/// </summary>
public sealed record SupernetArm(string Name, string Description, double WholePerplexity, int Evaluated, long BestParameters,
    double BestPerplexity, string BestSpec);

/// <summary>The supernet stage of one seed: the steps each parent was trained after the teacher, and its arms.</summary>
public sealed record SupernetResults(int Steps, IReadOnlyList<SupernetArm> Arms);
