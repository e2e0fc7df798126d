using System.Diagnostics;
using System.Globalization;
using Whittle.Native.Cpu;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;

namespace Whittle.Native.Bench;

// Policy: issue 17 item 4, how fast the search evaluates candidates: the fitness of a sub-network (validation loss)
// computed in place (Perplexity.Evaluate on the parent with the ActiveArchitecture: prefix views, no weight copied)
// against extracting it first (Extraction.Extract, a dense copy) and evaluating the copy, on the `small` bench shape
// (V 4096, d 256, 4 layers, 8 heads, MLP 1024, as `whittle bench --config small`). The same random candidates from a
// uniform space at half the parent's parameters, both ways, alternating which goes first per candidate so machine
// load drifts hit both alike; random weights and tokens (the time does not depend on the values). Reports candidates
// per minute both ways and their ratio, and the largest loss difference between the two (the same function, so f32
// summation-order noise only).
//   dotnet run -c Release --project bench/Whittle.Native.Bench -- search-speed [candidates] [eval-tokens]
static class SearchSpeedBench
{
    public static void Run(string[] args)
    {
        int candidates = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 8;
        long evalTokens = args.Length > 1 ? long.Parse(args[1], CultureInfo.InvariantCulture) : 4096;
        const int T = 128, B = 8;
        var config = new GptNeoXConfig { VocabSize = 4096, HiddenSize = 256, NumLayers = 4, NumHeads = 8, IntermediateSize = 1024,
            MaxPositionEmbeddings = T };
        var backend = CpuBackend.Instance;
        using var parent = new GptNeoX(config, backend);
        using (var init = GptNeoX.RandomInit(parent.Parameters, config, 1)) parent.LoadFlat(init);
        var rng = new Rng(2);
        var tokens = new int[(int)(evalTokens / (T - 1) + 1) * T];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.NextInt(config.VocabSize);
        var val = new ArrayTokenSource(tokens);
        var space = new SearchSpace(config, SpaceKind.Uniform, ParameterCount.Of(config).Total / 2, 0.3);
        var archs = new List<ActiveArchitecture>();
        var keys = new HashSet<string>();
        while (archs.Count < candidates && space.SampleInBudget(rng) is { } g)
            if (keys.Add(SubnetSpec.Key(space.ToArchitecture(g)))) archs.Add(space.ToArchitecture(g));

        double InPlace(ActiveArchitecture a) => Perplexity.Evaluate(parent, val, T, B, evalTokens, a).Loss;
        double Extracted(ActiveArchitecture a, Stopwatch copy)
        {
            copy.Start();
            using var child = Extraction.Extract(parent, a);
            copy.Stop();
            return Perplexity.Evaluate(child, val, T, B, evalTokens).Loss;
        }
        InPlace(archs[0]); Extracted(archs[0], new Stopwatch());   // warm-up: thread pool, allocator
        var inPlace = new Stopwatch(); var extracted = new Stopwatch(); var copying = new Stopwatch();
        double maxDiff = 0;
        for (int i = 0; i < archs.Count; i++)
        {
            double a = 0, b = 0;
            for (int turn = 0; turn < 2; turn++)
                if ((turn == 0) == (i % 2 == 0)) { inPlace.Start(); a = InPlace(archs[i]); inPlace.Stop(); }
                else { extracted.Start(); b = Extracted(archs[i], copying); extracted.Stop(); }
            maxDiff = Math.Max(maxDiff, Math.Abs(a - b));
        }
        double perMinIn = archs.Count / inPlace.Elapsed.TotalMinutes, perMinEx = archs.Count / extracted.Elapsed.TotalMinutes;
        Console.WriteLine($"small (V 4096, d 256, 4 layers, MLP 1024): {ParameterCount.Of(config).Total:N0} parameters; " +
            $"{archs.Count} candidates at ~50% of them; {evalTokens} predictions each (T {T}, B {B}); {Environment.ProcessorCount} cores");
        Console.WriteLine($"in place          {perMinIn,8:F2} candidates/min  ({inPlace.Elapsed.TotalSeconds:F1} s)");
        Console.WriteLine($"extract, then eval {perMinEx,7:F2} candidates/min  ({extracted.Elapsed.TotalSeconds:F1} s, of which " +
            $"{copying.Elapsed.TotalSeconds:F2} s extracting)");
        Console.WriteLine($"ratio in place / extracted {perMinIn / perMinEx:F3}; max |loss difference| {maxDiff:E2}");
    }
}
