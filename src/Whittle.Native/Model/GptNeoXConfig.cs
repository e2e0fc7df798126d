using System.Text.Json;
using System.Text.Json.Nodes;

namespace Whittle.Native.Model;

/// <summary>
/// A GPT-NeoX architecture, read from and written to Hugging Face's <c>config.json</c>.
/// Accepts both spellings HF has used (<c>rotary_pct</c> / <c>partial_rotary_factor</c>, <c>rotary_emb_base</c> /
/// <c>rope_theta</c>). Models extracted from a supernet may be non-uniform; they carry our own documented fields,
/// which transformers ignores (so such a config is only loadable by this engine, and <see cref="IsHuggingFaceCompatible"/> says so):
/// <list type="bullet">
/// <item><c>whittle_head_size</c>: head size when heads × head size ≠ hidden_size;</item>
/// <item><c>whittle_layer_heads</c>, <c>whittle_layer_intermediate_sizes</c>: per-layer head counts and MLP widths.</item>
/// </list>
/// </summary>
public sealed record GptNeoXConfig : ModelConfig
{
    public float RotaryPct { get; init; } = 0.25f;
    public float RotaryBase { get; init; } = 10000f;
    public float LayerNormEps { get; init; } = 1e-5f;
    public bool UseParallelResidual { get; init; } = true;
    public string HiddenAct { get; init; } = "gelu";
    /// <summary>Head size; defaults to HiddenSize / NumHeads.</summary>
    public int? ExplicitHeadSize { get; init; }
    /// <summary>Per-layer head counts (null: NumHeads everywhere).</summary>
    public int[]? LayerHeads { get; init; }
    /// <summary>Per-layer MLP widths (null: IntermediateSize everywhere).</summary>
    public int[]? LayerIntermediateSizes { get; init; }

    public override string ModelType => "gpt_neox";
    public override int HeadSize => ExplicitHeadSize ?? HiddenSize / NumHeads;
    public int RotaryDims => (int)(HeadSize * RotaryPct);
    public override int HeadsOf(int layer) => LayerHeads?[layer] ?? NumHeads;
    public override int IntermediateOf(int layer) => LayerIntermediateSizes?[layer] ?? IntermediateSize;
    public override IEnumerable<(string Name, int[] Shape)> Layout() => GptNeoX.Layout(this);
    public override ParameterCount CountParameters() => ParameterCount.Of(this);

    /// <summary>Buffers (not parameters) that older transformers versions stored in GPT-NeoX checkpoints.</summary>
    public override bool IsIgnoredTensor(string name) =>
        name.EndsWith(".attention.bias") || name.EndsWith(".attention.masked_bias") || name.EndsWith(".rotary_emb.inv_freq");

    /// <summary>"gelu" is exact erf GELU; the tanh-approximation names HF uses map to the approximation.</summary>
    public bool GeluTanh => HiddenAct switch
    {
        "gelu" => false,
        "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => true,
        _ => throw new WhittleException($"unsupported hidden_act '{HiddenAct}' (supported: gelu, gelu_new, gelu_fast, gelu_pytorch_tanh)"),
    };

    public override bool IsHuggingFaceCompatible => ExplicitHeadSize is null && LayerHeads is null && LayerIntermediateSizes is null;

    /// <summary>Checks internal consistency; the message says which field is wrong.</summary>
    public GptNeoXConfig Validate(string source = "config")
    {
        void Require(bool ok, string what) { if (!ok) throw new WhittleException($"{source}: {what}"); }
        Require(VocabSize > 0, $"vocab_size must be positive, got {VocabSize}");
        Require(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Require(NumLayers > 0, $"num_hidden_layers must be positive, got {NumLayers}");
        Require(NumHeads > 0, $"num_attention_heads must be positive, got {NumHeads}");
        Require(IntermediateSize > 0, $"intermediate_size must be positive, got {IntermediateSize}");
        Require(ExplicitHeadSize is not null || HiddenSize % NumHeads == 0,
            $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumHeads}");
        Require(HeadSize > 0, $"head size must be positive, got {HeadSize}");
        Require(RotaryPct is >= 0 and <= 1, $"rotary_pct must be in [0, 1], got {RotaryPct}");
        Require(RotaryDims % 2 == 0, $"rotary dims {RotaryDims} (head size {HeadSize} × rotary_pct {RotaryPct}) must be even");
        Require(LayerNormEps > 0 && float.IsFinite(LayerNormEps), $"layer_norm_eps must be positive, got {LayerNormEps}");
        Require(RotaryBase > 0 && float.IsFinite(RotaryBase), $"rotary_emb_base (rope_theta) must be a positive number, got {RotaryBase}");
        Require(MaxPositionEmbeddings > 0, $"max_position_embeddings must be positive");
        Require(LayerHeads is null || LayerHeads.Length == NumLayers,
            $"whittle_layer_heads has {LayerHeads?.Length} entries for {NumLayers} layers");
        Require(LayerIntermediateSizes is null || LayerIntermediateSizes.Length == NumLayers,
            $"whittle_layer_intermediate_sizes has {LayerIntermediateSizes?.Length} entries for {NumLayers} layers");
        Require(LayerHeads is null || LayerHeads.All(h => h > 0), "whittle_layer_heads must be positive");
        Require(LayerIntermediateSizes is null || LayerIntermediateSizes.All(h => h > 0),
            "whittle_layer_intermediate_sizes must be positive");
        _ = GeluTanh;
        // Shapes are int and element counts of one tensor must fit an int: a config whose product overflows would
        // otherwise wrap to a small or negative shape long before any size comparison sees it.
        long C = HiddenSize;
        Require((long)VocabSize * C <= int.MaxValue,
            $"vocab_size {VocabSize} × hidden_size {HiddenSize} is more elements than one tensor holds ({int.MaxValue})");
        for (int l = 0; l < NumLayers; l++)
        {
            long qkv = 3L * HeadsOf(l) * HeadSize;
            Require(qkv * C <= int.MaxValue,
                $"layer {l}: 3 × {HeadsOf(l)} heads × head size {HeadSize} × hidden_size {HiddenSize} is more elements than one tensor " +
                $"holds ({int.MaxValue})");
            Require((long)IntermediateOf(l) * C <= int.MaxValue,
                $"layer {l}: intermediate size {IntermediateOf(l)} × hidden_size {HiddenSize} is more elements than one tensor holds " +
                $"({int.MaxValue})");
        }
        return this;
    }

    // ---------------------------------------------------------------- JSON

    public static new GptNeoXConfig Load(string path)
    {
        if (Directory.Exists(path)) path = System.IO.Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new InvalidFileException(path, "file not found (a model directory needs config.json)");
        return FromJson(JsonField.Load(path), path);
    }

    public static GptNeoXConfig FromJson(JsonObject o, string source) => FromJson(JsonField.FromNode(o, source), source);

    /// <summary>
    /// Every field is type-checked where it is read (see <see cref="JsonField"/>): a wrong JSON type is an error naming
    /// the field, and unknown fields are ignored, as transformers ignores them.
    /// </summary>
    public static new GptNeoXConfig FromJson(JsonField o, string source)
    {
        switch (FamilyOf(o))
        {
            case "gpt_neox": break;
            case null: throw Unsupported(o, source);
            case var family:
                throw new InvalidFileException(source, $"model_type '{family}': this command supports GPT-NeoX models only so far " +
                    "(Llama-family models work with info, eval, pretrain, importance, search and extract)");
        }
        if (o["tie_word_embeddings"].BoolOr(false))
            throw new InvalidFileException(source, "tie_word_embeddings = true is not supported (GPT-NeoX/Pythia use an untied embed_out)");
        if (!o["attention_bias"].BoolOr(true))
            throw new InvalidFileException(source, "attention_bias = false is not supported");

        // Sizes are bounded so that no product of two of them overflows a long (parameter counts, byte sizes).
        const int MaxSize = 1 << 24;
        int Size(string key) => o[key].Int(1, MaxSize);
        float Float(float dflt, params string[] keys)
        {
            foreach (var k in keys) if (!o[k].IsAbsent) return o[k].Float();
            return dflt;
        }
        int[]? PerLayer(string key) => o[key].IsAbsent ? null : o[key].Items().Select(x => x.Int(1, MaxSize)).ToArray();
        return new GptNeoXConfig
        {
            VocabSize = Size("vocab_size"),
            HiddenSize = Size("hidden_size"),
            NumLayers = o["num_hidden_layers"].Int(1, 1 << 16),
            NumHeads = Size("num_attention_heads"),
            IntermediateSize = Size("intermediate_size"),
            RotaryPct = Float(0.25f, "rotary_pct", "partial_rotary_factor"),
            RotaryBase = Float(10000f, "rotary_emb_base", "rope_theta"),
            LayerNormEps = Float(1e-5f, "layer_norm_eps"),
            UseParallelResidual = o["use_parallel_residual"].BoolOr(true),
            HiddenAct = o["hidden_act"].StringOrNull() ?? "gelu",
            MaxPositionEmbeddings = o["max_position_embeddings"].IntOr(2048, 1, int.MaxValue),
            // HF allows a list of ids here (several end tokens); only a single id is used by this engine.
            BosTokenId = o["bos_token_id"].Kind == JsonValueKind.Number ? o["bos_token_id"].Int() : 0,
            EosTokenId = o["eos_token_id"].Kind == JsonValueKind.Number ? o["eos_token_id"].Int() : 0,
            ExplicitHeadSize = o["whittle_head_size"].IsAbsent ? null : o["whittle_head_size"].Int(1, MaxSize),
            LayerHeads = PerLayer("whittle_layer_heads"),
            LayerIntermediateSizes = PerLayer("whittle_layer_intermediate_sizes"),
        }.Validate(source);
    }

    /// <summary>A config.json that Hugging Face transformers loads (plus our per-layer fields when non-uniform).</summary>
    public override JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("GPTNeoXForCausalLM"),
            ["model_type"] = "gpt_neox",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumLayers,
            ["num_attention_heads"] = NumHeads,
            ["intermediate_size"] = IntermediateSize,
            ["rotary_pct"] = Shortest(RotaryPct),
            ["rotary_emb_base"] = Shortest(RotaryBase),
            ["layer_norm_eps"] = Shortest(LayerNormEps),
            ["use_parallel_residual"] = UseParallelResidual,
            ["hidden_act"] = HiddenAct,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["initializer_range"] = 0.02,
            ["tie_word_embeddings"] = false,
            ["attention_dropout"] = 0.0,
            ["hidden_dropout"] = 0.0,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["use_cache"] = true,
            ["torch_dtype"] = "float32",
        };
        if (ExplicitHeadSize is { } h) o["whittle_head_size"] = h;
        if (LayerHeads is { } lh) o["whittle_layer_heads"] = new JsonArray(lh.Select(x => (JsonNode)x).ToArray());
        if (LayerIntermediateSizes is { } li) o["whittle_layer_intermediate_sizes"] = new JsonArray(li.Select(x => (JsonNode)x).ToArray());
        return o;
    }
}
