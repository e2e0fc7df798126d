// Policy: multi-objective local search, Pareto local search (Paquete, Chiarandini & Stützle 2004): an archive of
// mutually non-dominated candidates; an unexplored archive member is picked at random, its whole neighbourhood is
// evaluated (in random order) and every neighbour not dominated by the archive joins it (removing what it dominates).
// When every archive member has been explored the search restarts from a random candidate of the budget window.
// The neighbourhood is one grid step on one gene: embed_dim ±1 step; the layer count ±1 (uniform, per-layer) or one
// layer kept/dropped (layers space); the head count or MLP width ±1 step (of the shared gene, or of one kept layer in
// the per-layer space). Neighbours outside the budget window are not evaluated. Seeded and resumable like the others.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public static class LocalSearch
{
    /// <summary>The distinct in-budget genomes one grid step on one gene away from <paramref name="g"/> (canonical, g excluded).</summary>
    public static List<Genome> Neighbours(SearchSpace space, Genome g)
    {
        int L = space.Parent.NumLayers;
        var here = SubnetSpec.Key(space.ToArchitecture(g));
        var result = new Dictionary<string, Genome>();
        void Try(Genome n)
        {
            var c = space.Canonical(n);   // clamps a step off the grid back onto g itself, which is then skipped
            var key = SubnetSpec.Key(space.ToArchitecture(c));
            if (key != here && space.InBudget(space.Params(c))) result.TryAdd(key, c);
        }
        foreach (int dir in new[] { -1, +1 })
        {
            Try(g with { Embed = g.Embed + dir });
            if (space.Kind != SpaceKind.Layers) Try(g with { Count = g.Count + dir });
            int genes = space.Kind == SpaceKind.PerLayer ? g.Count : 1;
            for (int l = 0; l < genes; l++)
            {
                var h = (int[])g.Heads.Clone(); h[l] += dir; Try(g with { Heads = h });
                var m = (int[])g.Inter.Clone(); m[l] += dir; Try(g with { Inter = m });
            }
        }
        if (space.Kind == SpaceKind.Layers)
            for (int l = 0; l < L; l++) { var k = (bool[])g.Keep.Clone(); k[l] = !k[l]; if (k.Any(x => x)) Try(g with { Keep = k }); }
        return result.Values.ToList();
    }

    /// <summary>Pareto local search; the candidates in evaluation order.</summary>
    public static List<Scored> Run(SearchSpace space, Func<ActiveArchitecture, double[]> objectives, int evaluations, ulong seed)
    {
        var rng = new Rng(seed);
        var seen = new Dictionary<string, Scored>();
        var order = new List<Scored>();
        var genomes = new Dictionary<string, Genome>();
        var archive = new List<string>();      // mutually non-dominated keys, in the order they joined
        var explored = new HashSet<string>();
        int stale = 0, staleLimit = 100 * evaluations + 1000;

        Scored Evaluate(Genome g, string key)
        {
            var s = new Scored(space.ToArchitecture(g), key, objectives(space.ToArchitecture(g)));
            seen[key] = s; order.Add(s); genomes[key] = g;
            if (!archive.Any(k => Pareto.Dominates(seen[k].Objectives, s.Objectives)))
            {
                archive.RemoveAll(k => Pareto.Dominates(s.Objectives, seen[k].Objectives));
                archive.Add(key);
            }
            return s;
        }

        while (seen.Count < evaluations && stale < staleLimit)
        {
            var frontier = archive.Where(k => !explored.Contains(k)).ToList();
            Genome g;
            if (frontier.Count > 0) g = genomes[frontier[rng.NextInt(frontier.Count)]];
            else
            {
                // Restart: the archive is a local optimum; explore from a new random point (even if the archive dominates it).
                if (space.SampleInBudget(rng) is not { } start) break;
                string sk = SubnetSpec.Key(space.ToArchitecture(start));
                if (seen.ContainsKey(sk)) { stale++; continue; }
                Evaluate(start, sk);
                g = start;
            }
            explored.Add(SubnetSpec.Key(space.ToArchitecture(g)));
            var neighbours = LocalSearch.Neighbours(space, g);
            for (int i = neighbours.Count - 1; i > 0; i--)   // Fisher–Yates: a seeded random order
            {
                int j = rng.NextInt(i + 1);
                (neighbours[i], neighbours[j]) = (neighbours[j], neighbours[i]);
            }
            foreach (var n in neighbours)
            {
                if (seen.Count >= evaluations) break;
                string key = SubnetSpec.Key(space.ToArchitecture(n));
                if (!seen.ContainsKey(key)) Evaluate(n, key);
            }
        }
        return order;
    }
}
