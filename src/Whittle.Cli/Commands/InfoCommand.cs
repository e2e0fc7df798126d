namespace Whittle.Cli;

/// <summary>`whittle info DIR`: what a model directory holds, checked against its config without loading the weights.</summary>
static class InfoCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("model-dir") { Description = "A Hugging Face model directory (GPT-NeoX or Llama family: " +
            "config.json + model.safetensors or a sharded index)." };
        var cmd = new Command("info",
            "Show a model's architecture, parameter counts (embedding, non-embedding, total), stored dtype and size.") { dir,
            CliCommon.Json };
        cmd.SetAction(parse =>
        {
            string path = parse.GetValue(dir)!;
            if (!Directory.Exists(path)) throw new WhittleException($"{path}: no such model directory");
            var config = ModelConfig.Load(path);
            using var reader = new CheckpointReader(path);
            ModelCheckpoint.CheckTensors(path, config, reader);
            var counts = config.CountParameters();
            var dtypes = reader.Names.Select(n => reader.Find(n).DTypeName.ToLowerInvariant()).Distinct().Order().ToArray();
            long bytes = reader.Files.Sum(f => new FileInfo(f.Path).Length);

            if (parse.GetValue(CliCommon.Json))
            {
                var o = new JsonObject
                {
                    ["path"] = Path.GetFullPath(path),
                    ["architecture"] = config.ModelType,
                    ["config"] = config.ToJson(),
                    ["head_size"] = config.HeadSize,
                    ["rotary_dims"] = config is GptNeoXConfig neox ? neox.RotaryDims : config.HeadSize,
                    ["kv_heads"] = config is LlamaConfig l ? l.NumKeyValueHeads : config.NumHeads,
                    ["parameters"] = new JsonObject { ["embedding"] = counts.Embedding, ["non_embedding"] = counts.NonEmbedding,
                        ["total"] = counts.Total },
                    ["dtype"] = new JsonArray(dtypes.Select(x => (JsonNode)x!).ToArray()),
                    ["bytes"] = bytes,
                    ["huggingface_compatible"] = config.IsHuggingFaceCompatible,
                };
                Console.WriteLine(o.ToJsonString(CliCommon.JsonOptions));
                return 0;
            }
            Console.WriteLine($"model          {Path.GetFullPath(path)}");
            foreach (var line in Describe(config)) Console.WriteLine(line);
            Console.WriteLine($"parameters     {counts.Total:N0} total = {counts.Embedding:N0} embedding + {counts.NonEmbedding:N0} " +
                $"non-embedding");
            Console.WriteLine($"stored as      {string.Join(", ", dtypes)}, {bytes:N0} bytes");
            return 0;
        });
        return cmd;
    }

    /// <summary>The architecture lines of the text report.</summary>
    static IEnumerable<string> Describe(ModelConfig config)
    {
        const string Indent = "               ";
        if (config is GptNeoXConfig c)
        {
            yield return $"architecture   GPT-NeoX, {c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads} heads × {c.HeadSize}, " +
                $"intermediate {c.IntermediateSize}";
            string residual = c.UseParallelResidual ? "parallel" : "sequential";
            yield return $"{Indent}rotary {c.RotaryDims} of {c.HeadSize} dims (base {c.RotaryBase}), {residual} residual, " +
                $"{c.HiddenAct}, vocab {c.VocabSize}, context {c.MaxPositionEmbeddings}";
            if (!c.IsHuggingFaceCompatible)
                yield return $"{Indent}non-uniform (per-layer heads/widths): loadable by whittle, not by transformers";
            yield break;
        }
        var l = (LlamaConfig)config;
        yield return $"architecture   {l.Family}, {l.NumLayers} layers, hidden {l.HiddenSize}, {l.NumHeads} query heads and " +
            $"{l.NumKeyValueHeads} kv heads × {l.HeadSize}, intermediate {l.IntermediateSize} (gated silu)";
        string scaling = l.RopeScaling is { } r ? $", {r.Kind.ToString().ToLowerInvariant()} scaling × {r.Factor}" : "";
        var biases = new[] { (l.QkvBias, "q/k/v"), (l.OutputBias, "o"), (l.GatedMlpBias, "mlp") }
            .Where(b => b.Item1).Select(b => b.Item2).ToArray();
        string qkNorm = l.QkNorm ? " (also per head on q and k)" : "";
        yield return $"{Indent}rotary over all {l.HeadSize} dims (theta {l.RopeTheta}{scaling}), RMSNorm eps {l.RmsNormEps}{qkNorm}, " +
            $"{(l.TieWordEmbeddings ? "tied" : "untied")} embeddings, {(biases.Length == 0 ? "no" : string.Join(", ", biases))} biases, " +
            $"vocab {l.VocabSize}, context {l.MaxPositionEmbeddings}";
    }
}
