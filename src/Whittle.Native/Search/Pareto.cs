// Policy: multi-objective comparisons of search candidates, every objective MINIMISED (perplexity, parameters, FLOPs,
// latency). Non-dominated sorting and crowding distance follow Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist
// multiobjective genetic algorithm: NSGA-II" (IEEE TEVC 2002), sections III-A and III-B. Hypervolume is exact in any
// dimension (the "hypervolume by slicing objectives" recursion of While et al., IEEE TEVC 2006: sort by the last
// objective, sum slab thickness × the (d−1)-dimensional volume of the points below the slab), with a sweep for d = 2.
// Every function is deterministic: ties keep input order, so a seeded search that calls them repeats itself exactly.
namespace Whittle.Native.Search;

public static class Pareto
{
    /// <summary>a dominates b: no worse in every objective and strictly better in at least one.</summary>
    public static bool Dominates(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        if (a.Count != b.Count) throw new ArgumentException($"objective vectors of {a.Count} and {b.Count} entries");
        bool better = false;
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] > b[i]) return false;
            if (a[i] < b[i]) better = true;
        }
        return better;
    }

    /// <summary>
    /// Fast non-dominated sort: fronts of point indices, front 0 the non-dominated points, front k those dominated only by
    /// fronts below k. Each front lists its indices in increasing order. O(M·N²) for N points of M objectives.
    /// </summary>
    public static List<List<int>> Sort(IReadOnlyList<double[]> points)
    {
        int n = points.Count;
        var dominated = new List<int>[n];   // S_p: the points p dominates
        var count = new int[n];             // n_p: how many points dominate p
        var fronts = new List<List<int>> { new() };
        for (int p = 0; p < n; p++)
        {
            dominated[p] = new List<int>();
            for (int q = 0; q < n; q++)
            {
                if (p == q) continue;
                if (Dominates(points[p], points[q])) dominated[p].Add(q);
                else if (Dominates(points[q], points[p])) count[p]++;
            }
            if (count[p] == 0) fronts[0].Add(p);
        }
        for (int i = 0; fronts[i].Count > 0; i++)
        {
            var next = new List<int>();
            foreach (int p in fronts[i])
                foreach (int q in dominated[p])
                    if (--count[q] == 0) next.Add(q);
            next.Sort();
            fronts.Add(next);
        }
        fronts.RemoveAt(fronts.Count - 1);   // the empty sentinel
        return fronts;
    }

    /// <summary>Indices of the non-dominated points (front 0), increasing. Equal points do not dominate each other.</summary>
    public static List<int> NonDominated(IReadOnlyList<double[]> points) => points.Count == 0 ? [] : Sort(points)[0];

    /// <summary>
    /// Crowding distance of each member of one front (same order as <paramref name="front"/>): per objective the members
    /// are sorted by value, the two extremes get +∞, every other member adds (next − previous) / (max − min). An objective
    /// on which the whole front is equal adds nothing (no division by zero).
    /// </summary>
    public static double[] Crowding(IReadOnlyList<double[]> points, IReadOnlyList<int> front)
    {
        int n = front.Count;
        var distance = new double[n];
        if (n == 0) return distance;
        int m = points[front[0]].Length;
        for (int k = 0; k < m; k++)
        {
            var order = Enumerable.Range(0, n).OrderBy(i => points[front[i]][k]).ThenBy(i => i).ToArray();
            double lo = points[front[order[0]]][k], hi = points[front[order[^1]]][k];
            distance[order[0]] = distance[order[^1]] = double.PositiveInfinity;
            if (hi <= lo) continue;
            for (int j = 1; j < n - 1; j++)
                distance[order[j]] += (points[front[order[j + 1]]][k] - points[front[order[j - 1]]][k]) / (hi - lo);
        }
        return distance;
    }

    /// <summary>
    /// The volume of objective space dominated by the points and bounded by <paramref name="reference"/> (every
    /// objective minimised, so the region is ∪ [p, r]). Points not strictly better than r in every objective add nothing.
    /// Exact; O(N log N) for 2 objectives, O(N^(d−1) log N) for d ≥ 3.
    /// </summary>
    public static double Hypervolume(IReadOnlyList<double[]> points, IReadOnlyList<double> reference)
    {
        int d = reference.Count;
        if (d < 1) throw new ArgumentException("the reference point needs at least one objective");
        var inside = new List<double[]>();
        foreach (var p in points)
        {
            if (p.Length != d) throw new ArgumentException($"a point has {p.Length} objectives, the reference point {d}");
            bool below = true;
            for (int i = 0; i < d; i++) below &= p[i] < reference[i];
            if (below) inside.Add(p);
        }
        var r = reference.ToArray();
        // Dominated points add no volume; dropping them first keeps the slicing recursion small.
        var front = NonDominated(inside).Select(i => inside[i]).ToList();
        return Volume(front, r, d);
    }

    static double Volume(List<double[]> points, double[] r, int d)
    {
        if (points.Count == 0) return 0;
        if (d == 1) return r[0] - points.Min(p => p[0]);
        if (d == 2)
        {
            // Sweep by the first objective: each point adds the strip between its second objective and the lowest so far.
            double volume = 0, floor = r[1];
            foreach (var p in points.OrderBy(p => p[0]).ThenBy(p => p[1]))
                if (p[1] < floor) { volume += (r[0] - p[0]) * (floor - p[1]); floor = p[1]; }
            return volume;
        }
        // Slices along the last objective: between consecutive values z_i < z_{i+1} the dominated region's cross-section
        // is the (d−1)-dimensional region of the points with last objective ≤ z_i.
        var sorted = points.OrderBy(p => p[d - 1]).ToList();
        double total = 0;
        for (int i = 0; i < sorted.Count; i++)
        {
            double top = i + 1 < sorted.Count ? sorted[i + 1][d - 1] : r[d - 1];
            double thickness = top - sorted[i][d - 1];
            if (thickness <= 0) continue;
            total += thickness * Volume(sorted.Take(i + 1).ToList(), r, d - 1);
        }
        return total;
    }
}
