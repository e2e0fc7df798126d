// Policy: extraction turns an in-place sub-network (prefix views of the parent) into a dense standalone model by copying
// exactly the blocks the forward pass would have read, so the two compute the same logits. The child's config is a plain
// Hugging Face GPT-NeoX config whenever possible (uniform sizes and heads × head_size == hidden_size); otherwise it
// carries the documented whittle_* fields (GptNeoXConfig) and only this engine can load it.
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

public static class Extraction
{
    /// <summary>The child's architecture: hidden = d, one layer per selected parent layer, per-layer fields only when needed.</summary>
    public static GptNeoXConfig ChildConfig(GptNeoXConfig parent, ActiveArchitecture a)
    {
        a.Validate(parent);
        int D = parent.HeadSize;
        bool uniformHeads = a.Heads.All(h => h == a.Heads[0]);
        bool uniformInter = a.Intermediate.All(m => m == a.Intermediate[0]);
        int heads = uniformHeads ? a.Heads[0] : a.Heads.Max();
        bool standardHeadSize = uniformHeads && heads * D == a.EmbedDim;
        return parent with
        {
            HiddenSize = a.EmbedDim,
            NumLayers = a.Layers.Length,
            NumHeads = heads,
            IntermediateSize = uniformInter ? a.Intermediate[0] : a.Intermediate.Max(),
            ExplicitHeadSize = standardHeadSize ? null : D,
            LayerHeads = uniformHeads ? null : (int[])a.Heads.Clone(),
            LayerIntermediateSizes = uniformInter ? null : (int[])a.Intermediate.Clone(),
        };
    }

    /// <summary>A new dense model on the parent's backend holding copies of the sub-network's weights.</summary>
    public static GptNeoX Extract(GptNeoX parent, ActiveArchitecture a)
    {
        var config = ChildConfig(parent.Config, a).Validate("extracted config");
        var child = new GptNeoX(config, parent.Backend);
        try
        {
            var src = parent.Parameters.Flat.ToFloatArray();
            var dst = new float[child.Parameters.Count];
            foreach (var e in child.Parameters.Entries)
            {
                // Child layer i is parent layer Layers[i]; every child tensor is the leading (rows, cols) block of the parent's.
                string name = e.Name;
                if (name.StartsWith("gpt_neox.layers."))
                {
                    var parts = name.Split('.', 4);
                    name = GptNeoX.LayerPrefix(a.Layers[int.Parse(parts[2])]) + parts[3];
                }
                var pe = parent.Parameters.Info(name);
                int R = e.Shape[0], C = e.Shape.Length == 2 ? e.Shape[1] : 1;
                int parentCols = pe.Shape.Length == 2 ? pe.Shape[1] : 1;
                for (int r = 0; r < R; r++)
                    src.AsSpan((int)pe.Offset + r * parentCols, C).CopyTo(dst.AsSpan((int)e.Offset + r * C, C));
            }
            using var host = Tensor.FromArray(dst, dst.Length);
            child.LoadFlat(host);
            return child;
        }
        catch
        {
            child.Dispose();
            throw;
        }
    }
}
