// Policy: `whittle salt-select`: scores the training windows of a token dataset with a small model and writes the
// SALT_DS selection (see SaltSelection for the definitions). Every option, the model's config and the dataset's
// meta.json (vocabulary, tokenizer hash) are checked before any weight is loaded or any window is scored.
// Progress goes to stderr, one line per 10%; the summary (or --json) to stdout.
using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Cli;

static class SaltSelectCommand
{
    /// <summary>A dataset split read through the evaluator's token-source interface.</summary>
    sealed class SplitSource(TokenStream stream) : ITokenSource
    {
        public long Length => stream.Length;
        public void Read(long start, Span<int> destination) => stream.Read(start, destination);
    }

    public static Command Create()
    {
        var small = new Option<string>("--small") { Description = "The small model's directory (Hugging Face GPT-NeoX or Llama family).",
            Required = true };
        var data = new Option<string>("--data") { Description = "Token dataset directory (from `whittle tokenize`); its train split is " +
            "scored.", Required = true };
        var topK = new Option<int>("--top-k") { Description = "Keep a token when its true next token is in the small model's top-k.",
            DefaultValueFactory = _ => 10 };
        var keep = new Option<double>("--keep") { Description = "Fraction in (0, 1] of the scored windows to select (highest scores).",
            Required = true };
        var output = new Option<string>("--out") { Description = "Selection file to write (JSON).", Required = true };
        var seqLen = new Option<int>("--seq-len") { Description = "Predictions per window T (windows are T + 1 tokens).",
            DefaultValueFactory = _ => 128 };
        var maxSeq = new Option<long?>("--max-sequences") { Description = "Score at most this many windows (from the start of the " +
            "split)." };
        var batch = new Option<int>("--batch-size") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 4 };
        var device = CliCommon.DeviceOption();
        var cmd = new Command("salt-select",
            "SALT_DS: select the training windows whose tokens a small model finds hard but plausible (median loss over top-k hits).")
            { small, data, topK, keep, output, seqLen, maxSeq, batch, device, CliCommon.Json };
        cmd.SetAction(parse =>
        {
            string modelDir = parse.GetValue(small)!, dataDir = parse.GetValue(data)!, outPath = parse.GetValue(output)!;
            int k = parse.GetValue(topK), t = parse.GetValue(seqLen), b = parse.GetValue(batch);
            double f = parse.GetValue(keep);
            long max = parse.GetValue(maxSeq) ?? long.MaxValue;
            string dev = parse.GetValue(device)!;

            // every check before any work
            SaltSelection.CheckKeep(f);
            if (dev is not ("cpu" or "cuda")) throw new WhittleException($"--device must be cpu or cuda, got '{dev}'");
            if (!Directory.Exists(modelDir)) throw new WhittleException($"{modelDir}: no such model directory (--small)");
            var config = ModelConfig.Load(modelDir);
            SaltSelection.CheckTopK(k, config.VocabSize);
            if (t < 1 || t > config.MaxPositionEmbeddings)
                throw new WhittleException($"--seq-len must be in [1, {config.MaxPositionEmbeddings}] (the model's context), got {t}");
            if (b < 1) throw new WhittleException($"--batch-size must be at least 1, got {b}");
            if (max < 1) throw new WhittleException($"--max-sequences must be at least 1, got {max}");
            var outDir = Path.GetDirectoryName(Path.GetFullPath(outPath))!;
            if (!Directory.Exists(outDir)) throw new WhittleException($"{outPath}: the directory {outDir} does not exist (--out)");
            using var dataset = TokenDataset.Open(dataDir);
            TrainingCli.RequireModelFitsData(modelDir, config, "small model", dataset);

            using IBackend backend = dev == "cuda" ? Backends.Cuda() : CpuBackend.Instance;
            using var model = ModelCheckpoint.Load(config, modelDir, backend);
            int lastDecile = -1;
            var result = SaltSelection.Run(model, new SplitSource(dataset.Train), t, k, f, max, b, (done, total) =>
            {
                int decile = (int)(10 * done / total);
                if (decile != lastDecile) { lastDecile = decile; Console.Error.WriteLine($"salt-select: {done}/{total} windows scored"); }
            });
            result.Save(outPath, Path.GetFullPath(modelDir), Path.GetFullPath(dataDir));
            if (parse.GetValue(CliCommon.Json))
            {
                var o = result.ToJson(Path.GetFullPath(modelDir), Path.GetFullPath(dataDir));
                o.Remove("selected");
                o["out"] = Path.GetFullPath(outPath);
                Console.WriteLine(o.ToJsonString(CliCommon.JsonOptions));
                return 0;
            }
            Console.WriteLine($"scored         {result.Windows} windows of {t} + 1 tokens in {result.Seconds:0.0} s " +
                $"({result.Windows * t / Math.Max(result.Seconds, 1e-9):N0} tokens/s)");
            Console.WriteLine($"with a score   {result.Scored} (a token in the small model's top-{k})");
            Console.WriteLine($"selected       {result.Selected.Count} (keep {f})" +
                (result.Selected.Count > 0 ? $", scores {result.Selected.Min(w => w.Score):0.000} .. " +
                    $"{result.Selected.Max(w => w.Score):0.000}" : ""));
            Console.WriteLine($"wrote          {Path.GetFullPath(outPath)}");
            return 0;
        });
        return cmd;
    }
}
