// Policy: the supernet stage's findings (whittle's first stage, issue 17). What is compared, per seed: the evolutionary
// search's best sub-network, evaluated in place, on three parents at the same budget, space, evaluations and search seed
// (so the three searches start from the same candidates): the plain (importance-permuted) teacher, the teacher trained
// on with the sandwich rule, and the teacher trained on for the same steps, data order and schedule with standard
// training. Sandwich against the plain teacher is the claim the issue names; sandwich against standard is its control:
// both trained parents had extra steps, and only this comparison tells the sandwich rule from the extra training.
// Gains are relative perplexity gaps, (other − sandwich) / other, positive when the sandwich parent's best is lower.
// Sentences follow DemoFindings' rule: an effect that does not appear starts with "Not reproduced in this run:".
using static Whittle.Native.Demo.DemoFormat;

namespace Whittle.Native.Demo;

/// <summary>
/// One seed's supernet findings: the searched best perplexity on each parent (PlainBest from the seed's search of the
/// plain teacher), the sandwich parent's gains over the other two, the trained parents' whole-network perplexities, and
/// the report's sentences.
/// </summary>
public sealed record SupernetFindings(double? PlainBest, double? SandwichBest, double? StandardBest, double? GainOverPlain,
    double? GainOverStandard, double? SandwichWhole, double? StandardWhole, IReadOnlyList<string> Sentences);

public static class DemoSupernet
{
    public const string Sandwich = "sandwich", Standard = "standard";

    /// <summary>(other − arm) / other for two perplexities, null unless both are finite and positive.</summary>
    public static double? Gain(double? other, double? arm) =>
        other is { } o && arm is { } a && double.IsFinite(o) && double.IsFinite(a) && o > 0 && a > 0 ? (o - a) / o : null;

    static string LowerOrHigher(double gain) => gain > 0 ? $"{Percent(gain)} lower" : $"{Percent(-gain)} higher";

    public static SupernetFindings Of(DemoResults r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var sentences = new List<string>();
        double? plain = r.Search.Where(p => p.Strategy == DemoFindings.Evolution && double.IsFinite(p.Perplexity))
            .Select(p => (double?)p.Perplexity).Min();
        var sandwich = r.Supernet?.Arms.FirstOrDefault(a => a.Name == Sandwich);
        var standard = r.Supernet?.Arms.FirstOrDefault(a => a.Name == Standard);
        double? gainPlain = Gain(plain, sandwich?.BestPerplexity), gainStandard = Gain(standard?.BestPerplexity, sandwich?.BestPerplexity);
        var findings = new SupernetFindings(plain, sandwich?.BestPerplexity, standard?.BestPerplexity, gainPlain, gainStandard,
            sandwich?.WholePerplexity, standard?.WholePerplexity, sentences);
        if (r.Supernet is null)
        {
            sentences.Add("The supernet stage was not run.");
            return findings;
        }
        if (sandwich is null || plain is null || gainPlain is null)
        {
            sentences.Add($"The supernet comparison needs the {Sandwich} parent's search and the plain teacher's evolutionary search, " +
                "each with a finite best; this run lacks one.");
            return findings;
        }
        string steps = Count(r.Supernet.Steps);
        sentences.Add((gainPlain > 0 ? "" : DemoFindings.NotReproduced)
            + $"On the teacher trained {steps} more steps as a sandwich supernet, the evolutionary search's best sub-network has "
            + $"perplexity {Perplexity(sandwich.BestPerplexity)} ({Si(sandwich.BestParameters)} parameters); on the plain teacher "
            + $"{Perplexity(plain.Value)}: {LowerOrHigher(gainPlain.Value)}.");
        if (standard is not null && gainStandard is { } gs)
            sentences.Add((gs > 0 ? "" : DemoFindings.NotReproduced)
                + $"Against the control trained the same {steps} steps with standard training (best "
                + $"{Perplexity(standard.BestPerplexity)}), the sandwich parent's best is {LowerOrHigher(gs)}"
                + (gs > 0 ? ": the gain comes from the sandwich rule, not only from the extra steps."
                    : ": what the sandwich parent gains over the plain teacher the extra steps give as well."));
        var whole = string.Join(", ", r.Supernet.Arms.Select(a => $"{a.Name} {Perplexity(a.WholePerplexity)}"));
        sentences.Add($"The whole network's validation perplexity: the plain teacher {Perplexity(Math.Exp(r.TeacherValLoss))}, {whole} "
            + "(sandwich steps train the whole network too, with three sub-networks' gradients beside it under one clip).");
        return findings;
    }
}
