// Policy: stratified random search (whittle's search offers it through syne-tune: random sub-networks spread over
// parameter bins, so small and large sub-networks are sampled alike instead of the middle sizes that uniform sampling
// of the genes favours). The searched parameter range [lo, hi] (the budget window, narrowed to the sizes the space can
// reach) is cut into Count bins with linear or logarithmic edges; bins are visited round-robin, and a bin's candidate is
// a random sample repaired into that bin's window (a search space with the same grids whose budget window is the bin).
// A bin no candidate can be repaired into, or whose sub-networks are used up, is skipped and reported, not retried forever.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public enum BinSpacing { Linear, Log }

/// <summary>Count bins over [Low, High] (parameters, as the space's budget measure counts them); bin i is [Edges[i], Edges[i+1]].</summary>
public sealed class ParameterBins
{
    public ParameterBins(long low, long high, int count, BinSpacing spacing)
    {
        if (count < 1) throw new WhittleException($"--bins must be at least 1, got {count}");
        if (low < 1 || high < low) throw new WhittleException($"parameter bins need 1 ≤ low ≤ high, got [{low}, {high}]");
        if (count > high - low + 1)
            throw new WhittleException($"--bins {count} is more than the {high - low + 1} parameter counts in [{low:N0}, {high:N0}]");
        Low = low; High = high; Spacing = spacing;
        Edges = new long[count + 1];
        for (int i = 0; i <= count; i++)
        {
            double f = (double)i / count;
            double edge = spacing == BinSpacing.Linear ? low + f * (high - low)
                : Math.Exp(Math.Log(low) + f * (Math.Log(high) - Math.Log(low)));
            Edges[i] = Math.Clamp((long)Math.Round(edge), low, high);
        }
        Edges[0] = low; Edges[count] = high;
    }

    public long Low { get; }
    public long High { get; }
    public BinSpacing Spacing { get; }
    public long[] Edges { get; }
    public int Count => Edges.Length - 1;

    public static BinSpacing ParseSpacing(string s) => s switch
    {
        "linear" => BinSpacing.Linear,
        "log" => BinSpacing.Log,
        _ => throw new WhittleException($"--bin-spacing must be linear or log, got '{s}'"),
    };

    /// <summary>The bin holding <paramref name="parameters"/> (edges belong to the upper bin, High to the last), or −1.</summary>
    public int BinOf(long parameters)
    {
        if (parameters < Low || parameters > High) return -1;
        for (int i = 0; i < Count; i++)
            if (parameters < Edges[i + 1]) return i;
        return Count - 1;
    }

    /// <summary>The bins over the reachable part of a space's budget window (its smallest and largest sub-networks bound it).</summary>
    public static ParameterBins Over(SearchSpace space, int count, BinSpacing spacing)
    {
        long low = Math.Max(space.Low, space.Params(space.Smallest())), high = Math.Min(space.High, space.Params(space.Largest()));
        return new ParameterBins(Math.Max(1, low), high, count, spacing);
    }

    /// <summary>
    /// Stratified random search: distinct random candidates, the i-th drawn from bin i mod Count (a bin's window is
    /// [Edges[b], Edges[b+1]]); returns the candidates in evaluation order with the bin each came from.
    /// </summary>
    public StratifiedResult Search(
        SearchSpace space, Func<ActiveArchitecture, double> fitness, int evaluations, ulong seed)
    {
        var rng = new Rng(seed);
        var binSpaces = new SearchSpace?[Count];
        for (int b = 0; b < Count; b++)
        {
            long hi = Edges[b + 1], lo = Edges[b];
            // A bin's window as a budget and tolerance: [ceil(hi·(1−t)), hi] with t = 1 − lo/hi, widened by one parameter
            // of float rounding so the bins still tile the range.
            double t = Math.Clamp(1 - (lo - 1.0) / hi, 1e-12, 1 - 1e-12);
            binSpaces[b] = new SearchSpace(space.Parent, space.Kind, hi, t, space.Steps, space.Measure);
        }
        var seen = new Dictionary<string, (Evaluated, int)>();
        var order = new List<string>();
        var dead = new bool[Count];
        int misses = 0, turn = 0, repeats = 0;
        while (seen.Count < evaluations && misses < 100 * evaluations + 1000 && dead.Any(x => !x))
        {
            int b = turn % Count;
            if (dead[b]) { turn++; continue; }
            var g = binSpaces[b]!.SampleInBudget(rng, tries: 20);
            // A bin nothing can be repaired into, or whose few sub-networks have all been drawn, is given up on.
            if (g is null || repeats >= 50) { dead[b] = true; turn++; repeats = 0; continue; }
            var a = space.ToArchitecture(g);
            string key = SubnetSpec.Key(a);
            if (seen.ContainsKey(key)) { misses++; repeats++; continue; }   // the same bin again: bins get equal shares
            seen[key] = (new Evaluated(a, key, fitness(a)), b);
            order.Add(key);
            turn++; repeats = 0;
        }
        return new StratifiedResult(order.Select(k => seen[k]).ToList(), Enumerable.Range(0, Count).Where(b => dead[b]).ToArray());
    }
}

/// <summary>The candidates of a stratified search in evaluation order with their bins, and the bins given up on (unreachable
/// or used up).</summary>
public sealed record StratifiedResult(List<(Evaluated Candidate, int Bin)> Candidates, int[] EmptyBins);
