// Policy: a sub-network is described to users as a small JSON object and to the engine as an ActiveArchitecture.
// This file is the only translation between the two. Parsing is strict (unknown fields, wrong types, wrong list lengths,
// sizes outside the parent are errors naming the field); serialising writes the shortest form (a count instead of the
// list 0..n-1, a number instead of a list of equal numbers) so equal sub-networks always serialise to the same text,
// which is what the search uses as its de-duplication key. kv_heads is written only when it says something heads does not
// (a grouped-query parent: kv_heads ≠ heads), so GPT-NeoX specs, keys and search logs are what they always were.
using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Model;

namespace Whittle.Native.Search;

/// <summary>
/// The JSON form of a sub-network of a parent of any family:
/// <c>{"embed_dim": d, "layers": n | [indices], "heads": h | [per layer], "kv_heads": k | [per layer],
/// "intermediate_size": m | [per layer]}</c>.
/// Units are prefixes of the (importance-permuted) parent: the first d channels, the first h heads, the first m neurons;
/// head size stays the parent's. <c>layers</c> as a count means layers 0..n-1, as a list an ordered subset. Per-layer lists
/// have one entry per SELECTED layer, in the order of <c>layers</c>. A missing field means "all of the parent's".
/// A sub-network keeps whole query groups: <c>kv_heads</c> counts key/value heads (query groups) and heads must be
/// kv_heads × the parent's query heads per group. For a Llama-family parent either may be given (the other follows; both
/// must agree); for GPT-NeoX (groups of one) kv_heads, if given, equals heads.
/// </summary>
public static class SubnetSpec
{
    static readonly string[] Fields = ["embed_dim", "layers", "heads", "kv_heads", "intermediate_size"];

    public static ActiveArchitecture Load(string path, ModelConfig parent)
    {
        if (!File.Exists(path)) throw new WhittleException($"{path}: sub-network spec file not found");
        JsonNode? root;
        InputFile.RequireRegular(path);
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new WhittleException($"{path}: not valid JSON: {e.Message}"); }
        if (root is not JsonObject o) throw new WhittleException($"{path}: a sub-network spec must be a JSON object");
        return Checked(path, () =>
        {
            // Files written by `whittle search` (best.json) wrap the spec with its scores.
            var spec = o["spec"] is JsonObject inner ? inner : o;
            return FromJson(spec, parent, path);
        });
    }

    /// <summary>JsonObject builds its key table on first use: a repeated key surfaces there, as an ArgumentException.</summary>
    static ActiveArchitecture Checked(string source, Func<ActiveArchitecture> read)
    {
        try { return read(); }
        catch (ArgumentException e)
        {
            throw new WhittleException($"{source}: not a valid sub-network spec: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    public static ActiveArchitecture Parse(string json, ModelConfig parent, string source = "sub-network spec")
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new WhittleException($"{source}: not valid JSON: {e.Message}"); }
        return root is JsonObject o ? Checked(source, () => FromJson(o, parent, source))
            : throw new WhittleException($"{source}: a sub-network spec must be a JSON object");
    }

    public static ActiveArchitecture FromJson(JsonObject o, ModelConfig parent, string source = "sub-network spec")
    {
        WhittleException Err(string field, string what) => new($"{source}: '{field}': {what}");
        foreach (var (key, _) in o)
            if (!Fields.Contains(key))
                throw new WhittleException($"{source}: unknown field '{key}' (expected {string.Join(", ", Fields)})");

        int Int(string field, JsonNode? n)
        {
            if (n is JsonValue v && v.TryGetValue(out int i)) return i;
            if (n is JsonValue dv && dv.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            throw Err(field, $"expected an integer, got {n?.ToJsonString() ?? "null"}");
        }

        int embed = o.ContainsKey("embed_dim") ? Int("embed_dim", o["embed_dim"]) : parent.HiddenSize;
        if (embed < 1 || embed > parent.HiddenSize)
            throw Err("embed_dim", $"{embed} must be in [1, {parent.HiddenSize}] (the parent's hidden_size)");

        int[] layers;
        switch (o["layers"])
        {
            case null when !o.ContainsKey("layers"): layers = Enumerable.Range(0, parent.NumLayers).ToArray(); break;
            case JsonArray arr:
                layers = arr.Select(n => Int("layers", n)).ToArray();
                if (layers.Length == 0) throw Err("layers", "the list is empty; at least one layer is needed");
                foreach (var l in layers)
                    if (l < 0 || l >= parent.NumLayers)
                        throw Err("layers", $"index {l} is outside [0, {parent.NumLayers}) (the parent has {parent.NumLayers} layers)");
                var rep = layers.GroupBy(l => l).FirstOrDefault(g => g.Count() > 1);
                if (rep is not null) throw Err("layers", $"index {rep.Key} is repeated");
                break;
            case var n:
                int count = Int("layers", n);
                if (count < 1 || count > parent.NumLayers)
                    throw Err("layers", $"count {count} must be in [1, {parent.NumLayers}] (the parent's num_hidden_layers)");
                layers = Enumerable.Range(0, count).ToArray();
                break;
        }

        int[] PerLayer(string field, Func<int, int> parentMax, string unit)
        {
            int[] values = o[field] switch
            {
                null when !o.ContainsKey(field) => layers.Select(parentMax).ToArray(),
                JsonArray arr => arr.Count == layers.Length
                    ? arr.Select(n => Int(field, n)).ToArray()
                    : throw Err(field, $"has {arr.Count} entries but {layers.Length} layers are selected (one entry per selected layer)"),
                var n => Enumerable.Repeat(Int(field, n), layers.Length).ToArray(),
            };
            for (int i = 0; i < layers.Length; i++)
                if (values[i] < 1 || values[i] > parentMax(layers[i]))
                    throw Err(field, $"{values[i]} {unit} in layer {layers[i]}, must be in [1, {parentMax(layers[i])}] (the parent's)");
            return values;
        }
        int[] heads, kvHeads;
        if (!o.ContainsKey("kv_heads"))
        {
            heads = PerLayer("heads", parent.HeadsOf, "heads");
            kvHeads = new int[layers.Length];
            for (int i = 0; i < layers.Length; i++)
            {
                int group = parent.QueryHeadsPerGroup(layers[i]);
                if (heads[i] % group != 0)
                    throw Err("heads", $"{heads[i]} heads in layer {layers[i]} is not a multiple of the parent's {group} query heads per " +
                        "kv head (a sub-network keeps whole query groups; give kv_heads instead)");
                kvHeads[i] = heads[i] / group;
            }
        }
        else
        {
            kvHeads = PerLayer("kv_heads", parent.KvHeadsOf, "kv heads");
            var derived = layers.Select((l, i) => kvHeads[i] * parent.QueryHeadsPerGroup(l)).ToArray();
            heads = o.ContainsKey("heads") ? PerLayer("heads", parent.HeadsOf, "heads") : derived;
            for (int i = 0; i < layers.Length; i++)
                if (heads[i] != derived[i] && parent.QueryHeadsPerGroup(layers[i]) == 1)
                    throw Err("kv_heads", $"{kvHeads[i]} in layer {layers[i]} differs from heads {heads[i]}; this parent has one query head " +
                        "per kv head (no grouped-query attention), so kv_heads, if given, equals heads");
                else if (heads[i] != derived[i])
                    throw Err("heads", $"{heads[i]} heads in layer {layers[i]} disagree with kv_heads {kvHeads[i]}: whole query groups are " +
                        $"kept, so heads must be kv_heads × {parent.QueryHeadsPerGroup(layers[i])} = {derived[i]}");
        }
        var inter = PerLayer("intermediate_size", parent.IntermediateOf, "neurons");
        return new ActiveArchitecture(embed, layers, heads, inter, kvHeads).Validate(parent);
    }

    /// <summary>The canonical (shortest) JSON form; equal architectures give equal text.</summary>
    public static JsonObject ToJson(ActiveArchitecture a)
    {
        static JsonNode Compact(int[] v) =>
            v.All(x => x == v[0]) ? JsonValue.Create(v[0]) : new JsonArray(v.Select(x => (JsonNode)x).ToArray());
        bool prefix = a.Layers.Select((l, i) => l == i).All(b => b);
        var o = new JsonObject
        {
            ["embed_dim"] = a.EmbedDim,
            ["layers"] = prefix ? JsonValue.Create(a.Layers.Length) : new JsonArray(a.Layers.Select(x => (JsonNode)x).ToArray()),
            ["heads"] = Compact(a.Heads),
        };
        if (!a.KvHeads.SequenceEqual(a.Heads)) o["kv_heads"] = Compact(a.KvHeads);
        o["intermediate_size"] = Compact(a.Intermediate);
        return o;
    }

    /// <summary>One-line canonical text, the de-duplication key of the search.</summary>
    public static string Key(ActiveArchitecture a) => ToJson(a).ToJsonString();

    public static void Save(ActiveArchitecture a, string path) =>
        AtomicFile.WriteAllText(path, ToJson(a).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
