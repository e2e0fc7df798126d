namespace Whittle.Cli;

/// <summary>`whittle info DIR`: what a model directory holds, checked against its config without loading the weights.</summary>
static class InfoCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("model-dir") { Description = "A Hugging Face GPT-NeoX model directory (config.json + " +
            "model.safetensors or a sharded index)." };
        var cmd = new Command("info",
            "Show a model's architecture, parameter counts (embedding, non-embedding, total), stored dtype and size.") { dir,
            CliCommon.Json };
        cmd.SetAction(parse =>
        {
            string path = parse.GetValue(dir)!;
            if (!Directory.Exists(path)) throw new WhittleException($"{path}: no such model directory");
            var config = GptNeoXConfig.Load(path);
            using var reader = new CheckpointReader(path);
            GptNeoXCheckpoint.CheckTensors(path, config, reader);
            var counts = ParameterCount.Of(config);
            var dtypes = reader.Names.Select(n => reader.Find(n).DTypeName.ToLowerInvariant()).Distinct().Order().ToArray();
            long bytes = reader.Files.Sum(f => new FileInfo(f.Path).Length);

            if (parse.GetValue(CliCommon.Json))
            {
                var o = new JsonObject
                {
                    ["path"] = Path.GetFullPath(path),
                    ["architecture"] = "gpt_neox",
                    ["config"] = config.ToJson(),
                    ["head_size"] = config.HeadSize,
                    ["rotary_dims"] = config.RotaryDims,
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
            Console.WriteLine($"architecture   GPT-NeoX, {config.NumLayers} layers, hidden {config.HiddenSize}, {config.NumHeads} heads " +
                $"× {config.HeadSize}, intermediate {config.IntermediateSize}");
            Console.WriteLine($"               rotary {config.RotaryDims} of {config.HeadSize} dims (base {config.RotaryBase}), " +
                $"{(config.UseParallelResidual ? "parallel" : "sequential")} residual, {config.HiddenAct}, vocab {config.VocabSize}, " +
                $"context {config.MaxPositionEmbeddings}");
            if (!config.IsHuggingFaceCompatible)
                Console.WriteLine("               non-uniform (per-layer heads/widths): loadable by whittle, not by transformers");
            Console.WriteLine($"parameters     {counts.Total:N0} total = {counts.Embedding:N0} embedding + {counts.NonEmbedding:N0} " +
                $"non-embedding");
            Console.WriteLine($"stored as      {string.Join(", ", dtypes)}, {bytes:N0} bytes");
            return 0;
        });
        return cmd;
    }
}
