using System.Text.Json;
using System.Text.Json.Nodes;

namespace Whittle.Native.Model;

/// <summary>
/// What every supported architecture's config.json shares, and the one place a config.json is dispatched to its family
/// (<see cref="FromJson(JsonField, string)"/> on model_type, or on architectures when model_type is missing):
/// gpt_neox → <see cref="GptNeoXConfig"/>; llama, qwen2, qwen3, mistral → <see cref="LlamaConfig"/>. Anything else is an
/// error naming the type. Each family reads its own fields, typed and range-checked (<see cref="JsonField"/>).
/// </summary>
public abstract record ModelConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    /// <summary>Query heads.</summary>
    public required int NumHeads { get; init; }
    public required int IntermediateSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public int BosTokenId { get; init; }
    public int EosTokenId { get; init; }

    /// <summary>model_type as config.json spells it (gpt_neox, llama, qwen2, qwen3, mistral).</summary>
    public abstract string ModelType { get; }
    public abstract int HeadSize { get; }
    public virtual int HeadsOf(int layer) => NumHeads;
    /// <summary>Key/value heads (query groups) of a layer; equal to <see cref="HeadsOf"/> for multi-head attention.</summary>
    public virtual int KvHeadsOf(int layer) => HeadsOf(layer);
    /// <summary>Query heads that share one key/value head in a layer (1 for multi-head attention).</summary>
    public int QueryHeadsPerGroup(int layer) => HeadsOf(layer) / KvHeadsOf(layer);
    public virtual int IntermediateOf(int layer) => IntermediateSize;
    /// <summary>Whether Hugging Face transformers loads this config as it is (no whittle-only per-layer fields).</summary>
    public abstract bool IsHuggingFaceCompatible { get; }

    /// <summary>Every parameter's Hugging Face name and shape, in the model's order.</summary>
    public abstract IEnumerable<(string Name, int[] Shape)> Layout();
    /// <summary>Tensors a checkpoint may hold besides the parameters, which loading ignores (buffers older versions saved).</summary>
    public abstract bool IsIgnoredTensor(string name);
    /// <summary>Exact parameter counts of the whole model.</summary>
    public abstract ParameterCount CountParameters();
    /// <summary>A config.json Hugging Face transformers loads (plus whittle's own fields where documented).</summary>
    public abstract JsonObject ToJson();

    /// <summary>
    /// Refuses sequences longer than the context the model was made for (<paramref name="role"/> says which model, e.g.
    /// "the teacher's"): positions past max_position_embeddings were never trained, so rotary attention there
    /// extrapolates to unseen angles and the numbers would mean nothing.
    /// </summary>
    public void RequireContext(int seqLen, string role = "the model's", string option = "--seq-len")
    {
        if (seqLen > MaxPositionEmbeddings)
            throw new WhittleException($"{option} {seqLen} is above {role} max_position_embeddings {MaxPositionEmbeddings}; use " +
                $"{option} {MaxPositionEmbeddings} or less");
    }

    public void Save(string path) => AtomicFile.WriteAllText(path,
        ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    /// <summary>A float as the double with the same shortest decimal form (0.1f → 0.1, not 0.100000001490116), as HF configs write
    /// them.</summary>
    protected static double Shortest(float x) =>
        double.Parse(x.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);

    // ---------------------------------------------------------------- loading, any family

    /// <summary>The config.json of a model directory (or the file itself), whatever its family.</summary>
    public static ModelConfig Load(string path)
    {
        if (Directory.Exists(path)) path = System.IO.Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new InvalidFileException(path, "file not found (a model directory needs config.json)");
        return FromJson(JsonField.Load(path), path);
    }

    /// <summary>The families this engine loads, by model_type and by the architectures entry transformers writes.</summary>
    static readonly (string ModelType, string Architecture)[] Families =
    [
        ("gpt_neox", "GPTNeoXForCausalLM"), ("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"),
        ("qwen3", "Qwen3ForCausalLM"), ("mistral", "MistralForCausalLM"),
    ];

    /// <summary>model_type, or the family of the first known entry of architectures when model_type is missing; null if neither.</summary>
    internal static string? FamilyOf(JsonField o)
    {
        o.RequireObject();
        string? modelType = o["model_type"].StringOrNull();
        if (modelType is not null) return Families.Any(f => f.ModelType == modelType) ? modelType : null;
        var archs = o["architectures"].ItemsOrEmpty().Select(a => a.String()).ToArray();
        return Families.FirstOrDefault(f => archs.Contains(f.Architecture)).ModelType;
    }

    /// <summary>The error for a config of a family this engine does not load.</summary>
    internal static InvalidFileException Unsupported(JsonField o, string source)
    {
        string? modelType = o["model_type"].Kind == JsonValueKind.String ? o["model_type"].String() : null;
        var archs = o["architectures"].Kind == JsonValueKind.Array
            ? o["architectures"].Items().Where(a => a.Kind == JsonValueKind.String).Select(a => a.String()) : [];
        return new InvalidFileException(source,
            $"unsupported architecture (model_type '{JsonField.Truncate(modelType ?? "missing")}', architectures " +
            $"[{JsonField.Truncate(string.Join(", ", archs))}]); supported: {string.Join(", ", Families.Select(f => f.ModelType))}");
    }

    public static ModelConfig FromJson(JsonField o, string source) => FamilyOf(o) switch
    {
        "gpt_neox" => GptNeoXConfig.FromJson(o, source),
        null => throw Unsupported(o, source),
        _ => LlamaConfig.FromJson(o, source),
    };
}
