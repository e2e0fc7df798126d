// Policy: extraction turns an in-place sub-network (prefix views of the parent) into a dense standalone model by copying
// exactly the blocks the forward pass would have read, so the two compute the same logits. The child's config is a plain
// Hugging Face config of the parent's family whenever possible: for GPT-NeoX uniform sizes and heads × head_size ==
// hidden_size; for the Llama family uniform sizes (head_dim is written when heads × head_dim ≠ hidden_size, as HF reads
// it). Otherwise it carries the documented whittle_* per-layer fields (GptNeoXConfig, LlamaConfig) and only this engine
// can load it.
using System.Text.RegularExpressions;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public static partial class Extraction
{
    /// <summary>The child's architecture: hidden = d, one layer per selected parent layer, per-layer fields only when needed.</summary>
    public static ModelConfig ChildConfig(ModelConfig parent, ActiveArchitecture a)
    {
        a.Validate(parent);
        int D = parent.HeadSize;
        bool uniformHeads = a.Heads.All(h => h == a.Heads[0]);
        bool uniformInter = a.Intermediate.All(m => m == a.Intermediate[0]);
        int intermediate = uniformInter ? a.Intermediate[0] : a.Intermediate.Max();
        switch (parent)
        {
            case GptNeoXConfig neox:
            {
                int heads = uniformHeads ? a.Heads[0] : a.Heads.Max();
                bool standardHeadSize = uniformHeads && heads * D == a.EmbedDim;
                return neox with
                {
                    HiddenSize = a.EmbedDim,
                    NumLayers = a.Layers.Length,
                    NumHeads = heads,
                    IntermediateSize = intermediate,
                    ExplicitHeadSize = standardHeadSize ? null : D,
                    LayerHeads = uniformHeads ? null : (int[])a.Heads.Clone(),
                    LayerIntermediateSizes = uniformInter ? null : (int[])a.Intermediate.Clone(),
                };
            }
            case LlamaConfig llama:
            {
                // Whole query groups: the child keeps the parent's G query heads per kv head in every layer.
                int kv = a.KvHeads.Max(), heads = kv * llama.GroupSize;
                bool uniformKv = a.KvHeads.All(k => k == kv);
                return llama with
                {
                    HiddenSize = a.EmbedDim,
                    NumLayers = a.Layers.Length,
                    NumHeads = heads,
                    NumKeyValueHeads = kv,
                    IntermediateSize = intermediate,
                    ExplicitHeadDim = heads * D == a.EmbedDim && llama.ExplicitHeadDim is null ? null : D,
                    LayerKvHeads = uniformKv ? null : (int[])a.KvHeads.Clone(),
                    LayerIntermediateSizes = uniformInter ? null : (int[])a.Intermediate.Clone(),
                };
            }
            default:
                throw new ArgumentException($"no extraction for {parent.GetType().Name}");
        }
    }

    /// <summary>
    /// A new dense model of the parent's family, on the parent's backend, holding copies of the sub-network's weights
    /// (the parent's type: a GptNeoX parent gives a GptNeoX child).
    /// </summary>
    public static TModel Extract<TModel>(TModel parent, ActiveArchitecture a) where TModel : LanguageModel
    {
        var config = ChildConfig(parent.Config, a);
        LanguageModel child = config switch
        {
            GptNeoXConfig c => new GptNeoX(c.Validate("extracted config"), parent.Backend),
            LlamaConfig c => new Llama(c.Validate("extracted config"), parent.Backend),
            _ => throw new ArgumentException($"no model for {config.GetType().Name}"),
        };
        try
        {
            var src = parent.Parameters.Flat.ToFloatArray();
            var dst = new float[child.Parameters.Count];
            foreach (var e in child.Parameters.Entries)
            {
                // Child layer i is parent layer Layers[i]; every child tensor is the leading (rows, cols) block of the parent's.
                var layer = LayerName().Match(e.Name);
                string name = layer.Success
                    ? $"{layer.Groups[1].Value}{a.Layers[int.Parse(layer.Groups[2].Value)]}.{layer.Groups[3].Value}" : e.Name;
                var pe = parent.Parameters.Info(name);
                int R = e.Shape[0], C = e.Shape.Length == 2 ? e.Shape[1] : 1;
                int parentCols = pe.Shape.Length == 2 ? pe.Shape[1] : 1;
                for (int r = 0; r < R; r++)
                    src.AsSpan((int)pe.Offset + r * parentCols, C).CopyTo(dst.AsSpan((int)e.Offset + r * C, C));
            }
            using var host = Tensor.FromArray(dst, dst.Length);
            child.LoadFlat(host);
            return (TModel)child;
        }
        catch
        {
            child.Dispose();
            throw;
        }
    }

    /// <summary>(prefix up to "layers.", layer index, rest) of a per-layer parameter name, in either family's naming.</summary>
    [GeneratedRegex(@"^(gpt_neox\.layers\.|model\.layers\.)(\d+)\.(.+)$")]
    private static partial Regex LayerName();
}
