namespace Whittle.Cli;

/// <summary>
/// `whittle pretrain`: train a GPT-NeoX or Llama-family model from scratch (architecture flags with --family, or a
/// config.json) or from a checkpoint.
/// </summary>
static class PretrainCommand
{
    public static Command Create()
    {
        var cmd = new Command("pretrain",
            "Train a language model (GPT-NeoX or Llama family) on a token dataset (new model or continue a checkpoint). " +
            "Writes checkpoints/, metrics.jsonl and final/ in --out.");
        var t = new TrainingCli();
        t.AddTo(cmd);
        var init = new Option<string?>("--init") { Description = "Start from this model directory (GPT-NeoX or Llama family) instead of " +
            "a new model." };
        var config = new Option<string?>("--config") { Description = "A config.json for a new model (instead of the architecture flags)." };
        var arch = new ArchitectureOptions();
        cmd.Options.Add(init); cmd.Options.Add(config); arch.AddTo(cmd); arch.AddFamilyTo(cmd);
        cmd.SetAction(p =>
        {
            var options = t.Options(p, tokenizerFile: null);   // every option checked before the dataset is opened
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            options = options with { TokenizerFile = TrainingCli.TokenizerOf(data) };
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var model = BuildModel(p, init, config, arch, data, backend, options.Seed, options.SeqLen);
            using var trainer = new Trainer(model, data, options);
            var counts = model.Config.CountParameters();
            return t.Train(p, trainer, model, options, backend, "pretrain",
                $"pretrain: {counts.Total:N0} parameters ({counts.NonEmbedding:N0} non-embedding) on {backend.Name}, {options.Steps} " +
                    $"steps × {options.TokensPerStep:N0} tokens");
        });
        return cmd;
    }

    static LanguageModel BuildModel(ParseResult p, Option<string?> init, Option<string?> config, ArchitectureOptions arch,
        TokenDataset data, IBackend backend, ulong seed, int seqLen)
    {
        if (p.GetValue(init) is { } dir)
        {
            TrainingCli.RequireSameTokenizer(dir, data);
            return ModelCheckpoint.Load(dir, backend);
        }
        var c = p.GetValue(config) is { } file ? ModelConfig.Load(file) : arch.FamilyConfig(p, data.Meta.VocabSize, data.Meta.BosId,
            data.Meta.EosId, seqLen);
        return ArchitectureOptions.NewModel(c, data, backend, seed);
    }
}

/// <summary>
/// Flags describing a new model (defaults: a small GPT-NeoX that trains on a CPU in minutes), shared by pretrain, distill
/// (a new student) and salt (a new large model); <see cref="AddFamilyTo"/> adds --family, --kv-heads, --head-dim and
/// --tie-embeddings for the Llama family.
/// </summary>
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

    public readonly Option<string> Family = new("--family")
    {
        Description = "New model: gpt_neox | llama | qwen2 (q/k/v biases) | qwen3 (QK-norm) | mistral.",
        DefaultValueFactory = _ => "gpt_neox",
    };
    public readonly Option<int?> KvHeads = new("--kv-heads") { Description = "New Llama-family model: key/value heads, dividing --heads " +
        "(default: --heads)." };
    public readonly Option<int?> HeadDim = new("--head-dim") { Description = "New Llama-family model: head size (default: hidden / " +
        "heads)." };
    public readonly Option<bool> Tie = new("--tie-embeddings") { Description = "New Llama-family model: the LM head is the input " +
        "embedding." };

    public void AddTo(Command cmd) { foreach (var o in new Option[] { Layers, Hidden, Heads, Intermediate, RotaryPct, Sequential,
        Act }) cmd.Options.Add(o); }

    public void AddFamilyTo(Command cmd) { foreach (var o in new Option[] { Family, KvHeads, HeadDim, Tie }) cmd.Options.Add(o); }

    /// <summary>
    /// The new model's config for --family: GPT-NeoX (<see cref="Config"/>) or the Llama family, whose gated MLP defaults
    /// to 8/3 × hidden rounded up to a multiple of 8 (about the parameters of a 4 × hidden ungated MLP). A flag of the
    /// other family given explicitly is an error naming it. <paramref name="bos"/> and <paramref name="eos"/> are the
    /// dataset's (<see cref="DatasetMeta.BosId"/>) or the teacher's.
    /// </summary>
    public ModelConfig FamilyConfig(ParseResult p, int vocab, int bos, int eos, int seqLen)
    {
        string family = p.GetValue(Family)!;
        bool Given(Option o) => p.GetResult(o) is { Implicit: false };
        if (family == "gpt_neox")
        {
            foreach (var o in new Option[] { KvHeads, HeadDim, Tie })
                if (Given(o)) throw new WhittleException($"{o.Name} applies to Llama-family models, not --family gpt_neox");
            return Config(p, vocab, bos, eos, seqLen);
        }
        if (!LlamaConfig.Families.Contains(family))
            throw new WhittleException($"--family must be gpt_neox, {string.Join(", ", LlamaConfig.Families)}; " +
                $"got '{ErrorText.Clip(family, 40)}'");
        foreach (var o in new Option[] { RotaryPct, Sequential, Act })
            if (Given(o)) throw new WhittleException($"{o.Name} applies to GPT-NeoX models, not --family {family}");
        int hidden = p.GetValue(Hidden), heads = p.GetValue(Heads);
        OptionCheck.AtLeast("--hidden", hidden, 1); OptionCheck.AtLeast("--heads", heads, 1);
        int? headDim = p.GetValue(HeadDim);
        if (headDim is null && hidden % heads != 0)
            throw new WhittleException($"--hidden {hidden} is not divisible by --heads {heads}; give --head-dim");
        return new LlamaConfig
        {
            Family = family, VocabSize = vocab, HiddenSize = hidden, NumLayers = p.GetValue(Layers), NumHeads = heads,
            NumKeyValueHeads = p.GetValue(KvHeads) ?? heads, ExplicitHeadDim = headDim ?? (family == "qwen3" ? hidden / heads : null),
            IntermediateSize = p.GetValue(Intermediate) ?? (int)Math.Min(int.MaxValue, (8L * hidden / 3 + 7) / 8 * 8),
            TieWordEmbeddings = p.GetValue(Tie), MaxPositionEmbeddings = Math.Max(seqLen + 1, 2048), BosTokenId = bos, EosTokenId = eos,
        }.Validate("architecture flags");
    }

    /// <summary>
    /// A randomly initialised model of any family for <paramref name="c"/> (from the flags or a config.json), refused
    /// before any allocation when it cannot read the dataset's ids or would not fit the engine's one int-indexed buffer.
    /// </summary>
    public static LanguageModel NewModel(ModelConfig c, TokenDataset data, IBackend backend, ulong seed)
    {
        if (c.VocabSize < data.Meta.VocabSize)
            throw new WhittleException($"vocab_size {c.VocabSize} is smaller than the dataset's vocabulary ({data.Meta.VocabSize})");
        // The parameters live in one buffer indexed by int (as loading a checkpoint requires too).
        if (c.CountParameters().Total is var total && total > int.MaxValue)
            throw new WhittleException($"the model would have {total:N0} parameters; this engine holds at most {int.MaxValue:N0}");
        return LanguageModel.CreateRandom(c, backend, seed);
    }

    public GptNeoXConfig Config(ParseResult p, int vocab, int bos, int eos, int seqLen) => new GptNeoXConfig
    {
        VocabSize = vocab, HiddenSize = p.GetValue(Hidden), NumLayers = p.GetValue(Layers), NumHeads = p.GetValue(Heads),
        IntermediateSize = p.GetValue(Intermediate) ?? 4 * p.GetValue(Hidden), RotaryPct = p.GetValue(RotaryPct),
        UseParallelResidual = !p.GetValue(Sequential), HiddenAct = p.GetValue(Act)!, MaxPositionEmbeddings = Math.Max(seqLen + 1, 2048),
        BosTokenId = bos, EosTokenId = eos,
    }.Validate("architecture flags");
}
