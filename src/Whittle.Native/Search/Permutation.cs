// Policy: a permutation of a model's units (embedding channels, heads per layer, MLP neurons per layer) rewrites the
// weights so the permuted model computes exactly the same function (up to float summation order); after an importance
// permutation every prefix holds the most important units, which is what makes sub-networks zero-copy prefix views.
// Layers are never permuted in place: a layer order is a list in the sub-network spec. Done on the host, once per model.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

/// <summary>
/// New unit i takes old unit Embed[i] / Heads[l][i] / Neurons[l][i] (a "gather" permutation: the first entries name
/// the units that should come first).
/// </summary>
public sealed record UnitPermutation(int[] Embed, int[][] Heads, int[][] Neurons)
{
    public static UnitPermutation Identity(GptNeoXConfig c) => new(
        Enumerable.Range(0, c.HiddenSize).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(l => Enumerable.Range(0, c.HeadsOf(l)).ToArray()).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(l => Enumerable.Range(0, c.IntermediateOf(l)).ToArray()).ToArray());

    /// <summary>Units sorted by descending score (ties keep the original order, so equal scores change nothing).</summary>
    public static int[] ByDescendingScore(double[] scores) =>
        Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).ToArray();

    public UnitPermutation Validate(GptNeoXConfig c)
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
        }
        return this;
    }
}

public static class Permutation
{
    /// <summary>Rewrites every parameter of <paramref name="model"/> in place (on its backend) according to <paramref name="p"/>.</summary>
    public static void Apply(GptNeoX model, UnitPermutation p)
    {
        var c = model.Config;
        p.Validate(c);
        int D = c.HeadSize;
        var src = model.Parameters.Flat.ToFloatArray();
        var dst = new float[src.Length];
        foreach (var e in model.Parameters.Entries)
        {
            var (rows, cols) = IndexMaps(e.Name, c, p, D);
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

    /// <summary>(row map, column map) of one parameter: new index → old index, null where that axis is not permuted.</summary>
    static (int[]? Rows, int[]? Cols) IndexMaps(string name, GptNeoXConfig c, UnitPermutation p, int D)
    {
        if (name is GptNeoX.EmbedIn or GptNeoX.EmbedOut) return (null, p.Embed);          // (V, C)
        if (name is GptNeoX.FinalNormWeight or GptNeoX.FinalNormBias) return (p.Embed, null);
        // gpt_neox.layers.{l}.{rest}
        var parts = name.Split('.', 4);
        int l = int.Parse(parts[2]);
        string rest = parts[3];
        int[] heads = p.Heads[l], neurons = p.Neurons[l];
        // The fused qkv rows are laid out per head as [H, 3, D]: moving a head moves a block of 3·D rows.
        int[] QkvRows() => Enumerable.Range(0, heads.Length * 3 * D).Select(r => heads[r / (3 * D)] * 3 * D + r % (3 * D)).ToArray();
        int[] HeadCols() => Enumerable.Range(0, heads.Length * D).Select(col => heads[col / D] * D + col % D).ToArray();
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
}
