using Whittle.Native.Model;
using Whittle.Native.Search;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// NSGA-II, Pareto local search and stratified random search on a search space whose objectives are a discretised ZDT1
/// (Zitzler, Deb & Thiele 2000): x₁ = the embed_dim gene, the other genes feed g = 1 + 9·mean(x₂..x₄), f₁ = x₁,
/// f₂ = g·(1 − √(f₁/g)). The true Pareto front is every embed_dim with all other genes at their smallest (g = 1):
/// 16 points (x, 1 − √x). No model is run.
/// </summary>
public class MultiObjectiveSearchTests
{
    // Uniform space: embed_dim 4..64 step 4 (16 values), 1..4 layers, 1..4 heads, MLP width 8..64 step 8 (8 values): 2048 points.
    static readonly GptNeoXConfig Parent = new()
    {
        VocabSize = 16, HiddenSize = 64, NumLayers = 4, NumHeads = 4, IntermediateSize = 64, MaxPositionEmbeddings = 16,
    };

    static SearchSpace WholeSpace(SpaceKind kind = SpaceKind.Uniform) =>
        new(Parent, kind, ParameterCount.Of(Parent).Total, 0.999999, new StepSizes(Embed: 4, Heads: 1, Intermediate: 8));

    static double[] Zdt1(ActiveArchitecture a)
    {
        double x1 = (a.EmbedDim / 4 - 1) / 15.0;
        double rest = (a.Layers.Length - 1) / 3.0 + (a.Heads[0] - 1) / 3.0 + (a.Intermediate[0] / 8 - 1) / 7.0;
        double g = 1 + 9 * rest / 3;
        return [x1, g * (1 - Math.Sqrt(x1 / g))];
    }

    static readonly double[][] TrueFront = Enumerable.Range(0, 16).Select(i => new[] { i / 15.0, 1 - Math.Sqrt(i / 15.0) }).ToArray();
    static readonly double[] Reference = [1.1, 11];

    static int TrueFrontPointsFound(IEnumerable<Scored> found) =>
        TrueFront.Count(t => found.Any(s => Math.Abs(s.Objectives[0] - t[0]) < 1e-12 && Math.Abs(s.Objectives[1] - t[1]) < 1e-12));

    [Test]
    public void Nsga2FindsTheKnownFrontOfADiscreteZdt1()
    {
        double trueVolume = Pareto.Hypervolume(TrueFront, Reference);
        for (ulong seed = 0; seed < 5; seed++)
        {
            var found = Nsga2.Run(WholeSpace(), Zdt1, 300, seed, new Nsga2Options(Population: 20));
            Assert.That(found.Select(s => s.Key).Distinct().Count(), Is.EqualTo(300), "300 distinct candidates");
            // Random search over the 2048 points sees each front point with probability 300/2048, about 2.3 of 16 on average.
            Assert.That(TrueFrontPointsFound(found), Is.GreaterThanOrEqualTo(12), $"seed {seed}: most of the 16 true front points");
            double volume = Pareto.Hypervolume(found.Select(s => s.Objectives).ToList(), Reference);
            Assert.That(volume, Is.LessThanOrEqualTo(trueVolume + 1e-12), "nothing beats the true front");
            Assert.That(volume, Is.GreaterThanOrEqualTo(0.99 * trueVolume), $"seed {seed}");
        }
    }

    [Test]
    public void Nsga2BeatsRandomSamplingAtEqualEvaluations()
    {
        for (ulong seed = 0; seed < 5; seed++)
        {
            var nsga = Nsga2.Run(WholeSpace(), Zdt1, 150, seed);
            var random = Strategies.Random(WholeSpace(), a => 0, 150, seed).Select(e => Zdt1(e.Architecture)).ToList();
            Assert.That(Pareto.Hypervolume(nsga.Select(s => s.Objectives).ToList(), Reference),
                Is.GreaterThan(Pareto.Hypervolume(random, Reference)), $"seed {seed}");
        }
    }

    [Test]
    public void Nsga2IsAFunctionOfItsSeedSoALongerRunExtendsAShorterOne()
    {
        // What --resume relies on: the same seed proposes the same candidates in the same order, so a run of 80 starts
        // with the 50 of a run of 50 (answered from the history), whatever the objective function costs.
        var shorter = Nsga2.Run(WholeSpace(SpaceKind.PerLayer), Zdt1, 50, 7).Select(s => s.Key).ToList();
        var longer = Nsga2.Run(WholeSpace(SpaceKind.PerLayer), Zdt1, 80, 7).Select(s => s.Key).ToList();
        Assert.That(longer.Take(50), Is.EqualTo(shorter));
        Assert.That(Nsga2.Run(WholeSpace(SpaceKind.PerLayer), Zdt1, 50, 8).Select(s => s.Key), Is.Not.EqualTo(shorter));
    }

    [Test]
    public void LocalSearchNeighbourhoodIsOneGridStepOnOneGene()
    {
        var space = WholeSpace();
        // embed 32 (index 7), 2 layers, 2 heads, width 24 (index 2): each of the four genes moves one step down or up.
        var g = space.Canonical(new Genome(7, 2, new bool[4], [1, 1, 1, 1], [2, 2, 2, 2]));
        var keys = LocalSearch.Neighbours(space, g).Select(n => SubnetSpec.Key(space.ToArchitecture(n))).ToHashSet();
        string K(int e, int l, int h, int m) => SubnetSpec.Key(new ActiveArchitecture(e, Enumerable.Range(0, l).ToArray(),
            Enumerable.Repeat(h, l).ToArray(), Enumerable.Repeat(m, l).ToArray()));
        Assert.That(keys, Is.EquivalentTo(new[]
        {
            K(28, 2, 2, 24), K(36, 2, 2, 24), K(32, 1, 2, 24), K(32, 3, 2, 24), K(32, 2, 1, 24), K(32, 2, 3, 24),
            K(32, 2, 2, 16), K(32, 2, 2, 32),
        }));
        // At the smallest corner only the upward steps remain.
        Assert.That(LocalSearch.Neighbours(space, space.Smallest()), Has.Count.EqualTo(4));
        // Per layer: embed ±1, count ±1, and heads ±1 and width ±1 of each of the 2 kept layers: 2 + 2 + 2·2·2.
        var per = WholeSpace(SpaceKind.PerLayer);
        var pg = per.Canonical(new Genome(7, 2, new bool[4], [1, 1, 1, 1], [2, 2, 2, 2]));
        Assert.That(LocalSearch.Neighbours(per, pg), Has.Count.EqualTo(12));
    }

    [Test]
    public void ParetoLocalSearchApproachesTheKnownFront()
    {
        double trueVolume = Pareto.Hypervolume(TrueFront, Reference);
        for (ulong seed = 0; seed < 5; seed++)
        {
            var found = LocalSearch.Run(WholeSpace(), Zdt1, 300, seed);
            Assert.That(found.Select(s => s.Key).Distinct().Count(), Is.EqualTo(300));
            Assert.That(TrueFrontPointsFound(found), Is.GreaterThanOrEqualTo(12), $"seed {seed}");
            Assert.That(Pareto.Hypervolume(found.Select(s => s.Objectives).ToList(), Reference),
                Is.GreaterThanOrEqualTo(0.99 * trueVolume), $"seed {seed}");
            var again = LocalSearch.Run(WholeSpace(), Zdt1, 300, seed);
            Assert.That(again.Select(s => s.Key), Is.EqualTo(found.Select(s => s.Key)), "seeded");
        }
    }

    [Test]
    public void TheFlopsObjectiveOfAPerLayerSubNetworkIsAHandCount()
    {
        // d = 8, V = 10, head size 4, T = 5. Layer 0 with 2 heads and 16 neurons: the projections are d×3hD (8×24), hD×d
        // (8×8), d×m and m×d (8×16 twice): 2·(192 + 64 + 256) = 1024, attention q·kᵀ and a·v 2·2·T·h·D = 160. Layer 1
        // with 1 head and 8 neurons: 2·(96 + 32 + 128) = 512, attention 80. The unembedding 2·V·d = 160.
        var c = new GptNeoXConfig { VocabSize = 10, HiddenSize = 8, NumLayers = 2, NumHeads = 2, IntermediateSize = 16 };
        var a = new ActiveArchitecture(8, [0, 1], [2, 1], [16, 8]);
        var f = SubnetCosts.FlopsPerToken(c, a, context: 5);
        Assert.That((f.NonEmbedding, f.Embedding), Is.EqualTo((1184L + 592L, 160L)));
        var entry = new HistoryEntry("x", SubnetSpec.Key(a), SubnetSpec.ToJson(a), ParameterCount.Of(c, a), f, Math.Log(20), 0);
        var goals = ObjectiveSet.Parse("ppl,flops,params");
        Assert.That(goals.Vector(entry, p => p.NonEmbedding, () => throw new AssertionException("no latency asked for")),
            Is.EqualTo(new[] { 20, 1936, ParameterCount.Of(c, a).NonEmbedding }).Within(1e-9));
    }

    [Test]
    public void BinEdgesAreLinearOrGeometric()
    {
        Assert.That(new ParameterBins(100, 200, 4, BinSpacing.Linear).Edges, Is.EqualTo(new long[] { 100, 125, 150, 175, 200 }));
        var log = new ParameterBins(100, 1600, 4, BinSpacing.Log);
        Assert.That(log.Edges, Is.EqualTo(new long[] { 100, 200, 400, 800, 1600 }));
        Assert.That(new[] { 99, 100, 199, 200, 1599, 1600, 1601 }.Select(p => log.BinOf(p)), Is.EqualTo(new[] { -1, 0, 0, 1, 3, 3, -1 }));
        Assert.Throws<WhittleException>(() => new ParameterBins(100, 200, 0, BinSpacing.Linear));
        Assert.Throws<WhittleException>(() => new ParameterBins(100, 102, 4, BinSpacing.Linear));
        Assert.Throws<WhittleException>(() => ParameterBins.ParseSpacing("cubic"));
    }

    [Test]
    public void StratifiedSearchSpreadsCandidatesOverTheBins([Values(BinSpacing.Linear, BinSpacing.Log)] BinSpacing spacing)
    {
        var space = WholeSpace(SpaceKind.PerLayer);
        var bins = ParameterBins.Over(space, 6, spacing);
        Assert.That(bins.Low, Is.EqualTo(space.Params(space.Smallest())), "the range starts at the smallest sub-network");
        Assert.That(bins.High, Is.EqualTo(space.Params(space.Largest())));
        var result = bins.Search(space, a => 0, 60, 3);
        Assert.That(result.EmptyBins, Is.Empty);
        Assert.That(result.Candidates, Has.Count.EqualTo(60));
        foreach (var (c, b) in result.Candidates)
        {
            long p = ParameterCount.Of(Parent, c.Architecture).Total;
            // A bin's window is [edge_b − 1, edge_{b+1}] (one parameter of float rounding at the lower edge).
            Assert.That(p, Is.InRange(bins.Edges[b] - 1, bins.Edges[b + 1]), $"bin {b}");
        }
        // Round-robin: every bin gets 60 / 6 candidates; uniform sampling would crowd the middle sizes instead.
        Assert.That(result.Candidates.GroupBy(c => c.Bin).Select(g => g.Count()), Is.All.EqualTo(10));
    }
}
