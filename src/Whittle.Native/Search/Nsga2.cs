// Policy: NSGA-II (Deb et al., IEEE TEVC 2002) over a search space, every objective minimised. Like the other strategies
// it only proposes candidates and reads back their objectives; the evaluation budget counts DISTINCT candidates and
// everything is a deterministic function of the seed, so a resumed run re-proposes the same candidates and the caller's
// objective function answers them from its history (the population is never stored: it is recomputed).
// One generation: binary tournament on (rank, crowding distance) picks parents, uniform crossover with probability
// CrossoverRate, per-gene mutation, repair to the budget window; the N parents and up to N new children are merged and
// the next population is filled front by front, the last front that does not fit by decreasing crowding distance.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public sealed record Nsga2Options(int Population = 16, double CrossoverRate = 0.9, double MutationRate = 0.3, int MaxStep = 2);

/// <summary>A candidate and its objective vector (all minimised).</summary>
public sealed record Scored(ActiveArchitecture Architecture, string Key, double[] Objectives);

public static class Nsga2
{
    public static List<Scored> Run(
        SearchSpace space, Func<ActiveArchitecture, double[]> objectives, int evaluations, ulong seed, Nsga2Options? options = null)
    {
        var o = options ?? new Nsga2Options();
        if (o.Population < 2 || o.CrossoverRate is < 0 or > 1 || o.MutationRate is < 0 or > 1 || o.MaxStep < 1)
            throw new WhittleException($"NSGA-II needs population ≥ 2, rates in [0, 1] and max step ≥ 1, got {o}");
        var rng = new Rng(seed);
        var seen = new Dictionary<string, Scored>();
        var order = new List<Scored>();
        int stale = 0, staleLimit = 50 * o.Population + 1000;

        (Genome G, Scored S)? Consider(Genome? g)
        {
            if (g is null) { stale++; return null; }
            var a = space.ToArchitecture(g);
            string key = SubnetSpec.Key(a);
            if (seen.ContainsKey(key)) { stale++; return null; }
            var s = new Scored(a, key, objectives(a));
            seen[key] = s;
            order.Add(s);
            return (g, s);
        }

        var population = new List<(Genome G, Scored S)>();
        while (population.Count < o.Population && seen.Count < evaluations && stale < staleLimit)
            if (Consider(space.SampleInBudget(rng)) is { } x) population.Add(x);

        while (seen.Count < evaluations && stale < staleLimit && population.Count > 0)
        {
            var (rank, crowding) = RankAndCrowding(population.Select(p => p.S.Objectives).ToList());
            int Tournament()
            {
                int a = rng.NextInt(population.Count), b = rng.NextInt(population.Count);
                return Better(a, b, rank, crowding) ? a : b;
            }
            var children = new List<(Genome G, Scored S)>();
            while (children.Count < o.Population && seen.Count < evaluations && stale < staleLimit)
            {
                var p1 = population[Tournament()].G;
                var child = rng.NextDouble() < o.CrossoverRate ? space.Crossover(p1, population[Tournament()].G, rng) : p1;
                child = space.Mutate(child, rng, o.MutationRate, o.MaxStep);
                // After many duplicates in a row the population has converged: inject a random immigrant.
                var candidate = stale > 0 && stale % (5 * o.Population) == 0 ? space.SampleInBudget(rng) : space.Repair(child, rng);
                if (Consider(candidate) is { } x) children.Add(x);
            }
            population = Survivors(population.Concat(children).ToList(), o.Population);
        }
        return order;
    }

    /// <summary>Crowded comparison (Deb et al. §III-C): lower rank wins, then larger crowding distance; a full tie keeps a.</summary>
    static bool Better(int a, int b, int[] rank, double[] crowding) =>
        rank[a] < rank[b] || (rank[a] == rank[b] && crowding[a] >= crowding[b]);

    /// <summary>The front index of every point and its crowding distance within that front.</summary>
    public static (int[] Rank, double[] Crowding) RankAndCrowding(IReadOnlyList<double[]> points)
    {
        var rank = new int[points.Count];
        var crowding = new double[points.Count];
        var fronts = Pareto.Sort(points);
        for (int f = 0; f < fronts.Count; f++)
        {
            var d = Pareto.Crowding(points, fronts[f]);
            for (int i = 0; i < fronts[f].Count; i++) { rank[fronts[f][i]] = f; crowding[fronts[f][i]] = d[i]; }
        }
        return (rank, crowding);
    }

    static List<(Genome G, Scored S)> Survivors(List<(Genome G, Scored S)> merged, int size) =>
        SurvivorIndices(merged.Select(m => m.S.Objectives).ToList(), size).Select(i => merged[i]).ToList();

    /// <summary>
    /// Environmental selection: the indices kept, whole fronts while they fit, then the last front by decreasing crowding
    /// distance (ties by index), in the order they are taken.
    /// </summary>
    public static List<int> SurvivorIndices(IReadOnlyList<double[]> points, int size)
    {
        var kept = new List<int>();
        foreach (var front in Pareto.Sort(points))
        {
            if (kept.Count + front.Count <= size) { kept.AddRange(front); continue; }
            var d = Pareto.Crowding(points, front);
            kept.AddRange(Enumerable.Range(0, front.Count).OrderByDescending(i => d[i]).ThenBy(i => i)
                .Take(size - kept.Count).Select(i => front[i]));
            break;
        }
        return kept;
    }
}
