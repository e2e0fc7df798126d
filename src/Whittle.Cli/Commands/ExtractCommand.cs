// Policy: `whittle extract`: a sub-network of a parent becomes a dense standalone model directory (weights copied from
// the parent's prefix blocks, the parent's tokenizer beside them). The spec is validated against the parent's config
// before any weight is read; the output says plainly whether Hugging Face transformers can load the result.
using Whittle.Native.Cpu;
using Whittle.Native.Search;

namespace Whittle.Cli;

static class ExtractCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Parent model directory (usually the output of `whittle importance`).",
            Required = true };
        var subnet = new Option<string>("--subnet") { Description = "Sub-network spec JSON (or a best.json written by `whittle search`).",
            Required = true };
        var output = new Option<string>("--out") { Description = "Output model directory.", Required = true };
        var cmd = new Command("extract", "Copy a sub-network out of its parent into a dense standalone model.") { model, subnet, output,
            CliCommon.Json };
        cmd.SetAction(parse =>
        {
            string modelDir = parse.GetValue(model)!, outDir = parse.GetValue(output)!;
            var config = ModelConfig.Load(modelDir);
            var spec = SubnetSpec.Load(parse.GetValue(subnet)!, config);
            var childConfig = Extraction.ChildConfig(config, spec);
            if (Path.GetFullPath(outDir) == Path.GetFullPath(modelDir)) throw new WhittleException("--out must differ from --model");

            using var parent = ModelCheckpoint.Load(config, modelDir, CpuBackend.Instance);
            using var child = Extraction.Extract(parent, spec);
            var extra = new[] { "tokenizer.json" }.Select(f => Path.Combine(modelDir, f)).Where(File.Exists).ToList();
            ModelCheckpoint.Save(child, outDir, extraFiles: extra);
            var counts = ParameterCount.Of(childConfig);
            bool hf = childConfig.IsHuggingFaceCompatible;

            if (parse.GetValue(CliCommon.Json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["out"] = Path.GetFullPath(outDir),
                    ["spec"] = SubnetSpec.ToJson(spec),
                    ["parameters"] = new JsonObject { ["embedding"] = counts.Embedding, ["non_embedding"] = counts.NonEmbedding,
                        ["total"] = counts.Total },
                    ["huggingface_compatible"] = hf,
                    ["tokenizer"] = extra.Count > 0,
                }.ToJsonString(CliCommon.JsonOptions));
                return 0;
            }
            Console.WriteLine($"extracted      {SubnetSpec.Key(spec)}");
            Console.WriteLine($"parameters     {counts.Total:N0} total = {counts.Embedding:N0} embedding + {counts.NonEmbedding:N0} " +
                $"non-embedding (parent {ParameterCount.Of(config).Total:N0})");
            Console.WriteLine($"wrote          {Path.GetFullPath(outDir)}" +
                $"{(extra.Count > 0 ? " with the parent's tokenizer.json" : " (the parent has no tokenizer.json)")}");
            Console.WriteLine(hf
                ? $"format         standard Hugging Face {childConfig.ModelType} checkpoint: transformers can load it"
                : "format         non-uniform (config.json has whittle_* per-layer fields): whittle loads it, transformers cannot");
            return 0;
        });
        return cmd;
    }
}
