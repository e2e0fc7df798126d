namespace Whittle.Native.Model;

/// <summary>
/// Exact parameter counts of a GPT-NeoX (sub-)network. "Embedding" is embed_in plus the untied embed_out (both V × d);
/// "non-embedding" is everything else (layers and the final layernorm), the convention of scaling-law papers.
/// </summary>
public readonly record struct ParameterCount(long Embedding, long NonEmbedding)
{
    public long Total => Embedding + NonEmbedding;

    public static ParameterCount Of(GptNeoXConfig c, ActiveArchitecture? active = null)
    {
        var a = active ?? ActiveArchitecture.Full(c);
        long d = a.EmbedDim, D = c.HeadSize, V = c.VocabSize;
        long layers = 0;
        for (int i = 0; i < a.Layers.Length; i++)
        {
            long h = a.Heads[i], m = a.Intermediate[i];
            layers += 4 * d                           // two layernorms
                + 3 * h * D * d + 3 * h * D           // query_key_value
                + d * h * D + d                       // attention.dense
                + m * d + m + d * m + d;              // mlp
        }
        return new ParameterCount(2 * V * d, layers + 2 * d);
    }
}
