using Whittle.Native.Search;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// Non-dominated sorting and crowding distance against examples worked by hand (Deb et al. 2002's definitions), and
/// the hypervolume against hand-computed volumes (rectangle sums, inclusion–exclusion of boxes) and against a brute
/// count of unit cells for random integer points, in 2 and 3 dimensions.
/// </summary>
public class ParetoTests
{
    [Test]
    public void DominanceNeedsNoWorseEverywhereAndBetterSomewhere()
    {
        Assert.That(Pareto.Dominates([1, 2], [1, 3]), Is.True);
        Assert.That(Pareto.Dominates([1, 3], [1, 3]), Is.False, "equal points do not dominate each other");
        Assert.That(Pareto.Dominates([0, 4], [1, 3]), Is.False);
        Assert.That(Pareto.Dominates([1, 1, 1], [1, 1, 2]), Is.True);
    }

    [Test]
    public void NonDominatedSortingOfAHandWorkedSet()
    {
        //  A(1,5) B(2,3) C(3,1) are mutually non-dominated. D(2,4) is dominated by B only; F(3,3) by B and C.
        //  E(4,4) by B, C, D, F, so it waits for front 1 to go; G(5,5) by A and E among others: the last front.
        double[][] p = [[1, 5], [2, 3], [3, 1], [2, 4], [4, 4], [3, 3], [5, 5]];
        var fronts = Pareto.Sort(p);
        Assert.That(fronts, Is.EqualTo(new[] { new[] { 0, 1, 2 }, new[] { 3, 5 }, new[] { 4 }, new[] { 6 } }));
        Assert.That(Pareto.NonDominated(p), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(Pareto.NonDominated([[1, 1], [1, 1]]), Is.EqualTo(new[] { 0, 1 }), "duplicates share a front");
    }

    [Test]
    public void CrowdingDistanceOfAHandWorkedFront()
    {
        // Front (0,10) (1,6) (3,2) (10,0); both objectives span 10. Objective 1 sorted 0,1,3,10: (1,6) gets (3−0)/10 = 0.3,
        // (3,2) gets (10−1)/10 = 0.9. Objective 2 sorted 0,2,6,10: (3,2) gets (6−0)/10 = 0.6, (1,6) gets (10−2)/10 = 0.8.
        double[][] p = [[3, 2], [0, 10], [10, 0], [1, 6], [50, 50]];
        var d = Pareto.Crowding(p, [0, 1, 2, 3]);
        Assert.That(d[0], Is.EqualTo(1.5).Within(1e-12));
        Assert.That(d[3], Is.EqualTo(1.1).Within(1e-12));
        Assert.That(d[1], Is.EqualTo(double.PositiveInfinity));
        Assert.That(d[2], Is.EqualTo(double.PositiveInfinity));
        // A front that is flat in one objective adds nothing for it (no 0/0).
        var flat = Pareto.Crowding([[1, 5], [2, 5], [3, 5]], [0, 1, 2]);
        Assert.That(flat[1], Is.EqualTo(1.0).Within(1e-12));
    }

    [Test]
    public void SurvivorsTakeWholeFrontsThenTheMostCrowdedApart()
    {
        // Fronts: {0,1,2,3} (the crowding example) and {4}. Keeping 3 takes front 0's two extremes (∞) and (3,2) (1.5 > 1.1).
        double[][] p = [[3, 2], [0, 10], [10, 0], [1, 6], [50, 50]];
        Assert.That(Nsga2.SurvivorIndices(p, 3), Is.EquivalentTo(new[] { 0, 1, 2 }));
        Assert.That(Nsga2.SurvivorIndices(p, 5), Is.EquivalentTo(new[] { 0, 1, 2, 3, 4 }));
        var (rank, _) = Nsga2.RankAndCrowding(p);
        Assert.That(rank, Is.EqualTo(new[] { 0, 0, 0, 0, 1 }));
    }

    [Test]
    public void HypervolumeOfHandComputedSets()
    {
        // 2-D staircase (1,3) (2,2) (3,1) under (4,4): strips 3·1 + 2·1 + 1·1 = 6; a dominated point and one outside the
        // reference box change nothing.
        Assert.That(Pareto.Hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]), Is.EqualTo(6));
        Assert.That(Pareto.Hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0], [0, 4]], [4, 4]), Is.EqualTo(6));
        Assert.That(Pareto.Hypervolume([], [4, 4]), Is.EqualTo(0));
        // 3-D: one box; two boxes 2·2·1 + 1·1·2 − their overlap 1·1·1 = 5; three boxes of 2 with pairwise overlaps 1 and a
        // triple overlap 1 by inclusion–exclusion: 6 − 3 + 1 = 4.
        Assert.That(Pareto.Hypervolume([[1, 1, 1]], [2, 2, 2]), Is.EqualTo(1));
        Assert.That(Pareto.Hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]), Is.EqualTo(5));
        Assert.That(Pareto.Hypervolume([[0, 1, 1], [1, 0, 1], [1, 1, 0]], [2, 2, 2]), Is.EqualTo(4));
        // Non-integer: (0.5, 0.25) under (1, 1) is 0.5 · 0.75.
        Assert.That(Pareto.Hypervolume([[0.5, 0.25]], [1, 1]), Is.EqualTo(0.375).Within(1e-15));
    }

    [Test]
    public void HypervolumeEqualsACountOfDominatedUnitCells([Values(2, 3, 4)] int dims)
    {
        // Integer points in [0, 6)^d under the reference 6: the dominated region is a union of unit cells, and a cell
        // [c, c+1] is dominated exactly when some point p ≤ c in every objective. Counting cells is an independent method.
        const int R = 6;
        var rng = new Whittle.Native.Tensors.Rng(11);
        for (int trial = 0; trial < 20; trial++)
        {
            var points = Enumerable.Range(0, 1 + rng.NextInt(12))
                .Select(_ => Enumerable.Range(0, dims).Select(_ => (double)rng.NextInt(R + 1)).ToArray()).ToList();
            long cells = 0;
            var c = new int[dims];
            for (long n = 0; n < (long)Math.Pow(R, dims); n++)
            {
                long rest = n;
                for (int k = 0; k < dims; k++) { c[k] = (int)(rest % R); rest /= R; }
                if (points.Any(p => Enumerable.Range(0, dims).All(k => p[k] <= c[k]))) cells++;
            }
            Assert.That(Pareto.Hypervolume(points, Enumerable.Repeat((double)R, dims).ToArray()), Is.EqualTo(cells), $"trial {trial}");
        }
    }

    [Test]
    public void TheCommonFrameRescalesEachObjectiveToItsRange()
    {
        // Two objectives spanning [10, 30] and [100, 500]: the corner (10, 100) scales to (0, 0), the reference to (1.1, 1.1),
        // i.e. (32, 540) in the objectives' units; the corner alone dominates 1.1², the worst point (30, 500) 0.1².
        var frame = HypervolumeFrame.Of([[10, 500], [30, 100], [20, 300]]);
        Assert.That(frame.Reference, Is.EqualTo(new[] { 32.0, 540.0 }).Within(1e-12));
        Assert.That(frame.Hypervolume([[10, 100]]), Is.EqualTo(1.21).Within(1e-12));
        Assert.That(frame.Hypervolume([[30, 500]]), Is.EqualTo(0.01).Within(1e-12));
    }
}
