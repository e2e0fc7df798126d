// Policy: the sub-networks a supernet training step trains are a pure function of (seed, step, strategy): each random
// draw has its own generator seeded by (seed, step, index), so a resumed run samples exactly what an uninterrupted run
// samples without any sampler state in the checkpoint. Stratified sampling (whittle's parameter bins) picks a bin
// uniformly first, then draws points of the space until one falls in it. Which bins hold points is learned once, from a
// fixed pool of uniform draws (a function of the seed), so an empty bin is never drawn and a rare one costs a bounded
// number of tries before a pool point of it is taken.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

/// <summary>
/// whittle's supernet training strategies (arXiv 2510.07227; the sandwich rule is Yu &amp; Huang's, arXiv 1903.05134):
/// sandwich trains the whole network, k random sub-networks and the smallest every step; random trains k random
/// sub-networks; standard trains the whole network alone (plain training).
/// </summary>
public enum SupernetStrategy { Sandwich, Random, Standard }

/// <summary>What a sampled sub-network is for the step: the whole network, the smallest, or random draw number Index (1-based).</summary>
public enum SubnetRole { Largest, Random, Smallest }

/// <summary>One sub-network a step trains, with its exact parameter count.</summary>
public sealed record SampledSubnet(SubnetRole Role, int Index, ActiveArchitecture Architecture, ParameterCount Parameters)
{
    /// <summary>The name in progress lines and metrics: largest, smallest, random1, random2, ….</summary>
    public string Name => Role switch { SubnetRole.Largest => "largest", SubnetRole.Smallest => "smallest", _ => $"random{Index}" };
}

public sealed class SubnetSampler
{
    /// <summary>Uniform draws that find out which bins hold points (and keep some points of each).</summary>
    public const int PoolSize = 4096;
    /// <summary>Random points tried in the chosen bin before one of the pool's points in it is taken instead.</summary>
    public const int TriesPerBin = 1000;

    readonly SearchSpace _space;
    readonly ulong _seed;
    readonly long _low, _high;
    readonly List<Genome>[] _pool;   // per bin: the pool draws that fell in it
    readonly int[] _occupied;        // the bins with at least one pool draw

    /// <param name="bins">0: uniform draws from the space; N ≥ 1: N equal-width parameter bins between the smallest and the
    /// largest sub-network's total parameter count.</param>
    public SubnetSampler(SearchSpace space, SupernetStrategy strategy, int randomSubnets, ulong seed, int bins = 0)
    {
        if (bins < 0) throw new WhittleException($"--stratify-bins must be >= 0 (0: off), got {bins}");
        if (randomSubnets < 0) throw new WhittleException($"--random-subnets must be >= 0, got {randomSubnets}");
        if (strategy == SupernetStrategy.Random && randomSubnets < 1)
            throw new WhittleException("--strategy random needs --random-subnets >= 1");
        if (strategy == SupernetStrategy.Standard && randomSubnets > 0)
            throw new WhittleException("--strategy standard trains the whole network only; drop --random-subnets");
        _space = space; Strategy = strategy; RandomSubnets = randomSubnets; _seed = seed; Bins = bins;
        _low = Total(space.Smallest()); _high = Total(space.Largest());
        _pool = Enumerable.Range(0, bins).Select(_ => new List<Genome>()).ToArray();
        if (bins == 0) { _occupied = []; return; }
        var rng = new Rng(seed ^ 0x504F_4F4C_5F42_494EUL);
        for (int i = 0; i < PoolSize; i++) { var g = space.Sample(rng); _pool[BinOf(Total(g))].Add(g); }
        // The smallest and the largest are points of the space too (uniform draws rarely reach them).
        _pool[BinOf(_low)].Add(space.Smallest()); _pool[BinOf(_high)].Add(space.Largest());
        _occupied = Enumerable.Range(0, bins).Where(b => _pool[b].Count > 0).ToArray();
    }

    /// <summary>The bins a stratified draw chooses among: those with a point among the pool's draws.</summary>
    public IReadOnlyList<int> OccupiedBins => _occupied;

    public SupernetStrategy Strategy { get; }
    public int RandomSubnets { get; }
    public int Bins { get; }

    long Total(Genome g) => ParameterCount.Of(_space.Parent, _space.ToArchitecture(g)).Total;

    SampledSubnet Make(SubnetRole role, int index, Genome g)
    {
        var a = _space.ToArchitecture(g);
        return new SampledSubnet(role, index, a, ParameterCount.Of(_space.Parent, a));
    }

    /// <summary>The sub-networks step <paramref name="step"/> trains, in the order they are trained.</summary>
    public IReadOnlyList<SampledSubnet> ForStep(int step)
    {
        var list = new List<SampledSubnet>();
        if (Strategy != SupernetStrategy.Random) list.Add(Make(SubnetRole.Largest, 0, _space.Largest()));
        if (Strategy != SupernetStrategy.Standard)
            for (int i = 1; i <= RandomSubnets; i++) list.Add(Make(SubnetRole.Random, i, Draw(step, i)));
        if (Strategy == SupernetStrategy.Sandwich) list.Add(Make(SubnetRole.Smallest, 0, _space.Smallest()));
        return list;
    }

    /// <summary>Random draw <paramref name="index"/> of step <paramref name="step"/>: its own generator, so nothing carries over.</summary>
    public Genome Draw(int step, int index)
    {
        ulong key = (_seed * 0x9E3779B97F4A7C15UL + (ulong)step) * 0xBF58476D1CE4E5B9UL + (ulong)index;
        var rng = new Rng(key ^ 0x5355_5045_524E_4554UL);
        if (Bins == 0) return _space.Sample(rng);
        int bin = _occupied[rng.NextInt(_occupied.Length)];
        var (lo, hi) = BinRange(bin);
        for (int t = 0; t < TriesPerBin; t++)
        {
            var g = _space.Sample(rng);
            long p = Total(g);
            if (p >= lo && p <= hi) return g;
        }
        return _pool[bin][rng.NextInt(_pool[bin].Count)];
    }

    /// <summary>Bin <paramref name="bin"/>'s inclusive range [Lo, Hi] of total parameter counts (the last bin ends at the
    /// largest sub-network's).</summary>
    public (long Lo, long Hi) BinRange(int bin)
    {
        double width = (double)(_high - _low) / Bins;
        long lo = _low + (long)Math.Ceiling(bin * width);
        long hi = bin == Bins - 1 ? _high : _low + (long)Math.Ceiling((bin + 1) * width) - 1;
        return (lo, hi);
    }

    /// <summary>The bin a total parameter count falls in.</summary>
    public int BinOf(long total)
    {
        for (int b = 0; b < Bins; b++) if (total <= BinRange(b).Hi) return b;
        return Bins - 1;
    }
}
