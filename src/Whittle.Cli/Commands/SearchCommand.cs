// Policy: `whittle search`: find the sub-network of a parent with the lowest validation perplexity under a parameter
// budget. Fitness is the perplexity of the in-place sub-network (no copies) on the SAME fixed validation windows for
// every candidate. Options, the budget and the data are all checked before the weights are read. Every evaluation is
// appended to history.jsonl as it happens; --resume answers already-evaluated candidates from it. The chosen strategy
// runs first, then (unless --baselines false) random search at the same number of evaluations and the importance
// baseline, so one command yields the comparison.
using System.Diagnostics;
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
        var strategy = new Option<string>("--strategy") { Description = "evolution | random | importance.",
            DefaultValueFactory = _ => "evolution" };
        var evaluations = new Option<int>("--evaluations") { Description = "Distinct candidates to evaluate (per strategy).",
            DefaultValueFactory = _ => 50 };
        var output = new Option<string>("--out") { Description = "Output directory (history.jsonl, best.json, pareto.json, summary.json).",
            Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue a search in --out: candidates in its history.jsonl are not " +
            "evaluated again." };
        var baselines = new Option<bool>("--baselines") { Description = "Also run random search (same evaluations) and the importance " +
            "baseline (default true; --baselines false skips them).", DefaultValueFactory = _ => true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the search.", DefaultValueFactory = _ => 0UL };
        var population = new Option<int>("--population") { Description = "Evolution: population size.", DefaultValueFactory = _ => 16 };
        var elites = new Option<int>("--elites") { Description = "Evolution: best candidates kept unchanged each generation.",
            DefaultValueFactory = _ => 2 };
        var tournament = new Option<int>("--tournament") { Description = "Evolution: tournament size for parent selection.",
            DefaultValueFactory = _ => 3 };
        var mutation = new Option<double>("--mutation-rate") { Description = "Evolution: probability that a gene moves.",
            DefaultValueFactory = _ => 0.3 };
        var crossover = new Option<double>("--crossover-rate") { Description = "Evolution: probability a child has two parents.",
            DefaultValueFactory = _ => 0.5 };
        var stepSizes = new StepSizeOptions();
        var (embedStep, headStep, interStep) = (stepSizes.Embed, stepSizes.Heads, stepSizes.Intermediate);
        var seqLen = new Option<int?>("--seq-len") { Description = "Evaluation window (default: min(128, max_position_embeddings))." };
        var batchSize = new Option<int>("--batch-size") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 8 };
        var evalTokens = new Option<long>("--eval-tokens") { Description = "Predictions per fitness evaluation (the first windows of the " +
            "val split).", DefaultValueFactory = _ => 16384 };
        var device = CliCommon.DeviceOption();
        var cmd = new Command("search",
            "Search sub-networks of a parent under a parameter budget (evolution, random search, importance baseline).");
        foreach (var o in new Option[] { model, data, budgetParams, budgetRatio, budgetOn, tolerance, space, strategy, evaluations, output,
                     resume, baselines, seed, population, elites, tournament, mutation, crossover, embedStep, headStep, interStep,
                     seqLen, batchSize, evalTokens, device, CliCommon.Json })
            cmd.Options.Add(o);

        cmd.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            var config = GptNeoXConfig.Load(modelDir);
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
            if (primary is not ("evolution" or "random" or "importance"))
                throw new WhittleException($"--strategy must be evolution, random or importance, got '{primary}'");
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
            using var parent = GptNeoXCheckpoint.Load(modelDir, backend);
            ulong s = parse.GetValue(seed);
            var wall = Stopwatch.StartNew();
            int shown = 0;
            double Fitness(ActiveArchitecture a, string who) => log.Fitness(a, who, config, T,
                x => Perplexity.Evaluate(parent, dataset.Val, T, B, maxTokens, x).Loss,
                (e, cached) =>
                    Console.Error.WriteLine($"{who} {++shown,4}  {e.Parameters.Total,14:N0} params  ppl {e.Perplexity,10:F3}  " +
                    $"{(cached ? "(from history)" : $"{e.Seconds:F2} s")}  {e.Key}"));

            var byStrategy = new Dictionary<string, List<Evaluated>>();
            var order = new List<string> { primary };
            if (parse.GetValue(baselines))
                order.AddRange(new[] { "evolution", "random", "importance" }.Where(x => x != primary && x != "evolution"));
            foreach (var who in order)
            {
                shown = 0;
                byStrategy[who] = who switch
                {
                    "evolution" => Strategies.Evolution(searchSpace, a => Fitness(a, who), K, s, evo),
                    "random" => Strategies.Random(searchSpace, a => Fitness(a, who), K, s + 1),
                    _ => searchSpace.ImportanceBaseline(ImportanceScores.ReadLayerRanking(modelDir, config.NumLayers)) is { } baseline
                        ? [new Evaluated(baseline, SubnetSpec.Key(baseline), Fitness(baseline, who))]
                        : throw new WhittleException($"no uniformly shrunk sub-network has parameters in [{searchSpace.Low:N0}, " +
                            $"{searchSpace.High:N0}]; widen --tolerance"),
                };
            }

            // Outputs: the best candidate overall, the Pareto front of everything evaluated, a summary per strategy.
            var entries = byStrategy.Values.SelectMany(v => v).Select(e => log.Get(e.Key)).ToList();
            var best = entries.MinBy(e => e.Loss)!;
            string bestBy = byStrategy.Where(kv => kv.Value.Any(e => e.Key == best.Key)).Select(kv => kv.Key).First();
            var bestJson = best.ToJson();
            SearchLog.WriteJson(Path.Combine(outDir, "best.json"), bestJson);
            var front = SearchLog.ParetoFront(log.Entries);
            SearchLog.WriteJson(Path.Combine(outDir, "pareto.json"), new JsonArray(front.Select(e => (JsonNode)e.ToJson()).ToArray()));
            double perMinute = log.EvaluationSeconds > 0 ? log.Evaluated / (log.EvaluationSeconds / 60) : 0;
            var summary = new JsonObject
            {
                ["model"] = Path.GetFullPath(modelDir),
                ["space"] = SearchSpace.Name(kind),
                ["budget"] = new JsonObject { ["params"] = budget, ["counts"] = searchSpace.MeasureName, ["low"] = searchSpace.Low,
                    ["high"] = searchSpace.High, ["parent_params"] = parentTotal },
                ["fitness"] = new JsonObject { ["split"] = "val", ["seq_len"] = T, ["max_tokens"] = maxTokens },
                ["seed"] = s,
                ["strategies"] = new JsonObject(byStrategy.Select(kv =>
                {
                    var bestOf = kv.Value.Select(e => log.Get(e.Key)).MinBy(e => e.Loss)!;
                    return KeyValuePair.Create(kv.Key, (JsonNode?)new JsonObject
                    {
                        ["candidates"] = kv.Value.Count,
                        ["best_perplexity"] = bestOf.Perplexity,
                        ["best_params"] = bestOf.Parameters.Total,
                        ["best_spec"] = bestOf.Spec.DeepClone(),
                        // Every candidate this strategy proposed, in order (history.jsonl lists each sub-network once, under the strategy
                        // that evaluated it first).
                        ["candidates_evaluated"] = new JsonArray(kv.Value.Select(e => log.Get(e.Key)).Select(h => (JsonNode)new JsonObject
                        {
                            ["spec"] = h.Spec.DeepClone(), ["params"] = h.Parameters.Total,
                                ["non_embedding_params"] = h.Parameters.NonEmbedding, ["perplexity"] = h.Perplexity,
                        }).ToArray()),
                    });
                })),
                ["best"] = bestJson.DeepClone(),
                ["pareto_size"] = front.Count,
                ["evaluated"] = log.Evaluated,
                ["from_history"] = log.Resumed,
                ["evaluation_seconds"] = log.EvaluationSeconds,
                ["candidates_per_minute"] = perMinute,
                ["wall_seconds"] = wall.Elapsed.TotalSeconds,
            };
            SearchLog.WriteJson(Path.Combine(outDir, "summary.json"), summary);

            if (json) { Console.WriteLine(summary.ToJsonString(CliCommon.JsonOptions)); return 0; }
            Console.WriteLine($"budget         [{searchSpace.Low:N0}, {searchSpace.High:N0}] {searchSpace.MeasureName} parameters " +
                $"(parent {parentTotal:N0}), {SearchSpace.Name(kind)} space, val windows of {T}, {maxTokens:N0} predictions max");
            foreach (var (who, list) in byStrategy)
            {
                var b = list.Select(e => log.Get(e.Key)).MinBy(e => e.Loss)!;
                Console.WriteLine($"{who,-14} {list.Count,4} candidates  best ppl {b.Perplexity,10:F3}  {b.Parameters.Total,14:N0} " +
                    $"params  {b.Key}");
            }
            Console.WriteLine($"best           ppl {best.Perplexity:F3} ({bestBy}), {best.Parameters.Total:N0} params, " +
                $"{best.Flops.Total:N0} FLOPs/token → best.json");
            Console.WriteLine($"evaluated      {log.Evaluated} new ({log.Resumed} answered from history), {perMinute:F1} " +
                $"candidates/minute; Pareto front of {front.Count} → pareto.json");
            return 0;
        });
        return cmd;
    }
}
