// Policy: a permutation of a model's units (embedding channels, heads per layer, MLP neurons per layer) rewrites the
// weights so the permuted model computes exactly the same function (up to float summation order); after an importance
// permutation every prefix holds the most important units, which is what makes sub-networks zero-copy prefix views.
// Layers are never permuted in place: a layer order is a list in the sub-network spec. Done on the host, once per model.
// With grouped-query attention (Llama family) a head permutation must keep query groups whole: a group moves as one
// block together with its key/value head, and heads may also be reordered within their group; anything else would
// make a query head read another group's key/value head, and is refused.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

/// <summary>
/// New unit i takes old unit Embed[i] / Heads[l][i] / Neurons[l][i] (a "gather" permutation: the first entries name
/// the units that should come first). Heads are query heads; for grouped-query attention with G query heads per
/// key/value head, new heads [gG, gG + G) must be the G heads of one old group, whose key/value head becomes new kv head g.
/// </summary>
public sealed record UnitPermutation(int[] Embed, int[][] Heads, int[][] Neurons)
{
    public static UnitPermutation Identity(ModelConfig c) => new(
        Enumerable.Range(0, c.HiddenSize).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(l => Enumerable.Range(0, c.HeadsOf(l)).ToArray()).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(l => Enumerable.Range(0, c.IntermediateOf(l)).ToArray()).ToArray());

    /// <summary>Units sorted by descending score (ties keep the original order, so equal scores change nothing).</summary>
    public static int[] ByDescendingScore(double[] scores) =>
        Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).ToArray();

    public UnitPermutation Validate(ModelConfig c)
    {
        static void Check(int[] p, int n, string what)
        {
            if (p.Length != n) throw new ArgumentException($"{what}: permutation has {p.Length} entries for {n} units");
            var seen = new bool[n];
            foreach (var i in p)
            {
                if (i < 0 || i >= n || seen[i]) throw new ArgumentException($"{what}: not a permutation of 0..{n - 1}");
                seen[i] = true;
            }
        }
        Check(Embed, c.HiddenSize, "embedding channels");
        if (Heads.Length != c.NumLayers || Neurons.Length != c.NumLayers)
            throw new ArgumentException("one head and one neuron permutation per layer");
        for (int l = 0; l < c.NumLayers; l++)
        {
            Check(Heads[l], c.HeadsOf(l), $"layer {l} heads");
            Check(Neurons[l], c.IntermediateOf(l), $"layer {l} neurons");
            int g = c.QueryHeadsPerGroup(l);
            for (int h = 0; h < Heads[l].Length; h++)
                if (Heads[l][h] / g != Heads[l][h - h % g] / g)
                    throw new ArgumentException($"layer {l} heads: new heads {h - h % g}..{h - h % g + g - 1} must all come from one query " +
                        $"group of {g} (old heads {Heads[l][h - h % g]} and {Heads[l][h]} are in different groups)");
        }
        return this;
    }

    /// <summary>The key/value head (query group) order of layer <paramref name="l"/> implied by its head order.</summary>
    public int[] KvHeads(ModelConfig c, int l)
    {
        int g = c.QueryHeadsPerGroup(l);
        return Enumerable.Range(0, c.KvHeadsOf(l)).Select(k => Heads[l][k * g] / g).ToArray();
    }
}

public static class Permutation
{
    /// <summary>Rewrites every parameter of <paramref name="model"/> in place (on its backend) according to <paramref name="p"/>.</summary>
    public static void Apply(LanguageModel model, UnitPermutation p)
    {
        var c = model.Config;
        p.Validate(c);
        var src = model.Parameters.Flat.ToFloatArray();
        var dst = new float[src.Length];
        foreach (var e in model.Parameters.Entries)
        {
            var (rows, cols) = c switch
            {
                GptNeoXConfig neox => NeoXIndexMaps(e.Name, neox, p),
                LlamaConfig llama => LlamaIndexMaps(e.Name, llama, p),
                _ => throw new ArgumentException($"no permutation rules for {c.GetType().Name}"),
            };
            int R = e.Shape[0], C = e.Shape.Length == 2 ? e.Shape[1] : 1;
            var s = src.AsSpan((int)e.Offset, R * C);
            var d = dst.AsSpan((int)e.Offset, R * C);
            for (int r = 0; r < R; r++)
            {
                int sr = rows?[r] ?? r;
                for (int col = 0; col < C; col++) d[r * C + col] = s[sr * C + (cols?[col] ?? col)];
            }
        }
        using var host = Tensor.FromArray(dst, dst.Length);
        model.LoadFlat(host);
    }

    /// <summary>Rows (or columns) of a projection laid out in blocks of <paramref name="size"/> per unit, moved by unit.</summary>
    static int[] Blocks(int[] units, int size) =>
        Enumerable.Range(0, units.Length * size).Select(r => units[r / size] * size + r % size).ToArray();

    /// <summary>The layer index and the rest of a per-layer parameter name (prefix.layers.{l}.{rest}).</summary>
    static (int Layer, string Tail) LayerName(string name, int skip)
    {
        var parts = name.Split('.', skip + 2);
        return (int.Parse(parts[skip]), parts[skip + 1]);
    }

    /// <summary>GPT-NeoX: (row map, column map) of one parameter, new index → old index, null where that axis is not permuted.</summary>
    static (int[]? Rows, int[]? Cols) NeoXIndexMaps(string name, GptNeoXConfig c, UnitPermutation p)
    {
        if (name is GptNeoX.EmbedIn or GptNeoX.EmbedOut) return (null, p.Embed);          // (V, C)
        if (name is GptNeoX.FinalNormWeight or GptNeoX.FinalNormBias) return (p.Embed, null);
        var (l, rest) = LayerName(name, 2);                                              // gpt_neox.layers.{l}.{rest}
        int D = c.HeadSize;
        int[] heads = p.Heads[l], neurons = p.Neurons[l];
        // The fused qkv rows are laid out per head as [H, 3, D]: moving a head moves a block of 3·D rows.
        int[] QkvRows() => Blocks(heads, 3 * D);
        int[] HeadCols() => Blocks(heads, D);
        return rest switch
        {
            "input_layernorm.weight" or "input_layernorm.bias" or "post_attention_layernorm.weight" or "post_attention_layernorm.bias" =>
                (p.Embed, null),
            "attention.query_key_value.weight" => (QkvRows(), p.Embed),                   // (3hD, C)
            "attention.query_key_value.bias" => (QkvRows(), null),
            "attention.dense.weight" => (p.Embed, HeadCols()),                            // (C, hD)
            "attention.dense.bias" => (p.Embed, null),
            "mlp.dense_h_to_4h.weight" => (neurons, p.Embed),                             // (m, C)
            "mlp.dense_h_to_4h.bias" => (neurons, null),
            "mlp.dense_4h_to_h.weight" => (p.Embed, neurons),                             // (C, m)
            "mlp.dense_4h_to_h.bias" => (p.Embed, null),
            _ => throw new InvalidOperationException($"no permutation rule for parameter '{name}'"),
        };
    }

    /// <summary>
    /// Llama family: query heads move q_proj rows, q bias and o_proj columns (blocks of D); their group's kv head moves
    /// k_proj/v_proj rows and biases; neurons move gate/up rows (and biases) with down_proj columns; channels move every
    /// d-sized axis: embed_tokens and lm_head columns (one tensor when tied), every RMSNorm weight, projection inputs and
    /// o_proj/down_proj rows and biases. q_norm and k_norm act within one head (over D) and do not move.
    /// </summary>
    static (int[]? Rows, int[]? Cols) LlamaIndexMaps(string name, LlamaConfig c, UnitPermutation p)
    {
        if (name is Llama.EmbedTokens or Llama.LmHead) return (null, p.Embed);           // (V, C)
        if (name is Llama.FinalNorm) return (p.Embed, null);
        var (l, rest) = LayerName(name, 2);                                              // model.layers.{l}.{rest}
        int D = c.HeadSize;
        int[] neurons = p.Neurons[l];
        int[] QRows() => Blocks(p.Heads[l], D);
        int[] KvRows() => Blocks(p.KvHeads(c, l), D);
        return rest switch
        {
            "input_layernorm.weight" or "post_attention_layernorm.weight" => (p.Embed, null),
            "self_attn.q_proj.weight" => (QRows(), p.Embed),                              // (hD, C)
            "self_attn.q_proj.bias" => (QRows(), null),
            "self_attn.k_proj.weight" or "self_attn.v_proj.weight" => (KvRows(), p.Embed), // (kvD, C)
            "self_attn.k_proj.bias" or "self_attn.v_proj.bias" => (KvRows(), null),
            "self_attn.q_norm.weight" or "self_attn.k_norm.weight" => (null, null),       // (D): per head, shared by all heads
            "self_attn.o_proj.weight" => (p.Embed, QRows()),                              // (C, hD)
            "self_attn.o_proj.bias" => (p.Embed, null),
            "mlp.gate_proj.weight" or "mlp.up_proj.weight" => (neurons, p.Embed),         // (m, C)
            "mlp.gate_proj.bias" or "mlp.up_proj.bias" => (neurons, null),
            "mlp.down_proj.weight" => (p.Embed, neurons),                                 // (C, m)
            "mlp.down_proj.bias" => (p.Embed, null),
            _ => throw new InvalidOperationException($"no permutation rule for parameter '{name}'"),
        };
    }
}
