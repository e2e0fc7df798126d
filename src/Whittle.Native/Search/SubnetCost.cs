// Policy: the search compares sub-networks by exact parameter counts (the budget) and by an analytic forward-FLOPs
// estimate (reported, not optimised). The FLOPs convention is Kaplan et al. (2020): a multiply-add is 2 FLOPs, only
// matrix products are counted (norms, GELU/SwiGLU, softmax, rotary, biases and the embedding lookup are lower order), and
// attention is counted at the full context T for every token (no causal halving), so the number is an upper bound
// that is comparable across sub-networks evaluated at the same T.
using Whittle.Native.Model;

namespace Whittle.Native.Search;

/// <summary>Forward FLOPs per token: the unembedding matmul (embedding) and everything else (non-embedding).</summary>
public readonly record struct FlopCount(long Embedding, long NonEmbedding)
{
    public long Total => Embedding + NonEmbedding;
}

public sealed record SubnetCost(ParameterCount Parameters, FlopCount Flops, int Context);

public static class SubnetCosts
{
    /// <summary>
    /// Per token at context T, per selected layer with h query heads and kv key/value heads of size D, width d and m MLP
    /// neurons: 2·((h + 2·kv)·D·d + d·hD) for the attention projections (kv = h without grouped-query attention), the MLP's
    /// 2·2·m·d (GPT-NeoX: two matrices) or 2·3·m·d (the gated MLP: gate, up, down), plus 2·2·T·h·D for q·kᵀ and
    /// attention·v (every query head attends). Embedding: 2·V·d for the LM head, tied or not (the input embedding is a
    /// lookup: 0 FLOPs).
    /// </summary>
    public static FlopCount FlopsPerToken(ModelConfig c, ActiveArchitecture a, int context)
    {
        long d = a.EmbedDim, D = c.HeadSize, T = context;
        long mlpMatrices = c is LlamaConfig ? 3 : 2;
        long layers = 0;
        for (int i = 0; i < a.Layers.Length; i++)
        {
            long h = a.Heads[i], kv = a.KvHeads[i], m = a.Intermediate[i];
            layers += 2 * ((h + 2 * kv) * D * d + d * h * D + mlpMatrices * m * d) + 2 * 2 * T * h * D;
        }
        return new FlopCount(2L * c.VocabSize * d, layers);
    }

    public static SubnetCost Of(ModelConfig c, ActiveArchitecture a, int context) =>
        new(ParameterCount.Of(c, a), FlopsPerToken(c, a, context), context);
}
