// Policy: `whittle importance`: score a parent's units on calibration text and write the parent with its units
// permuted by descending importance (so every prefix-sub-network holds the most important units), plus importance.json
// and the parent's tokenizer. Every input is checked before the weights are read; the output directory appears whole or not at all.
using Whittle.Native.Search;

namespace Whittle.Cli;

static class ImportanceCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Parent model directory (Hugging Face GPT-NeoX or Llama family).",
            Required = true };
        var seqLen = new Option<int?>("--seq-len") { Description = "Tokens per calibration window (default: min(128, " +
            "max_position_embeddings))." };
        var batchSize = new Option<int>("--batch-size") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 8 };
        var batches = new Option<int>("--batches") { Description = "Calibration batches (fewer if the text is shorter).",
            DefaultValueFactory = _ => 16 };
        var device = CliCommon.DeviceOption();
        var output = new Option<string>("--out") { Description = "Output directory for the permuted model and importance.json.",
            Required = true };
        var cmd = new Command("importance",
            "Score embedding channels, heads (and query groups), MLP neurons and layers on calibration text; write the parent permuted " +
            "by importance.")
        { model, seqLen, batchSize, batches, device, output, CliCommon.Json };
        var inputOptions = new TokenInputOptions();
        inputOptions.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            var config = ModelConfig.Load(modelDir);
            int T = parse.GetValue(seqLen) ?? Math.Min(128, config.MaxPositionEmbeddings);
            int B = parse.GetValue(batchSize), N = parse.GetValue(batches);
            if (T < 1 || T > config.MaxPositionEmbeddings)
                throw new WhittleException($"--seq-len {T} must be in [1, {config.MaxPositionEmbeddings}] (the model's " +
                $"max_position_embeddings)");
            if (B < 1) throw new WhittleException($"--batch-size must be at least 1, got {B}");
            if (N < 1) throw new WhittleException($"--batches must be at least 1, got {N}");
            if (Path.GetFullPath(outDir) == Path.GetFullPath(modelDir)) throw new WhittleException("--out must differ from --model");
            using var source = inputOptions.Open(parse, modelDir, config.VocabSize);
            var calibration = TokenInputs.Windows(source.Tokens, T, B, N);
            if (calibration.Count == 0)
                throw new WhittleException($"{source.Description}: {source.Tokens.Length} tokens, fewer than one window of --seq-len {T}");

            using var backend = Backends.Create(parse.GetValue(device)!);
            using var parent = ModelCheckpoint.Load(config, modelDir, backend);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var scores = Importance.Score(
                parent, calibration, done => Console.Error.WriteLine($"importance: batch {done}/{calibration.Count}"));
            var perm = scores.ToPermutation();
            Permutation.Apply(parent, perm);
            var report = scores.ToJson(perm);
            report["source_model"] = Path.GetFullPath(modelDir);
            report["seq_len"] = T;

            var scratch = Path.Combine(Path.GetTempPath(), "whittle-importance-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(scratch);
            try
            {
                var importanceFile = Path.Combine(scratch, "importance.json");
                SearchLog.WriteJson(importanceFile, report);
                var extra = new List<string> { importanceFile };
                var tok = Path.Combine(modelDir, "tokenizer.json");
                if (File.Exists(tok)) extra.Add(tok);
                ModelCheckpoint.Save(parent, outDir, extraFiles: extra);
            }
            finally { Directory.Delete(scratch, true); }

            if (parse.GetValue(CliCommon.Json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["out"] = Path.GetFullPath(outDir),
                    ["calibration_tokens"] = scores.Tokens,
                    ["seconds"] = sw.Elapsed.TotalSeconds,
                    ["layers"] = report["layers"]!.DeepClone(),
                    ["layer_ranking"] = report["layer_ranking"]!.DeepClone(),
                }.ToJsonString(CliCommon.JsonOptions));
                return 0;
            }
            Console.WriteLine($"calibration    {scores.Tokens:N0} tokens ({calibration.Count} batches of ≤ {B} × {T}) from " +
                $"{source.Description}, {sw.Elapsed.TotalSeconds:F1} s");
            Console.WriteLine($"block influence {string.Join("  ", scores.Layers.Select((s, l) => $"L{l} {s:F4}"))}");
            Console.WriteLine($"layer ranking  {string.Join(" > ", scores.LayerRanking)} (most to least influential)");
            Console.WriteLine($"wrote          {Path.GetFullPath(outDir)} (units permuted by importance, same function; importance.json)");
            return 0;
        });
        return cmd;
    }
}
