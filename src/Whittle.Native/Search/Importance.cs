// Policy: importance is activation-based (no gradients), measured on a few calibration batches with no tape, read
// through the model's forward observer (any family). Scores are means over every calibration token, accumulated in double:
//   embedding channel c : mean |x_c| of the residual stream entering each layer, summed over layers;
//   head j of layer l   : mean L2 norm of the head's attention context (its D outputs before the output projection);
//   query group of l    : the sum of its heads' scores (grouped-query attention; a group is one head otherwise);
//   neuron k of layer l : mean |activation| feeding the down projection: |GELU(h_k)| (GPT-NeoX), |silu(gate_k)·up_k| (Llama);
//   layer l             : block influence, mean over tokens of 1 − cos(residual in, residual out) (ShortGPT).
// Ranking units by these scores and permuting the parent puts the most important units first in every prefix; query
// groups are ranked as wholes (a sub-network keeps whole groups) and heads within their group.
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public sealed record ImportanceScores(double[] Embed, double[][] Heads, double[][] Neurons, double[] Layers, long Tokens)
{
    /// <summary>Query heads per key/value head in each layer (null: 1 everywhere, multi-head attention).</summary>
    public int[]? QueryHeadsPerGroup { get; init; }

    int GroupSize(int layer) => QueryHeadsPerGroup?[layer] ?? 1;

    /// <summary>Each query group's score (the sum of its heads'), per layer.</summary>
    public double[][] Groups => Heads.Select((h, l) =>
        Enumerable.Range(0, h.Length / GroupSize(l)).Select(g => h.Skip(g * GroupSize(l)).Take(GroupSize(l)).Sum()).ToArray()).ToArray();

    /// <summary>
    /// The permutation that sorts every unit family by descending score: query groups by their score, and the heads of
    /// each group (kept together) by theirs (with groups of one, simply heads by descending score).
    /// </summary>
    public UnitPermutation ToPermutation() => new(
        UnitPermutation.ByDescendingScore(Embed),
        Heads.Select((h, l) =>
        {
            int g = GroupSize(l);
            return UnitPermutation.ByDescendingScore(Groups[l])
                .SelectMany(k => UnitPermutation.ByDescendingScore(h[(k * g)..(k * g + g)]).Select(j => k * g + j)).ToArray();
        }).ToArray(),
        Neurons.Select(UnitPermutation.ByDescendingScore).ToArray());

    /// <summary>Layer indices from most to least influential.</summary>
    public int[] LayerRanking => UnitPermutation.ByDescendingScore(Layers);

    /// <summary>Scores in the order of the permuted model (sorted), plus the permutation applied and the layer ranking.</summary>
    public JsonObject ToJson(UnitPermutation applied)
    {
        static JsonArray Arr(IEnumerable<double> v) => new(v.Select(x => (JsonNode)x).ToArray());
        static JsonArray IntArr(IEnumerable<int> v) => new(v.Select(x => (JsonNode)x).ToArray());
        static double[] Gather(double[] s, int[] p) => p.Select(i => s[i]).ToArray();
        var o = new JsonObject
        {
            ["format"] = "whittle-importance",
            ["version"] = 1,
            ["calibration_tokens"] = Tokens,
            ["note"] = "scores are listed in the permuted model's unit order (descending); 'permutation' maps new unit index -> original " +
                "index",
            ["embed"] = Arr(Gather(Embed, applied.Embed)),
            ["heads"] = new JsonArray(Heads.Select((h, l) => (JsonNode)Arr(Gather(h, applied.Heads[l]))).ToArray()),
            ["neurons"] = new JsonArray(Neurons.Select((n, l) => (JsonNode)Arr(Gather(n, applied.Neurons[l]))).ToArray()),
            ["layers"] = Arr(Layers),
            ["layer_ranking"] = IntArr(LayerRanking),
            ["permutation"] = new JsonObject
            {
                ["embed"] = IntArr(applied.Embed),
                ["heads"] = new JsonArray(applied.Heads.Select(h => (JsonNode)IntArr(h)).ToArray()),
                ["neurons"] = new JsonArray(applied.Neurons.Select(n => (JsonNode)IntArr(n)).ToArray()),
            },
        };
        if (QueryHeadsPerGroup is { } group && group.Any(g => g > 1))
        {
            // Grouped-query attention: the groups' scores too (sum of their heads'), in the permuted model's group order.
            var groups = Groups;
            o["query_groups"] = new JsonArray(groups.Select((s, l) =>
                (JsonNode)Arr(Enumerable.Range(0, s.Length).Select(k => s[applied.Heads[l][k * group[l]] / group[l]]))).ToArray());
        }
        return o;
    }

    /// <summary>The layer ranking stored by `whittle importance` in a model directory (importance.json), or null.</summary>
    public static int[]? ReadLayerRanking(string modelDir, int layers)
    {
        var path = Path.Combine(modelDir, "importance.json");
        if (!File.Exists(path)) return null;
        var r = JsonField.Load(path).RequireObject()["layer_ranking"].Items().Select(n => n.Int(0, layers - 1)).ToArray();
        return r.Length == layers && r.Order().SequenceEqual(Enumerable.Range(0, layers)) ? r
            : throw new InvalidFileException(path, $"layer_ranking must be a permutation of 0..{layers - 1}");
    }
}

public static class Importance
{
    /// <summary>Scores every unit of <paramref name="model"/> over the (B, T) i32 host batches <paramref name="batches"/>.</summary>
    public static ImportanceScores Score(LanguageModel model, IEnumerable<int[,]> batches, Action<int>? progress = null)
    {
        var c = model.Config;
        int C = c.HiddenSize, L = c.NumLayers, D = c.HeadSize;
        var embed = new double[C];
        var heads = Enumerable.Range(0, L).Select(l => new double[c.HeadsOf(l)]).ToArray();
        var neurons = Enumerable.Range(0, L).Select(l => new double[c.IntermediateOf(l)]).ToArray();
        var layers = new double[L];
        long tokens = 0;
        float[]? layerIn = null;
        int done = 0;

        void Observe(ForwardTap tap, int l, Tensor t)
        {
            var v = t.ToFloatArray();
            switch (tap)
            {
                case ForwardTap.LayerInput:                                                  // (N, C)
                    layerIn = v;
                    for (int i = 0; i < v.Length; i++) embed[i % C] += Math.Abs(v[i]);
                    break;
                case ForwardTap.AttentionHeads:                                              // (B, T, h, D)
                {
                    int h = heads[l].Length;
                    for (int row = 0; row < v.Length / (h * D); row++)
                        for (int j = 0; j < h; j++)
                        {
                            double ss = 0;
                            for (int e = 0; e < D; e++) { double x = v[(row * h + j) * D + e]; ss += x * x; }
                            heads[l][j] += Math.Sqrt(ss);
                        }
                    break;
                }
                case ForwardTap.MlpActivation:                                               // (N, m)
                {
                    int m = neurons[l].Length;
                    for (int i = 0; i < v.Length; i++) neurons[l][i % m] += Math.Abs(v[i]);
                    break;
                }
                case ForwardTap.LayerOutput:                                                 // (N, C)
                    for (int row = 0; row < v.Length / C; row++)
                    {
                        double dot = 0, a2 = 0, b2 = 0;
                        for (int e = 0; e < C; e++)
                        {
                            double a = layerIn![row * C + e], b = v[row * C + e];
                            dot += a * b; a2 += a * a; b2 += b * b;
                        }
                        double cos = a2 > 0 && b2 > 0 ? dot / Math.Sqrt(a2 * b2) : 1.0;
                        layers[l] += 1 - cos;
                    }
                    break;
            }
        }

        foreach (var batch in batches)
        {
            int B = batch.GetLength(0), T = batch.GetLength(1);
            var flat = new int[B * T];
            Buffer.BlockCopy(batch, 0, flat, 0, flat.Length * sizeof(int));
            using var host = Tensor.FromArray(flat, B, T);
            using var ids = model.Backend.FromHost(host);
            using var tape = new Tape(model.Backend, recording: false);
            var logits = model.Forward(tape, ids, null, Observe);
            tape.Release(logits);
            tokens += B * T;
            progress?.Invoke(++done);
        }
        if (tokens == 0) throw new WhittleException("importance: no calibration batches");
        double n = tokens;
        static void Scale(double[] a, double n) { for (int i = 0; i < a.Length; i++) a[i] /= n; }
        Scale(embed, n); Scale(layers, n);
        foreach (var h in heads) Scale(h, n);
        foreach (var m in neurons) Scale(m, n);
        return new ImportanceScores(embed, heads, neurons, layers, tokens)
        {
            QueryHeadsPerGroup = Enumerable.Range(0, L).Select(c.QueryHeadsPerGroup).ToArray(),
        };
    }
}
