using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Tensors;

namespace Whittle.Native.Model;

/// <summary>How rotary frequencies are rescaled for a longer context (Hugging Face's rope_scaling).</summary>
public enum RopeScalingKind { None, Linear, Llama3 }

/// <summary>
/// rope_scaling: Linear divides every inverse frequency by <see cref="Factor"/>; Llama3 (Llama 3.1) divides the low
/// frequencies (wavelength above original_max_position_embeddings / low_freq_factor) by the factor, keeps the high ones
/// (wavelength below original / high_freq_factor) and interpolates smoothly in between.
/// </summary>
public sealed record RopeScaling(RopeScalingKind Kind, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4,
    int OriginalMaxPositionEmbeddings = 8192)
{
    /// <summary>The scaled inverse frequencies, from the unscaled base^(−2i/D) ones; exactly HF's formulas, in double.</summary>
    public double[] Apply(double[] invFreq)
    {
        if (Kind == RopeScalingKind.None) return invFreq;
        if (Kind == RopeScalingKind.Linear) return invFreq.Select(f => f / Factor).ToArray();
        double old = OriginalMaxPositionEmbeddings, lowWavelen = old / LowFreqFactor, highWavelen = old / HighFreqFactor;
        return invFreq.Select(f =>
        {
            double wavelen = 2 * Math.PI / f;
            if (wavelen < highWavelen) return f;                   // high frequency: unchanged
            if (wavelen > lowWavelen) return f / Factor;           // low frequency: scaled
            double smooth = (old / wavelen - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
            return (1 - smooth) * f / Factor + smooth * f;         // in between: interpolated
        }).ToArray();
    }
}

/// <summary>
/// A Llama-family architecture, read from and written to Hugging Face's <c>config.json</c>, with HF's semantics for
/// each model_type (defaults are HF's too, where a key is absent):
/// <list type="bullet">
/// <item><c>llama</c> (LlamaForCausalLM: Llama 2/3, SmolLM, TinyLlama): biases on q, k, v and o by attention_bias,
///   on gate, up and down by mlp_bias;</item>
/// <item><c>qwen2</c>: biases on q, k and v always, none on o or the MLP (attention_bias and mlp_bias are not read);</item>
/// <item><c>qwen3</c>: RMSNorm per head on q and k (q_norm, k_norm) before the rotary; head_dim defaults to 128;
///   q, k, v and o biases by attention_bias;</item>
/// <item><c>mistral</c>: no biases; only without a sliding window (sliding_window null, or no smaller than
///   max_position_embeddings).</item>
/// </list>
/// All of them: RMSNorm (rms_norm_eps), the gated MLP down(silu(gate(x)) ⊙ up(x)), grouped-query attention
/// (num_key_value_heads), rotary over the whole head (rope_theta; rope_scaling linear or llama3), tie_word_embeddings.
/// A key that asks for a feature this engine lacks is refused by name, never read as a different model: sliding
/// windows in use, mixture-of-experts keys, other rope_scaling types, partial rotary, logit softcapping, a hidden_act
/// other than silu.
/// <para>Models extracted from a sub-network of non-uniform size carry two documented fields of this engine's own, which
/// transformers ignores (so such a config is only loadable by this engine, and <see cref="IsHuggingFaceCompatible"/> says so):
/// <c>whittle_layer_kv_heads</c> (key/value heads, i.e. query groups, per layer; each layer has that many × num_attention_heads /
/// num_key_value_heads query heads) and <c>whittle_layer_intermediate_sizes</c> (MLP widths per layer). A head size other
/// than hidden_size / num_attention_heads is Hugging Face's own head_dim.</para>
/// </summary>
public sealed record LlamaConfig : ModelConfig
{
    /// <summary>llama, qwen2, qwen3 or mistral.</summary>
    public required string Family { get; init; }
    public required int NumKeyValueHeads { get; init; }
    /// <summary>head_dim when given (it may differ from hidden_size / num_attention_heads).</summary>
    public int? ExplicitHeadDim { get; init; }
    public float RmsNormEps { get; init; } = 1e-6f;
    public double RopeTheta { get; init; } = 10000;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>attention_bias (llama, qwen3; not read for qwen2 and mistral).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>mlp_bias (llama only).</summary>
    public bool MlpBias { get; init; }
    /// <summary>Per-layer key/value heads (whittle_layer_kv_heads; null: num_key_value_heads everywhere).</summary>
    public int[]? LayerKvHeads { get; init; }
    /// <summary>Per-layer MLP widths (whittle_layer_intermediate_sizes; null: intermediate_size everywhere).</summary>
    public int[]? LayerIntermediateSizes { get; init; }

    public static readonly string[] Families = ["llama", "qwen2", "qwen3", "mistral"];

    public override string ModelType => Family;
    public override int HeadSize => ExplicitHeadDim ?? HiddenSize / NumHeads;
    /// <summary>Biases on q_proj, k_proj, v_proj.</summary>
    public bool QkvBias => Family == "qwen2" || (AttentionBias && Family is "llama" or "qwen3");
    /// <summary>A bias on o_proj.</summary>
    public bool OutputBias => AttentionBias && Family is "llama" or "qwen3";
    /// <summary>Biases on gate_proj, up_proj, down_proj.</summary>
    public bool GatedMlpBias => MlpBias && Family == "llama";
    /// <summary>RMSNorm on each head of q and k before the rotary (Qwen3).</summary>
    public bool QkNorm => Family == "qwen3";
    public override bool IsHuggingFaceCompatible => LayerKvHeads is null && LayerIntermediateSizes is null;
    /// <summary>Query heads per key/value head, the same in every layer.</summary>
    public int GroupSize => NumHeads / NumKeyValueHeads;
    public override int KvHeadsOf(int layer) => LayerKvHeads?[layer] ?? NumKeyValueHeads;
    public override int HeadsOf(int layer) => KvHeadsOf(layer) * GroupSize;
    public override int IntermediateOf(int layer) => LayerIntermediateSizes?[layer] ?? IntermediateSize;
    public override bool IsIgnoredTensor(string name) =>
        name.EndsWith(".rotary_emb.inv_freq") || (TieWordEmbeddings && name == Llama.LmHead);
    public override IEnumerable<(string Name, int[] Shape)> Layout() => Llama.Layout(this);

    /// <summary>"Embedding" is embed_tokens plus lm_head when untied (a tied head is the same tensor, counted once).</summary>
    public override ParameterCount CountParameters()
    {
        long embedding = 0, total = 0;
        foreach (var (name, shape) in Layout())
        {
            long n = Tensor.Numel(shape);
            total += n;
            if (name is Llama.EmbedTokens or Llama.LmHead) embedding += n;
        }
        return new ParameterCount(embedding, total - embedding);
    }

    /// <summary>The inverse frequencies of the rotary over the whole head, D/2 of them: rope_theta^(−2i/D), then rope_scaling.</summary>
    public double[] RotaryInverseFrequencies()
    {
        int half = HeadSize / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(RopeTheta, 2.0 * i / HeadSize);
        return RopeScaling?.Apply(inv) ?? inv;
    }

    /// <summary>Checks internal consistency (sizes, divisibility, ranges, overflow); the message names the field.</summary>
    public LlamaConfig Validate(string source = "config")
    {
        void Require(bool ok, string what) { if (!ok) throw new WhittleException($"{source}: {what}"); }
        Require(Families.Contains(Family), $"model_type '{Family}' is not a Llama-family type ({string.Join(", ", Families)})");
        Require(VocabSize > 0, $"vocab_size must be positive, got {VocabSize}");
        Require(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Require(NumLayers > 0, $"num_hidden_layers must be positive, got {NumLayers}");
        Require(NumHeads > 0, $"num_attention_heads must be positive, got {NumHeads}");
        Require(NumKeyValueHeads > 0 && NumHeads % NumKeyValueHeads == 0,
            $"num_key_value_heads {NumKeyValueHeads} must be positive and divide num_attention_heads {NumHeads}");
        Require(IntermediateSize > 0, $"intermediate_size must be positive, got {IntermediateSize}");
        Require(ExplicitHeadDim is not null || HiddenSize % NumHeads == 0,
            $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumHeads} (and there is no head_dim)");
        Require(HeadSize > 0 && HeadSize % 2 == 0, $"head_dim {HeadSize} must be positive and even (the rotary turns pairs of dims)");
        Require(RmsNormEps > 0 && float.IsFinite(RmsNormEps), $"rms_norm_eps must be positive, got {RmsNormEps}");
        Require(RopeTheta > 0 && double.IsFinite(RopeTheta), $"rope_theta must be a positive number, got {RopeTheta}");
        Require(MaxPositionEmbeddings > 0, "max_position_embeddings must be positive");
        // Shapes are int and one tensor's elements must fit an int: a product that overflows would wrap to a small shape.
        long C = HiddenSize;
        Require((long)VocabSize * C <= int.MaxValue,
            $"vocab_size {VocabSize} × hidden_size {HiddenSize} is more elements than one tensor holds ({int.MaxValue})");
        Require((long)NumHeads * HeadSize * C <= int.MaxValue,
            $"num_attention_heads {NumHeads} × head_dim {HeadSize} × hidden_size {HiddenSize} is more elements than one tensor " +
            $"holds ({int.MaxValue})");
        Require((long)IntermediateSize * C <= int.MaxValue,
            $"intermediate_size {IntermediateSize} × hidden_size {HiddenSize} is more elements than one tensor holds ({int.MaxValue})");
        Require(LayerKvHeads is null || LayerKvHeads.Length == NumLayers,
            $"whittle_layer_kv_heads has {LayerKvHeads?.Length} entries for {NumLayers} layers");
        Require(LayerIntermediateSizes is null || LayerIntermediateSizes.Length == NumLayers,
            $"whittle_layer_intermediate_sizes has {LayerIntermediateSizes?.Length} entries for {NumLayers} layers");
        Require(LayerKvHeads is null || LayerKvHeads.All(k => k > 0 && k <= NumKeyValueHeads),
            $"whittle_layer_kv_heads must be in [1, num_key_value_heads {NumKeyValueHeads}]");
        Require(LayerIntermediateSizes is null || LayerIntermediateSizes.All(m => m > 0 && m <= IntermediateSize),
            $"whittle_layer_intermediate_sizes must be in [1, intermediate_size {IntermediateSize}]");
        return this;
    }

    // ---------------------------------------------------------------- JSON

    /// <summary>Keys whose presence (with a value that turns the feature on) means a model this engine does not compute.</summary>
    static readonly string[] MixtureOfExperts =
        ["num_experts", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "n_routed_experts", "n_shared_experts"];

    static readonly string[] Softcapping = ["attn_logit_softcapping", "final_logit_softcapping"];

    /// <summary>
    /// Every field is type-checked where it is read (<see cref="JsonField"/>); unknown fields are ignored, as transformers
    /// ignores them, except those that would change the model (see the type's summary), which are errors naming the key.
    /// </summary>
    public static new LlamaConfig FromJson(JsonField o, string source)
    {
        string family = FamilyOf(o) is { } f && Families.Contains(f) ? f : throw Unsupported(o, source);
        // Sizes are bounded so that no product of two of them overflows a long (parameter counts, byte sizes).
        const int MaxSize = 1 << 24;
        int Size(string key, int? dflt = null) => dflt is { } d ? o[key].IntOr(d, 1, MaxSize) : o[key].Int(1, MaxSize);

        foreach (var key in MixtureOfExperts)
            if (!o[key].IsAbsent && !(o[key].Kind == JsonValueKind.Number && o[key].Double() == 0))
                throw o[key].Error("asks for a mixture of experts, which this engine does not compute (only dense Llama-family models)");
        foreach (var key in Softcapping)
            if (!o[key].IsAbsent) throw o[key].Error("asks for logit softcapping (Gemma), which this engine does not compute");
        string act = o["hidden_act"].StringOrNull() ?? "silu";
        if (act is not ("silu" or "swish"))
            throw o["hidden_act"].Error($"is '{JsonField.Truncate(act)}'; Llama-family models here use silu");
        if (!o["partial_rotary_factor"].IsAbsent && o["partial_rotary_factor"].Double() != 1)
            throw o["partial_rotary_factor"].Error("must be 1 (the rotary turns the whole head); partial rotary is not supported");
        int maxPositions = o["max_position_embeddings"].IntOr(family switch { "qwen2" or "qwen3" => 32768, "mistral" => 131072, _ => 2048 },
            1, int.MaxValue);
        RefuseSlidingWindow(o, family, maxPositions);

        int heads = Size("num_attention_heads");
        int[]? PerLayer(string key) => o[key].IsAbsent ? null : o[key].Items().Select(x => x.Int(1, MaxSize)).ToArray();
        var (ropeTheta, scaling) = ReadRope(o);
        return new LlamaConfig
        {
            Family = family,
            VocabSize = Size("vocab_size"),
            HiddenSize = Size("hidden_size"),
            NumLayers = o["num_hidden_layers"].Int(1, 1 << 16),
            NumHeads = heads,
            NumKeyValueHeads = Size("num_key_value_heads", heads),
            IntermediateSize = Size("intermediate_size"),
            ExplicitHeadDim = o["head_dim"].IsAbsent ? family == "qwen3" ? 128 : null : o["head_dim"].Int(1, MaxSize),
            RmsNormEps = o["rms_norm_eps"].FloatOr(1e-6f),
            RopeTheta = ropeTheta,
            RopeScaling = scaling,
            TieWordEmbeddings = o["tie_word_embeddings"].BoolOr(false),
            AttentionBias = family is "llama" or "qwen3" && o["attention_bias"].BoolOr(false),
            MlpBias = family == "llama" && o["mlp_bias"].BoolOr(false),
            LayerKvHeads = PerLayer("whittle_layer_kv_heads"),
            LayerIntermediateSizes = PerLayer("whittle_layer_intermediate_sizes"),
            MaxPositionEmbeddings = maxPositions,
            // HF allows a list of ids here (several end tokens); only a single id is used by this engine.
            BosTokenId = o["bos_token_id"].Kind == JsonValueKind.Number ? o["bos_token_id"].Int() : 0,
            EosTokenId = o["eos_token_id"].Kind == JsonValueKind.Number ? o["eos_token_id"].Int() : 0,
        }.Validate(source);
    }

    /// <summary>
    /// A sliding window is in use when it would mask anything within max_position_embeddings: Mistral's sliding_window
    /// (HF default 4096) unless null or no smaller than the context; Qwen's use_sliding_window = true; any layer_types
    /// entry "sliding_attention". Llama's architecture has no sliding window (HF ignores the key there too).
    /// </summary>
    static void RefuseSlidingWindow(JsonField o, string family, int maxPositions)
    {
        const string Problem = "asks for sliding-window attention, which this engine does not compute";
        if (family == "mistral")
        {
            var w = o["sliding_window"];
            int window = w.Exists ? w.IsAbsent ? int.MaxValue : w.Int(1, int.MaxValue) : 4096;
            if (window < maxPositions)
                throw w.Error($"{Problem} (window {window} < max_position_embeddings {maxPositions}; null turns it off)");
        }
        if (family is "qwen2" or "qwen3" && o["use_sliding_window"].BoolOr(false)) throw o["use_sliding_window"].Error(Problem);
        foreach (var t in o["layer_types"].ItemsOrEmpty())
            if (t.String() != "full_attention") throw t.Error($"is '{JsonField.Truncate(t.String())}': {Problem} (only full_attention)");
    }

    /// <summary>rope_theta and rope_scaling (null or type default: none; linear; llama3); other types are refused by name.</summary>
    static (double Theta, RopeScaling? Scaling) ReadRope(JsonField o)
    {
        double theta = o["rope_theta"].DoubleOr(10000);
        var s = o["rope_scaling"];
        if (s.IsAbsent) return (theta, null);
        s.RequireObject();
        var typeField = s["rope_type"].IsAbsent ? s["type"] : s["rope_type"];
        string type = typeField.StringOrNull() ?? throw s.Error("has neither rope_type nor type");
        double Positive(JsonField f) => f.Double() is var x && x > 0 && double.IsFinite(x) ? x : throw f.Error("must be a positive number");
        switch (type)
        {
            case "default": return (theta, null);
            case "linear": return (theta, new RopeScaling(RopeScalingKind.Linear, Positive(s["factor"])));
            case "llama3":
                var scaling = new RopeScaling(RopeScalingKind.Llama3, Positive(s["factor"]), Positive(s["low_freq_factor"]),
                    Positive(s["high_freq_factor"]), s["original_max_position_embeddings"].Int(1, int.MaxValue));
                if (!(scaling.HighFreqFactor > scaling.LowFreqFactor))
                    throw s["high_freq_factor"].Error("must be larger than low_freq_factor");
                return (theta, scaling);
            default:
                throw typeField.Error($"is '{JsonField.Truncate(type)}': this rope_scaling type is not supported " +
                    "(supported: linear, llama3)");
        }
    }

    /// <summary>A config.json transformers loads as <see cref="Family"/>'s ForCausalLM.</summary>
    public override JsonObject ToJson()
    {
        string arch = Family switch
        {
            "llama" => "LlamaForCausalLM", "qwen2" => "Qwen2ForCausalLM", "qwen3" => "Qwen3ForCausalLM", _ => "MistralForCausalLM",
        };
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(arch),
            ["model_type"] = Family,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumLayers,
            ["num_attention_heads"] = NumHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["intermediate_size"] = IntermediateSize,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = Shortest(RmsNormEps),
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["initializer_range"] = 0.02,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["use_cache"] = true,
            ["torch_dtype"] = "float32",
        };
        if (ExplicitHeadDim is not null || Family == "qwen3") o["head_dim"] = HeadSize;   // qwen3's absent head_dim means 128
        if (Family is "llama" or "qwen3") o["attention_bias"] = AttentionBias;
        if (Family == "llama") o["mlp_bias"] = MlpBias;
        if (Family is "qwen2" or "qwen3") o["use_sliding_window"] = false;
        if (Family == "mistral") o["sliding_window"] = null;
        if (LayerKvHeads is { } kv) o["whittle_layer_kv_heads"] = new JsonArray(kv.Select(x => (JsonNode)x).ToArray());
        if (LayerIntermediateSizes is { } li) o["whittle_layer_intermediate_sizes"] = new JsonArray(li.Select(x => (JsonNode)x).ToArray());
        if (RopeScaling is { } r)
            o["rope_scaling"] = r.Kind == RopeScalingKind.Linear
                ? new JsonObject { ["rope_type"] = "linear", ["factor"] = r.Factor }
                : new JsonObject
                {
                    ["rope_type"] = "llama3", ["factor"] = r.Factor, ["low_freq_factor"] = r.LowFreqFactor,
                    ["high_freq_factor"] = r.HighFreqFactor, ["original_max_position_embeddings"] = r.OriginalMaxPositionEmbeddings,
                };
        return o;
    }
}
