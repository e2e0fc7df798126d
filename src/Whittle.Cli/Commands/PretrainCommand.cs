namespace Whittle.Cli;

/// <summary>`whittle pretrain`: train a GPT-NeoX from scratch (architecture flags or a config.json) or from a checkpoint.</summary>
static class PretrainCommand
{
    public static Command Create()
    {
        var cmd = new Command("pretrain",
            "Train a GPT-NeoX language model on a token dataset (new model or continue a checkpoint). Writes checkpoints/, metrics.jsonl " +
            "and final/ in --out.");
        var t = new TrainingCli();
        t.AddTo(cmd);
        var init = new Option<string?>("--init") { Description = "Start from this model directory (HF GPT-NeoX) instead of a new model." };
        var config = new Option<string?>("--config") { Description = "A config.json for a new model (instead of the architecture flags)." };
        var arch = new ArchitectureOptions();
        cmd.Options.Add(init); cmd.Options.Add(config); arch.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var options = t.Options(p, tokenizerFile: null);   // every option checked before the dataset is opened
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            options = options with { TokenizerFile = TrainingCli.TokenizerOf(data) };
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var model = BuildModel(p, init, config, arch, data, backend, options.Seed, options.SeqLen);
            using var trainer = new Trainer(model, data, options);
            var counts = ParameterCount.Of(model.Config);
            return t.Train(p, trainer, model, options, backend, "pretrain",
                $"pretrain: {counts.Total:N0} parameters ({counts.NonEmbedding:N0} non-embedding) on {backend.Name}, {options.Steps} " +
                    $"steps × {options.TokensPerStep:N0} tokens");
        });
        return cmd;
    }

    static GptNeoX BuildModel(
        ParseResult p, Option<string?> init, Option<string?> config, ArchitectureOptions arch, TokenDataset data, IBackend backend,
        ulong seed, int seqLen)
    {
        if (p.GetValue(init) is { } dir)
        {
            TrainingCli.RequireSameTokenizer(dir, data);
            return GptNeoXCheckpoint.Load(dir, backend);
        }
        var c = p.GetValue(config) is { } file ? GptNeoXConfig.Load(file) : arch.Config(p, data.Meta.VocabSize, data.Meta.EosId, seqLen);
        if (c.VocabSize < data.Meta.VocabSize)
            throw new WhittleException($"vocab_size {c.VocabSize} is smaller than the dataset's vocabulary ({data.Meta.VocabSize})");
        return GptNeoX.CreateRandom(c, backend, seed);
    }
}

/// <summary>Flags describing a new GPT-NeoX (defaults: a small model that trains on a CPU in minutes).</summary>
sealed class ArchitectureOptions
{
    public readonly Option<int> Layers = new("--layers") { Description = "New model: layers.", DefaultValueFactory = _ => 4 };
    public readonly Option<int> Hidden = new("--hidden") { Description = "New model: hidden size.", DefaultValueFactory = _ => 128 };
    public readonly Option<int> Heads = new("--heads") { Description = "New model: attention heads.", DefaultValueFactory = _ => 4 };
    public readonly Option<int?> Intermediate = new("--intermediate") { Description = "New model: MLP width (default 4 × hidden)." };
    public readonly Option<float> RotaryPct = new("--rotary-pct") { Description = "New model: fraction of each head rotated.",
        DefaultValueFactory = _ => 0.25f };
    public readonly Option<bool> Sequential = new("--sequential-residual") { Description = "New model: sequential instead of parallel " +
        "residual." };
    public readonly Option<string> Act = new("--act") { Description = "New model: gelu | gelu_new.", DefaultValueFactory = _ => "gelu" };

    public void AddTo(Command cmd) { foreach (var o in new Option[] { Layers, Hidden, Heads, Intermediate, RotaryPct, Sequential,
        Act }) cmd.Options.Add(o); }

    public GptNeoXConfig Config(ParseResult p, int vocab, int eos, int seqLen) => new GptNeoXConfig
    {
        VocabSize = vocab, HiddenSize = p.GetValue(Hidden), NumLayers = p.GetValue(Layers), NumHeads = p.GetValue(Heads),
        IntermediateSize = p.GetValue(Intermediate) ?? 4 * p.GetValue(Hidden), RotaryPct = p.GetValue(RotaryPct),
        UseParallelResidual = !p.GetValue(Sequential), HiddenAct = p.GetValue(Act)!, MaxPositionEmbeddings = Math.Max(seqLen + 1, 2048),
        BosTokenId = eos, EosTokenId = eos,
    }.Validate("architecture flags");
}
