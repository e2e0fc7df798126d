// Policy: search strategies only propose candidates and read back a fitness (lower is better); what a fitness costs,
// caching, history and resume belong to the caller's fitness function. A strategy's evaluation budget counts the
// DISTINCT candidates it asks about, so strategies compare at equal evaluations, and everything is a deterministic
// function of the seed (Rng), so a resumed run re-proposes the same candidates and finds them in its cache.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public sealed record EvolutionOptions(
    int Population = 16, int Elites = 2, int Tournament = 3, double CrossoverRate = 0.5, double MutationRate = 0.3, int MaxStep = 2);

public sealed record Evaluated(ActiveArchitecture Architecture, string Key, double Fitness);

public static class Strategies
{
    /// <summary>Random search: distinct random candidates inside the budget window.</summary>
    public static List<Evaluated> Random(SearchSpace space, Func<ActiveArchitecture, double> fitness, int evaluations, ulong seed)
    {
        var rng = new Rng(seed);
        var seen = new Dictionary<string, Evaluated>();
        int misses = 0;
        while (seen.Count < evaluations && misses < 100 * evaluations + 1000)
        {
            var g = space.SampleInBudget(rng);
            if (g is null) break;
            var a = space.ToArchitecture(g);
            string key = SubnetSpec.Key(a);
            if (seen.ContainsKey(key)) { misses++; continue; }
            seen[key] = new Evaluated(a, key, fitness(a));
        }
        return seen.Values.ToList();
    }

    /// <summary>
    /// Generational evolution: a random initial population; each next generation keeps the best <c>Elites</c> and fills
    /// the rest with children of tournament-selected parents (uniform crossover with probability <c>CrossoverRate</c>,
    /// then per-gene mutation), each repaired to the budget window and evaluated if not seen before.
    /// </summary>
    public static List<Evaluated> Evolution(
        SearchSpace space, Func<ActiveArchitecture, double> fitness, int evaluations, ulong seed, EvolutionOptions? options = null)
    {
        var o = options ?? new EvolutionOptions();
        if (o.Population < 2 || o.Elites < 0 || o.Elites >= o.Population || o.Tournament < 1)
            throw new WhittleException($"evolution needs population ≥ 2, 0 ≤ elites < population and tournament ≥ 1, got {o}");
        var rng = new Rng(seed);
        var seen = new Dictionary<string, (Genome G, Evaluated E)>();
        int stale = 0, staleLimit = 50 * o.Population + 1000;

        (Genome, Evaluated)? Consider(Genome? g)
        {
            if (g is null) { stale++; return null; }
            var a = space.ToArchitecture(g);
            string key = SubnetSpec.Key(a);
            if (seen.ContainsKey(key)) { stale++; return null; }
            var e = new Evaluated(a, key, fitness(a));
            seen[key] = (g, e);
            return (g, e);
        }

        var population = new List<(Genome G, Evaluated E)>();
        while (population.Count < o.Population && seen.Count < evaluations && stale < staleLimit)
            if (Consider(space.SampleInBudget(rng)) is { } x) population.Add(x);

        while (seen.Count < evaluations && stale < staleLimit && population.Count > 0)
        {
            population.Sort((a, b) => a.E.Fitness.CompareTo(b.E.Fitness));
            var next = population.Take(o.Elites).ToList();
            (Genome G, Evaluated E) Tournament()
            {
                var best = population[rng.NextInt(population.Count)];
                for (int i = 1; i < o.Tournament; i++)
                {
                    var c = population[rng.NextInt(population.Count)];
                    if (c.E.Fitness < best.E.Fitness) best = c;
                }
                return best;
            }
            while (next.Count < o.Population && seen.Count < evaluations && stale < staleLimit)
            {
                var p1 = Tournament();
                var child = rng.NextDouble() < o.CrossoverRate ? space.Crossover(p1.G, Tournament().G, rng) : p1.G;
                child = space.Mutate(child, rng, o.MutationRate, o.MaxStep);
                // After many duplicates in a row the population has converged: inject a random immigrant.
                var candidate = stale > 0 && stale % (5 * o.Population) == 0 ? space.SampleInBudget(rng) : space.Repair(child, rng);
                if (Consider(candidate) is { } x) next.Add(x);
            }
            population = next;
        }
        return seen.Values.Select(v => v.E).ToList();
    }
}
