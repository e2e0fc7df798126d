namespace Whittle.Native.Model;

/// <summary>
/// Exact parameter counts of a (sub-)network of any family, from the architecture's formula (not from a layout, so the
/// two can be checked against each other). "Embedding" is the input embedding plus an untied LM head (each V × d; a tied
/// head is the same tensor, counted once); "non-embedding" is everything else (layers and the final norm), the convention
/// of scaling-law papers.
/// </summary>
public readonly record struct ParameterCount(long Embedding, long NonEmbedding)
{
    public long Total => Embedding + NonEmbedding;

    public static ParameterCount Of(ModelConfig c, ActiveArchitecture? active = null)
    {
        var a = active ?? ActiveArchitecture.Full(c);
        long d = a.EmbedDim, D = c.HeadSize, V = c.VocabSize;
        long layers = 0;
        switch (c)
        {
            case GptNeoXConfig:
                for (int i = 0; i < a.Layers.Length; i++)
                {
                    long h = a.Heads[i], m = a.Intermediate[i];
                    layers += 4 * d                           // two layernorms
                        + 3 * h * D * d + 3 * h * D           // query_key_value
                        + d * h * D + d                       // attention.dense
                        + m * d + m + d * m + d;              // mlp
                }
                return new ParameterCount(2 * V * d, layers + 2 * d);
            case LlamaConfig l:
                for (int i = 0; i < a.Layers.Length; i++)
                {
                    long h = a.Heads[i], kv = a.KvHeads[i], m = a.Intermediate[i];
                    layers += 2 * d                                                 // two RMSNorms
                        + (h + 2 * kv) * D * d + (l.QkvBias ? (h + 2 * kv) * D : 0)  // q_proj, k_proj, v_proj
                        + (l.QkNorm ? 2 * D : 0)                                    // q_norm, k_norm (over one head)
                        + d * h * D + (l.OutputBias ? d : 0)                        // o_proj
                        + 3 * m * d + (l.GatedMlpBias ? 2 * m + d : 0);             // gate_proj, up_proj, down_proj
                }
                return new ParameterCount((l.TieWordEmbeddings ? 1 : 2) * V * d, layers + d);
            default:
                throw new ArgumentException($"no parameter count for {c.GetType().Name}");
        }
    }
}
