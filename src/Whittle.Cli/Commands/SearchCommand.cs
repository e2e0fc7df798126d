// Policy: `whittle search`: find the sub-network of a parent with the lowest validation perplexity under a parameter
// budget. Fitness is the perplexity of the in-place sub-network (no copies) on the SAME fixed validation windows for
// every candidate. Options, the budget and the data are all checked before the weights are read. Every evaluation is
// appended to history.jsonl as it happens; --resume answers already-evaluated candidates from it. The chosen strategy
// runs first, then (unless --baselines false) random search at the same number of evaluations and the importance
// baseline, so one command yields the comparison. --objectives picks what the front is made of (perplexity against
// parameters, FLOPs and/or latency): NSGA-II and local search optimise that vector, the single-objective strategies
// (evolution, random, stratified) minimise perplexity inside the budget window, and every strategy is scored by the
// hypervolume of what it evaluated in one common frame (Objectives.cs), so strategies compare by one number.
using System.Diagnostics;
using Whittle.Native.Demo;
using Whittle.Native.Search;

namespace Whittle.Cli;

static class SearchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Parent model directory (usually the output of `whittle importance`).",
            Required = true };
        var data = new Option<string>("--data") { Description = "Token dataset directory; fitness uses its val split.", Required = true };
        var budgetParams = new Option<long?>("--budget-params") { Description = "Parameter budget (counted as --budget-on says)." };
        var budgetRatio = new Option<double?>("--budget-ratio") { Description = "Parameter budget as a fraction of the parent's count " +
            "(as --budget-on says)." };
        var budgetOn = new Option<string>("--budget-on") { Description = "What the budget counts: total (embeddings included) | " +
            "non-embedding.", DefaultValueFactory = _ => "total" };
        var tolerance = new Option<double>("--tolerance") { Description = "Candidates have parameters in [budget·(1−t), budget].",
            DefaultValueFactory = _ => 0.1 };
        var space = new Option<string>("--space") { Description = "uniform | per-layer | layers.", DefaultValueFactory = _ => "uniform" };
        var strategy = new Option<string>("--strategy") { Description = "evolution | random | importance | nsga2 | stratified (random " +
            "search over parameter bins) | local (Pareto local search).", DefaultValueFactory = _ => "evolution" };
        var objectives = new Option<string>("--objectives") { Description = "What the Pareto front minimises: ppl and one to three of " +
            "params (as --budget-on counts), flops (forward FLOPs per token at --seq-len), latency (the extracted model, see --latency-*).",
            DefaultValueFactory = _ => "ppl,params" };
        var bins = new Option<int>("--bins") { Description = "Stratified: parameter bins over the budget window.",
            DefaultValueFactory = _ => 10 };
        var binSpacing = new Option<string>("--bin-spacing") { Description = "Stratified: linear | log bin edges.",
            DefaultValueFactory = _ => "linear" };
        var latencyBatch = new Option<int>("--latency-batch") { Description = "Latency: sequences per timed forward pass.",
            DefaultValueFactory = _ => 8 };
        var latencySeqLen = new Option<int?>("--latency-seq-len") { Description = "Latency: tokens per sequence (default: --seq-len)." };
        var latencyWarmup = new Option<int>("--latency-warmup") { Description = "Latency: untimed forward passes first.",
            DefaultValueFactory = _ => 10 };
        var latencyRuns = new Option<int>("--latency-runs") { Description = "Latency: timed forward passes (the median is kept).",
            DefaultValueFactory = _ => 10 };
        var evaluations = new Option<int>("--evaluations") { Description = "Distinct candidates to evaluate (per strategy).",
            DefaultValueFactory = _ => 50 };
        var output = new Option<string>("--out") { Description = "Output directory (history.jsonl, best.json, pareto.json, summary.json, " +
            "pareto-*.svg, latency-cache.json).", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue a search in --out: candidates in its history.jsonl are not " +
            "evaluated again." };
        var baselines = new Option<bool>("--baselines") { Description = "Also run random search (same evaluations) and the importance " +
            "baseline (default true; --baselines false skips them).", DefaultValueFactory = _ => true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the search.", DefaultValueFactory = _ => 0UL };
        var population = new Option<int>("--population") { Description = "Evolution, NSGA-II: population size.",
            DefaultValueFactory = _ => 16 };
        var elites = new Option<int>("--elites") { Description = "Evolution: best candidates kept unchanged each generation.",
            DefaultValueFactory = _ => 2 };
        var tournament = new Option<int>("--tournament") { Description = "Evolution: tournament size for parent selection.",
            DefaultValueFactory = _ => 3 };
        var mutation = new Option<double>("--mutation-rate") { Description = "Evolution, NSGA-II: probability that a gene moves.",
            DefaultValueFactory = _ => 0.3 };
        var crossover = new Option<double>("--crossover-rate") { Description = "Evolution, NSGA-II: probability a child has two " +
            "parents.",
            DefaultValueFactory = _ => 0.5 };
        var stepSizes = new StepSizeOptions();
        var (embedStep, headStep, interStep) = (stepSizes.Embed, stepSizes.Heads, stepSizes.Intermediate);
        var seqLen = new Option<int?>("--seq-len") { Description = "Evaluation window (default: min(128, max_position_embeddings))." };
        var batchSize = new Option<int>("--batch-size") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 8 };
        var evalTokens = new Option<long>("--eval-tokens") { Description = "Predictions per fitness evaluation (the first windows of the " +
            "val split).", DefaultValueFactory = _ => 16384 };
        var device = CliCommon.DeviceOption();
        var cmd = new Command("search",
            "Search sub-networks of a parent under a parameter budget (evolution, NSGA-II, stratified random, local search, random " +
            "search, importance baseline) for the Pareto front of perplexity against parameters, FLOPs or latency.");
        foreach (var o in new Option[] { model, data, budgetParams, budgetRatio, budgetOn, tolerance, space, strategy, objectives,
                     evaluations, output, resume, baselines, seed, population, elites, tournament, mutation, crossover, bins, binSpacing,
                     embedStep, headStep, interStep, seqLen, batchSize, evalTokens, latencyBatch, latencySeqLen, latencyWarmup, latencyRuns,
                     device, CliCommon.Json })
            cmd.Options.Add(o);

        cmd.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            var config = ModelConfig.Load(modelDir);
            var measure = parse.GetValue(budgetOn) switch
            {
                "total" => BudgetMeasure.Total,
                "non-embedding" => BudgetMeasure.NonEmbedding,
                var other => throw new WhittleException($"--budget-on must be total or non-embedding, got '{other}'"),
            };
            long parentTotal = measure == BudgetMeasure.Total ? ParameterCount.Of(config).Total : ParameterCount.Of(config).NonEmbedding;
            long budget = (parse.GetValue(budgetParams), parse.GetValue(budgetRatio)) switch
            {
                ({ } n, null) => n,
                (null, { } r) when r is > 0 and <= 1 => (long)Math.Floor(r * parentTotal),
                (null, { } r) => throw new WhittleException($"--budget-ratio must be in (0, 1], got {r}"),
                _ => throw new WhittleException("give exactly one of --budget-params N or --budget-ratio r"),
            };
            var kind = SearchSpace.ParseKind(parse.GetValue(space)!);
            string primary = parse.GetValue(strategy)!;
            if (primary is not ("evolution" or "random" or "importance" or "nsga2" or "stratified" or "local"))
                throw new WhittleException(
                    $"--strategy must be evolution, random, importance, nsga2, stratified or local, got '{primary}'");
            var goals = ObjectiveSet.Parse(parse.GetValue(objectives)!);
            var spacing = ParameterBins.ParseSpacing(parse.GetValue(binSpacing)!);
            int K = parse.GetValue(evaluations);
            if (K < 1) throw new WhittleException($"--evaluations must be at least 1, got {K}");
            var evo = new EvolutionOptions(
                parse.GetValue(population), parse.GetValue(elites), parse.GetValue(tournament), parse.GetValue(crossover),
                parse.GetValue(mutation));
            if (evo.Population < 2 || evo.Elites < 0 || evo.Elites >= evo.Population || evo.Tournament < 1)
                throw new WhittleException($"--population must be ≥ 2, --elites in [0, population), --tournament ≥ 1 (got " +
                    $"{evo.Population}, {evo.Elites}, {evo.Tournament})");
            var searchSpace = new SearchSpace(config, kind, budget, parse.GetValue(tolerance),
                new StepSizes(parse.GetValue(embedStep), parse.GetValue(headStep), parse.GetValue(interStep)), measure);
            int T = parse.GetValue(seqLen) ?? Math.Min(128, config.MaxPositionEmbeddings);
            if (T < 2 || T > config.MaxPositionEmbeddings)
                throw new WhittleException($"--seq-len {T} must be in [2, {config.MaxPositionEmbeddings}]");
            int B = parse.GetValue(batchSize);
            long maxTokens = parse.GetValue(evalTokens);
            if (B < 1 || maxTokens < 1) throw new WhittleException("--batch-size and --eval-tokens must be positive");
            if (evo.CrossoverRate is < 0 or > 1 || evo.MutationRate is < 0 or > 1)
                throw new WhittleException($"--crossover-rate and --mutation-rate must be in [0, 1], got {evo.CrossoverRate} and " +
                    $"{evo.MutationRate}");
            var bins0 = primary == "stratified" ? ParameterBins.Over(searchSpace, parse.GetValue(bins), spacing) : null;
            int LB = parse.GetValue(latencyBatch), LT = parse.GetValue(latencySeqLen) ?? T;
            int warmup = parse.GetValue(latencyWarmup), runs = parse.GetValue(latencyRuns);
            if (goals.Has(Objective.Latency))
            {
                if (LB < 1 || LB > 4096) throw new WhittleException($"--latency-batch must be in [1, 4096], got {LB}");
                if (LT < 1 || LT > config.MaxPositionEmbeddings)
                    throw new WhittleException($"--latency-seq-len {LT} must be in [1, {config.MaxPositionEmbeddings}]");
                if (warmup is < 0 or > 1000 || runs is < 1 or > 1000)
                    throw new WhittleException(
                        $"--latency-warmup must be in [0, 1000] and --latency-runs in [1, 1000], got {warmup} and {runs}");
            }
            using var dataset = TokenDataset.Open(parse.GetValue(data)!);
            if (dataset.Meta.VocabSize > config.VocabSize)
                throw new WhittleException($"{dataset.Directory}: dataset vocabulary {dataset.Meta.VocabSize} is larger than the model's " +
                $"vocab_size {config.VocabSize}");
            if (dataset.Val.Length < T)
                throw new WhittleException($"{dataset.Directory}: the val split has {dataset.Val.Length} tokens, fewer than one window " +
                $"of --seq-len {T}; re-tokenize with --val-fraction > 0");
            CliCommon.TakeRunDirectory(outDir, "search");
            var log = new SearchLog(Path.Combine(outDir, "history.jsonl"), parse.GetValue(resume));
            // Losses in the history are only comparable under the same fitness definition; a resume must not mix two.
            var fitnessDef = new JsonObject { ["model"] = Path.GetFullPath(modelDir), ["data"] = Path.GetFullPath(dataset.Directory),
                ["split"] = "val", ["seq_len"] = T, ["max_tokens"] = maxTokens };
            var fitnessFile = Path.Combine(outDir, "fitness.json");
            if (File.Exists(fitnessFile) && log.Entries.Count > 0)
            {
                var before = File.ReadAllText(fitnessFile).Trim();
                var now = fitnessDef.ToJsonString(CliCommon.JsonOptions);
                if (before != now)
                    throw new WhittleException($"{fitnessFile}: the history was evaluated with a different fitness " +
                    $"({before.ReplaceLineEndings(" ")}); resume with the same --model, --data, --seq-len and --eval-tokens, or use a " +
                    $"new --out");
            }
            SearchLog.WriteJson(fitnessFile, fitnessDef);
            bool json = parse.GetValue(CliCommon.Json);

            using var backend = Backends.Create(parse.GetValue(device)!);
            using var parent = ModelCheckpoint.Load(config, modelDir, backend);
            ulong s = parse.GetValue(seed);
            string deviceName = parse.GetValue(device)!;
            var latency = goals.Has(Objective.Latency)
                ? new LatencyCache(Path.Combine(outDir, "latency-cache.json"), new LatencyShape(deviceName, LB, LT),
                    a => LatencyProbe.ExtractedForwardMs(parent, a, LB, LT, warmup, runs))
                : null;
            var wall = Stopwatch.StartNew();
            int shown = 0;
            double Fitness(ActiveArchitecture a, string who) => log.Fitness(a, who, config, T,
                x => Perplexity.Evaluate(parent, dataset.Val, T, B, maxTokens, x).Loss,
                (e, cached) =>
                    Console.Error.WriteLine($"{who} {++shown,4}  {e.Parameters.Total,14:N0} params  ppl {e.Perplexity,10:F3}  " +
                    $"{(cached ? "(from history)" : $"{e.Seconds:F2} s")}" +
                    $"{(e.Latency is { } l ? $"  {l.Ms:F2} ms" : "")}  {e.Key}"), latency);
            double[] Vector(HistoryEntry e) => goals.Vector(e, searchSpace.Count,
                () => latency!.Milliseconds(SubnetSpec.FromJson(e.Spec, config)));
            double[] Objectives(ActiveArchitecture a, string who)
            {
                Fitness(a, who);
                return Vector(log.Get(SubnetSpec.Key(a)));
            }

            var byStrategy = new Dictionary<string, List<string>>();   // the keys each strategy proposed, in order
            StratifiedResult? stratified = null;
            var order = new List<string> { primary };
            if (parse.GetValue(baselines))
                order.AddRange(new[] { "evolution", "random", "importance" }.Where(x => x != primary && x != "evolution"));
            foreach (var who in order)
            {
                shown = 0;
                byStrategy[who] = who switch
                {
                    "evolution" => Strategies.Evolution(searchSpace, a => Fitness(a, who), K, s, evo).Select(e => e.Key).ToList(),
                    "random" => Strategies.Random(searchSpace, a => Fitness(a, who), K, s + 1).Select(e => e.Key).ToList(),
                    "nsga2" => Nsga2.Run(searchSpace, a => Objectives(a, who), K, s,
                        new Nsga2Options(evo.Population, evo.CrossoverRate, evo.MutationRate)).Select(e => e.Key).ToList(),
                    "local" => LocalSearch.Run(searchSpace, a => Objectives(a, who), K, s).Select(e => e.Key).ToList(),
                    "stratified" => (stratified = bins0!.Search(searchSpace, a => Fitness(a, who), K, s + 2)).Candidates
                        .Select(c => c.Candidate.Key).ToList(),
                    _ => Importance(who),
                };
            }
            List<string> Importance(string who)
            {
                var baseline = searchSpace.ImportanceBaseline(ImportanceScores.ReadLayerRanking(modelDir, config.NumLayers))
                    ?? throw new WhittleException($"no uniformly shrunk sub-network has parameters in [{searchSpace.Low:N0}, " +
                        $"{searchSpace.High:N0}]; widen --tolerance");
                Fitness(baseline, who);
                return [SubnetSpec.Key(baseline)];
            }

            // Outputs: the best candidate overall, the n-dimensional Pareto set of everything evaluated, a summary per strategy
            // with its hypervolume in one common frame, and one SVG per size objective.
            var entries = byStrategy.Values.SelectMany(v => v).Distinct().Select(log.Get).ToList();
            var best = entries.MinBy(e => e.Loss)!;
            string bestBy = byStrategy.Where(kv => kv.Value.Contains(best.Key)).Select(kv => kv.Key).First();
            var bestJson = best.ToJson();
            SearchLog.WriteJson(Path.Combine(outDir, "best.json"), bestJson);
            var all = log.Entries.DistinctBy(e => e.Key).ToList();
            var vectors = all.Select(Vector).ToList();
            JsonObject Named(double[] v) => new(goals.Items.Select((o, i) => KeyValuePair.Create(ObjectiveSet.Name(o), (JsonNode?)v[i])));
            var front = Pareto.NonDominated(vectors).OrderBy(i => all[i].Parameters.Total).ThenBy(i => all[i].Loss).ToList();
            SearchLog.WriteJson(Path.Combine(outDir, "pareto.json"), new JsonArray(front.Select(i =>
            {
                var o = all[i].ToJson();
                o["objectives"] = Named(vectors[i]);
                return (JsonNode)o;
            }).ToArray()));
            var frame = HypervolumeFrame.Of(vectors);
            var byKey = all.Select((e, i) => (e.Key, V: vectors[i])).ToDictionary(x => x.Key, x => x.V);
            double HypervolumeOf(List<string> keys) => frame.Hypervolume(keys.Select(k => byKey[k]));
            WritePlots(outDir, goals, byStrategy, byKey);
            double perMinute = log.EvaluationSeconds > 0 ? log.Evaluated / (log.EvaluationSeconds / 60) : 0;
            var summary = new JsonObject
            {
                ["model"] = Path.GetFullPath(modelDir),
                ["space"] = SearchSpace.Name(kind),
                ["budget"] = new JsonObject { ["params"] = budget, ["counts"] = searchSpace.MeasureName, ["low"] = searchSpace.Low,
                    ["high"] = searchSpace.High, ["parent_params"] = parentTotal },
                ["fitness"] = new JsonObject { ["split"] = "val", ["seq_len"] = T, ["max_tokens"] = maxTokens },
                ["objectives"] = new JsonArray(goals.Items.Select(o => (JsonNode)ObjectiveSet.Name(o)).ToArray()),
                ["hypervolume"] = new JsonObject
                {
                    ["method"] = goals.Items.Length == 2 ? "exact (2-D sweep)" : "exact (hypervolume by slicing objectives)",
                    ["scaling"] = "each objective rescaled to [0, 1] by the best and worst value any strategy reached",
                    ["ideal"] = Named(frame.Ideal),
                    ["worst"] = Named(frame.Worst),
                    ["reference_point"] = Named(frame.Reference),
                    ["reference_point_scaled"] = HypervolumeFrame.ReferenceScaled,
                    ["maximum"] = Math.Pow(HypervolumeFrame.ReferenceScaled, goals.Items.Length),
                },
                ["seed"] = s,
                ["strategies"] = new JsonObject(byStrategy.Select(kv =>
                {
                    var bestOf = kv.Value.Select(log.Get).MinBy(e => e.Loss)!;
                    var mine = kv.Value.Select(k => byKey[k]).ToList();
                    var node = new JsonObject
                    {
                        ["candidates"] = kv.Value.Count,
                        ["hypervolume"] = HypervolumeOf(kv.Value),
                        ["front_size"] = Pareto.NonDominated(mine).Count,
                        ["best_perplexity"] = bestOf.Perplexity,
                        ["best_params"] = bestOf.Parameters.Total,
                        ["best_spec"] = bestOf.Spec.DeepClone(),
                        // Every candidate this strategy proposed, in order (history.jsonl lists each sub-network once, under the strategy
                        // that evaluated it first).
                        ["candidates_evaluated"] = new JsonArray(kv.Value.Select(log.Get).Select(h => (JsonNode)new JsonObject
                        {
                            ["spec"] = h.Spec.DeepClone(), ["params"] = h.Parameters.Total,
                                ["non_embedding_params"] = h.Parameters.NonEmbedding, ["perplexity"] = h.Perplexity,
                                ["objectives"] = Named(byKey[h.Key]),
                        }).ToArray()),
                    };
                    if (kv.Key == "stratified" && stratified is { } st)
                        node["bins"] = new JsonObject
                        {
                            ["count"] = bins0!.Count, ["spacing"] = spacing == BinSpacing.Log ? "log" : "linear",
                            ["edges"] = new JsonArray(bins0.Edges.Select(e => (JsonNode)e).ToArray()),
                            ["candidates_per_bin"] = new JsonArray(Enumerable.Range(0, bins0.Count)
                                .Select(b => (JsonNode)st.Candidates.Count(c => c.Bin == b)).ToArray()),
                            ["unreachable"] = new JsonArray(st.EmptyBins.Select(b => (JsonNode)b).ToArray()),
                        };
                    return KeyValuePair.Create(kv.Key, (JsonNode?)node);
                })),
                ["best"] = bestJson.DeepClone(),
                ["pareto_size"] = front.Count,
                ["evaluated"] = log.Evaluated,
                ["from_history"] = log.Resumed,
                ["evaluation_seconds"] = log.EvaluationSeconds,
                ["candidates_per_minute"] = perMinute,
                ["wall_seconds"] = wall.Elapsed.TotalSeconds,
            };
            if (latency is not null)
                summary["latency"] = new JsonObject
                {
                    ["device"] = deviceName, ["batch"] = LB, ["seq_len"] = LT, ["warmup"] = warmup, ["runs"] = runs,
                    ["statistic"] = "median", ["model"] = "extracted", ["measured"] = latency.Measured, ["from_cache"] = latency.Hits,
                };
            SearchLog.WriteJson(Path.Combine(outDir, "summary.json"), summary);

            if (json) { Console.WriteLine(summary.ToJsonString(CliCommon.JsonOptions)); return 0; }
            Console.WriteLine($"budget         [{searchSpace.Low:N0}, {searchSpace.High:N0}] {searchSpace.MeasureName} parameters " +
                $"(parent {parentTotal:N0}), {SearchSpace.Name(kind)} space, val windows of {T}, {maxTokens:N0} predictions max");
            foreach (var (who, list) in byStrategy)
            {
                var b = list.Select(log.Get).MinBy(e => e.Loss)!;
                Console.WriteLine($"{who,-14} {list.Count,4} candidates  hypervolume {HypervolumeOf(list):F4}  best ppl " +
                    $"{b.Perplexity,10:F3}  {b.Parameters.Total,14:N0} params  {b.Key}");
            }
            Console.WriteLine($"best           ppl {best.Perplexity:F3} ({bestBy}), {best.Parameters.Total:N0} params, " +
                $"{best.Flops.Total:N0} FLOPs/token → best.json");
            Console.WriteLine($"evaluated      {log.Evaluated} new ({log.Resumed} answered from history), {perMinute:F1} " +
                $"candidates/minute; Pareto set of {front.Count} in ({goals.Describe}) → pareto.json");
            return 0;
        });
        return cmd;
    }

    /// <summary>pareto-&lt;objective&gt;.svg for each size objective: perplexity against it, by strategy (SearchFrontPlot).</summary>
    static void WritePlots(
        string outDir, ObjectiveSet goals, Dictionary<string, List<string>> byStrategy, Dictionary<string, double[]> byKey)
    {
        int ppl = Array.IndexOf(goals.Items, Objective.Perplexity);
        for (int k = 0; k < goals.Items.Length; k++)
        {
            if (k == ppl) continue;
            string name = ObjectiveSet.Name(goals.Items[k]);
            string label = goals.Items[k] switch
            {
                Objective.Params => "parameters", Objective.Flops => "forward FLOPs per token", _ => "latency (ms)",
            };
            var series = byStrategy.Select(kv => (kv.Key, (IReadOnlyList<(double, double)>)kv.Value
                .Select(key => (byKey[key][k], byKey[key][ppl])).ToList())).ToList();
            AtomicFile.WriteAllText(Path.Combine(outDir, $"pareto-{name}.svg"), SearchFrontPlot.Render(label, series));
        }
    }
}
