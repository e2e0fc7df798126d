// Policy: a search space is a set of genes, each an index into a grid of allowed sizes (multiples of a step, so the
// chosen sizes suit efficient kernels, plus the parent's own size). Every candidate the search hands out is
// canonicalised to its space and repaired to the parameter budget window [budget·(1−t), budget]: sizes are stepped
// down while it is too big and up while it is too small; a candidate that cannot be brought into the window is
// rejected (null), never evaluated. Parameter counts are monotone in every gene, which is what makes repair work.
// The head gene counts query groups (key/value heads): a sub-network keeps whole groups, so a layer with k groups has
// k × (the parent's query heads per group) query heads. Without grouped-query attention (GPT-NeoX) a group is one head.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public enum SpaceKind
{
    /// <summary>One embed_dim, the first n layers, one head count and one MLP width for all of them.</summary>
    Uniform,
    /// <summary>One embed_dim, the first n layers, heads and MLP width chosen per layer.</summary>
    PerLayer,
    /// <summary>Any ordered subset of layers (kept in parent order), uniform embed_dim, heads and MLP width.</summary>
    Layers,
}

/// <summary>Grid steps: embed_dim, query groups (heads for multi-head attention), MLP width.</summary>
public sealed record StepSizes(int Embed = 8, int Heads = 1, int Intermediate = 8);

/// <summary>A point of a search space: grid indices (per parent layer where the space is per layer).</summary>
public sealed record Genome(int Embed, int Count, bool[] Keep, int[] Heads, int[] Inter)
{
    public Genome Copy() => new(Embed, Count, (bool[])Keep.Clone(), (int[])Heads.Clone(), (int[])Inter.Clone());
}

/// <summary>What a parameter budget counts: every parameter, or only the non-embedding ones (embed_in and embed_out excluded).</summary>
public enum BudgetMeasure { Total, NonEmbedding }

public sealed class SearchSpace
{
    readonly int[] _embedGrid;
    readonly int[][] _headGrid, _interGrid;   // per parent layer; _headGrid counts query groups (kv heads)

    public SearchSpace(
        ModelConfig parent, SpaceKind kind, long budget, double tolerance, StepSizes? steps = null,
        BudgetMeasure measure = BudgetMeasure.Total)
    {
        Measure = measure;
        steps ??= new StepSizes();
        if (steps.Embed < 1 || steps.Heads < 1 || steps.Intermediate < 1)
            throw new WhittleException($"step sizes must be positive, got {steps}");
        if (tolerance is <= 0 or >= 1) throw new WhittleException($"--tolerance must be in (0, 1), got {tolerance}");
        Parent = parent; Kind = kind; Steps = steps;
        High = budget; Low = (long)Math.Ceiling(budget * (1 - tolerance));
        int L = parent.NumLayers;
        // Uniform sizes must fit every layer, so a uniform gene's grid is capped by the smallest layer.
        int minHeads = Enumerable.Range(0, L).Min(parent.KvHeadsOf), minInter = Enumerable.Range(0, L).Min(parent.IntermediateOf);
        _embedGrid = Grid(parent.HiddenSize, steps.Embed);
        _headGrid = Enumerable.Range(0, L).Select(
            l => Grid(kind == SpaceKind.PerLayer ? parent.KvHeadsOf(l) : minHeads, steps.Heads)).ToArray();
        _interGrid = Enumerable.Range(0, L).Select(
            l => Grid(kind == SpaceKind.PerLayer ? parent.IntermediateOf(l) : minInter, steps.Intermediate)).ToArray();

        long smallest = Params(Smallest()), largest = Params(Largest());
        if (budget <= 0) throw new WhittleException($"the parameter budget must be positive, got {budget}");
        if (smallest > High)
            throw new WhittleException($"impossible budget: {budget:N0} {MeasureName} parameters, but the smallest sub-network of the " +
                $"{Name(kind)} space has " +
                $"{smallest:N0}{(measure == BudgetMeasure.Total ? $" (the embeddings alone are {EmbeddingFormula(parent)})" : "")}; " +
                "raise the budget or lower the step sizes");
        if (largest < Low)
            throw new WhittleException($"impossible budget: the window [{Low:N0}, {High:N0}] is above the largest sub-network of the " +
                $"{Name(kind)} space ({largest:N0} {MeasureName} parameters, the parent has {Count(ParameterCount.Of(parent)):N0})");
    }

    /// <summary>What the embedding parameters of a sub-network are: one tied matrix or two.</summary>
    static string EmbeddingFormula(ModelConfig c) => c is LlamaConfig { TieWordEmbeddings: true } ? "vocab·embed_dim (tied)" : "2·vocab·embed_dim";

    public ModelConfig Parent { get; }
    public SpaceKind Kind { get; }
    public StepSizes Steps { get; }
    public long Low { get; }
    public long High { get; }

    public static string Name(SpaceKind k) => k switch { SpaceKind.Uniform => "uniform", SpaceKind.PerLayer => "per-layer", _ => "layers" };

    public static SpaceKind ParseKind(string s) => s switch
    {
        "uniform" => SpaceKind.Uniform,
        "per-layer" => SpaceKind.PerLayer,
        "layers" => SpaceKind.Layers,
        _ => throw new WhittleException($"--space must be uniform, per-layer or layers, got '{s}'"),
    };

    /// <summary>step, 2·step, … up to max, and max itself.</summary>
    static int[] Grid(int max, int step)
    {
        var g = new List<int>();
        for (int v = step; v < max; v += step) g.Add(v);
        g.Add(max);
        return g.ToArray();
    }

    int L => Parent.NumLayers;

    public Genome Smallest() => Canonical(new Genome(0, 1, Enumerable.Range(0, L).Select(l => l == 0).ToArray(), new int[L], new int[L]));

    public Genome Largest() => Canonical(new Genome(_embedGrid.Length - 1, L, Enumerable.Repeat(true, L).ToArray(),
        _headGrid.Select(g => g.Length - 1).ToArray(), _interGrid.Select(g => g.Length - 1).ToArray()));

    /// <summary>Clamps genes into their grids and ties the genes a space shares (uniform sizes, prefix layers).</summary>
    public Genome Canonical(Genome g)
    {
        var c = g.Copy();
        int e = Math.Clamp(c.Embed, 0, _embedGrid.Length - 1);
        int n = Math.Clamp(c.Count, 1, L);
        for (int l = 0; l < L; l++)
        {
            c.Heads[l] = Math.Clamp(Kind == SpaceKind.PerLayer ? c.Heads[l] : c.Heads[0], 0, _headGrid[l].Length - 1);
            c.Inter[l] = Math.Clamp(Kind == SpaceKind.PerLayer ? c.Inter[l] : c.Inter[0], 0, _interGrid[l].Length - 1);
        }
        if (Kind == SpaceKind.Layers)
        {
            if (!c.Keep.Any(k => k)) c.Keep[0] = true;
            n = c.Keep.Count(k => k);
        }
        else
            for (int l = 0; l < L; l++) c.Keep[l] = l < n;
        return c with { Embed = e, Count = n };
    }

    public ActiveArchitecture ToArchitecture(Genome g)
    {
        var layers = Enumerable.Range(0, L).Where(l => g.Keep[l]).ToArray();
        var kvHeads = layers.Select(l => _headGrid[l][g.Heads[l]]).ToArray();
        return new ActiveArchitecture(_embedGrid[g.Embed], layers,
            layers.Select((l, i) => kvHeads[i] * Parent.QueryHeadsPerGroup(l)).ToArray(),
            layers.Select(l => _interGrid[l][g.Inter[l]]).ToArray(), kvHeads);
    }

    public BudgetMeasure Measure { get; }
    public string MeasureName => Measure == BudgetMeasure.Total ? "total" : "non-embedding";
    /// <summary>The budgeted count of a parameter count.</summary>
    public long Count(ParameterCount c) => Measure == BudgetMeasure.Total ? c.Total : c.NonEmbedding;

    /// <summary>The budgeted parameter count of a genome.</summary>
    public long Params(Genome g) => Count(ParameterCount.Of(Parent, ToArchitecture(g)));

    public bool InBudget(long parameters) => parameters >= Low && parameters <= High;

    // ---------------------------------------------------------------- random moves

    /// <summary>A uniformly random point of the space (before repair).</summary>
    public Genome Sample(Rng rng) => Canonical(new Genome(
        rng.NextInt(_embedGrid.Length), 1 + rng.NextInt(L),
        Enumerable.Range(0, L).Select(_ => rng.NextInt(2) == 1).ToArray(),
        Enumerable.Range(0, L).Select(l => rng.NextInt(_headGrid[l].Length)).ToArray(),
        Enumerable.Range(0, L).Select(l => rng.NextInt(_interGrid[l].Length)).ToArray()));

    /// <summary>Each gene moves with probability <paramref name="rate"/> by ±1..maxStep grid steps (a layer bit flips).</summary>
    public Genome Mutate(Genome g, Rng rng, double rate, int maxStep = 2)
    {
        var c = g.Copy();
        int Move(int v) => v + (rng.NextInt(2) == 0 ? -1 : 1) * (1 + rng.NextInt(maxStep));
        int e = rng.NextDouble() < rate ? Move(c.Embed) : c.Embed;
        int n = rng.NextDouble() < rate ? Move(c.Count) : c.Count;
        int genes = Kind == SpaceKind.PerLayer ? L : 1;
        for (int l = 0; l < genes; l++)
        {
            if (rng.NextDouble() < rate) c.Heads[l] = Move(c.Heads[l]);
            if (rng.NextDouble() < rate) c.Inter[l] = Move(c.Inter[l]);
        }
        if (Kind == SpaceKind.Layers)
            for (int l = 0; l < L; l++) if (rng.NextDouble() < rate) c.Keep[l] = !c.Keep[l];
        return Canonical(c with { Embed = e, Count = n });
    }

    /// <summary>Uniform crossover: every gene from one parent or the other.</summary>
    public Genome Crossover(Genome a, Genome b, Rng rng)
    {
        bool Pick() => rng.NextInt(2) == 0;
        return Canonical(new Genome(Pick() ? a.Embed : b.Embed, Pick() ? a.Count : b.Count,
            Enumerable.Range(0, L).Select(l => Pick() ? a.Keep[l] : b.Keep[l]).ToArray(),
            Enumerable.Range(0, L).Select(l => Pick() ? a.Heads[l] : b.Heads[l]).ToArray(),
            Enumerable.Range(0, L).Select(l => Pick() ? a.Inter[l] : b.Inter[l]).ToArray()));
    }

    /// <summary>Steps random genes down while over budget and up while under; null when the window cannot be reached.</summary>
    public Genome? Repair(Genome g, Rng rng)
    {
        var c = Canonical(g);
        int limit = 8 * (_embedGrid.Length + _headGrid.Sum(x => x.Length) + _interGrid.Sum(x => x.Length) + L);
        for (int it = 0; it < limit; it++)
        {
            long p = Params(c);
            if (InBudget(p)) return c;
            var moves = Moves(c, p > High ? -1 : +1);
            if (moves.Count == 0) return null;
            c = Canonical(moves[rng.NextInt(moves.Count)]);
        }
        return InBudget(Params(c)) ? c : null;
    }

    /// <summary>Every genome one grid step away in direction <paramref name="dir"/> (−1 smaller, +1 larger).</summary>
    List<Genome> Moves(Genome g, int dir)
    {
        var result = new List<Genome>();
        void Try(Genome n) { var cn = Canonical(n); if (Params(cn) != Params(g)) result.Add(cn); }
        if (g.Embed + dir >= 0 && g.Embed + dir < _embedGrid.Length) Try(g with { Embed = g.Embed + dir });
        if (Kind == SpaceKind.Layers)
        {
            for (int l = 0; l < L; l++)
                if (g.Keep[l] == (dir < 0)) { var k = (bool[])g.Keep.Clone(); k[l] = !k[l]; if (k.Any(x => x)) Try(g with { Keep = k }); }
        }
        else if (g.Count + dir >= 1 && g.Count + dir <= L) Try(g with { Count = g.Count + dir });
        int genes = Kind == SpaceKind.PerLayer ? L : 1;
        for (int l = 0; l < genes; l++)
        {
            if (Kind == SpaceKind.PerLayer && !g.Keep[l]) continue;   // dormant genes do not change the size
            if (g.Heads[l] + dir >= 0 && g.Heads[l] + dir < _headGrid[l].Length)
            {
                var h = (int[])g.Heads.Clone();
                h[l] += dir;
                Try(g with { Heads = h });
            }
            if (g.Inter[l] + dir >= 0 && g.Inter[l] + dir < _interGrid[l].Length)
            {
                var m = (int[])g.Inter.Clone();
                m[l] += dir;
                Try(g with { Inter = m });
            }
        }
        return result;
    }

    /// <summary>A random point inside the budget window (sample, then repair), or null after many failed tries.</summary>
    public Genome? SampleInBudget(Rng rng, int tries = 200)
    {
        for (int i = 0; i < tries; i++)
            if (Repair(Sample(rng), rng) is { } g) return g;
        return null;
    }

    /// <summary>
    /// The importance baseline: no evaluations, only the importance order. All sizes shrink together by one factor s
    /// (embed_dim, query groups and MLP width of every layer ≈ s × the parent's, rounded down to the grid, kept layers = the
    /// first n or, with a layer ranking, the n most influential in parent order); the largest such candidate within the
    /// budget window, or, when no uniform shrink lands in the window (coarse grids), the largest under the budget.
    /// </summary>
    public ActiveArchitecture? ImportanceBaseline(int[]? layerRanking)
    {
        ActiveArchitecture? best = null, under = null; long bestParams = -1, underParams = -1;
        for (int n = L; n >= 1; n--)
        {
            var keep = new bool[L];
            foreach (var l in (layerRanking ?? Enumerable.Range(0, L).ToArray()).Take(n)) keep[l] = true;
            for (int k = 1000; k >= 1; k--)
            {
                double s = k / 1000.0;
                static int Idx(int[] grid, double target) { int i = 0; while (i + 1 < grid.Length && grid[i + 1] <= target) i++; return i; }
                var g = new Genome(Idx(_embedGrid, s * Parent.HiddenSize), n, keep,
                    Enumerable.Range(0, L).Select(l => Idx(_headGrid[l], s * Parent.KvHeadsOf(l))).ToArray(),
                    Enumerable.Range(0, L).Select(l => Idx(_interGrid[l], s * Parent.IntermediateOf(l))).ToArray());
                var a = ToArchitecture(g);
                long p = Count(ParameterCount.Of(Parent, a));
                if (p <= High)
                {
                    if (p >= Low && p > bestParams) { best = a; bestParams = p; }
                    if (p > underParams) { under = a; underParams = p; }
                    break;
                }
            }
        }
        return best ?? under;
    }
}
