namespace Whittle.Native.Model;

/// <summary>
/// Which part of a (possibly larger) model a forward pass uses: the first <see cref="EmbedDim"/> channels,
/// the layers <see cref="Layers"/> in that order, and in each the first Heads[i] query heads, the first KvHeads[i] key/value
/// heads (query groups) and the first Intermediate[i] MLP neurons. The whole model is the trivial case. Everything is a
/// prefix of the (importance-permuted) parent, so the forward pass reads strided views of the parent's weights and copies
/// nothing. A sub-network keeps whole query groups: Heads[i] = KvHeads[i] × the parent's query heads per group (for
/// multi-head attention, GPT-NeoX, groups of one: KvHeads = Heads). Query rows are laid out group-major ([KV][H/KV][D]), so
/// only whole groups make the query rows, the key/value rows and the output projection's columns leading prefixes.
/// Head size is always the parent's.
/// </summary>
public sealed record ActiveArchitecture(int EmbedDim, int[] Layers, int[] Heads, int[] Intermediate)
{
    readonly int[]? _kvHeads;

    /// <summary>Key/value heads (query groups) per selected layer; unless set, equal to <see cref="Heads"/> (groups of one).</summary>
    public int[] KvHeads { get => _kvHeads ?? Heads; init => _kvHeads = value; }

    /// <summary>A sub-network with <paramref name="kvHeads"/> query groups per selected layer.</summary>
    public ActiveArchitecture(int embedDim, int[] layers, int[] heads, int[] intermediate, int[] kvHeads)
        : this(embedDim, layers, heads, intermediate) => _kvHeads = kvHeads;

    public static ActiveArchitecture Full(ModelConfig c) => new(
        c.HiddenSize,
        Enumerable.Range(0, c.NumLayers).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(c.HeadsOf).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(c.IntermediateOf).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(c.KvHeadsOf).ToArray());

    /// <summary>Throws a WhittleException naming the first dimension that does not fit inside <paramref name="parent"/>.</summary>
    public ActiveArchitecture Validate(ModelConfig parent)
    {
        void Require(bool ok, string what) { if (!ok) throw new WhittleException($"sub-network: {what}"); }
        Require(EmbedDim >= 1 && EmbedDim <= parent.HiddenSize, $"embed_dim {EmbedDim} must be in [1, {parent.HiddenSize}]");
        Require(Layers.Length >= 1, "at least one layer is needed");
        Require(Heads.Length == Layers.Length && Intermediate.Length == Layers.Length && KvHeads.Length == Layers.Length,
            "heads, kv_heads and intermediate_size need one entry per selected layer");
        Require(Layers.Distinct().Count() == Layers.Length, $"layer indices repeat: [{string.Join(", ", Layers)}]");
        for (int i = 0; i < Layers.Length; i++)
        {
            int l = Layers[i];
            Require(l >= 0 && l < parent.NumLayers, $"layer index {l} is outside [0, {parent.NumLayers})");
            Require(Heads[i] >= 1 && Heads[i] <= parent.HeadsOf(l), $"layer {l}: {Heads[i]} heads, the parent has {parent.HeadsOf(l)}");
            int kv = KvHeads[i], group = parent.QueryHeadsPerGroup(l);
            Require(kv >= 1 && kv <= parent.KvHeadsOf(l), $"layer {l}: {kv} kv heads, the parent has {parent.KvHeadsOf(l)}");
            Require((long)kv * group == Heads[i],
                $"layer {l}: {Heads[i]} heads with {kv} kv heads; whole query groups are kept, so heads must be kv_heads × {group} " +
                $"(the parent's query heads per kv head)");
            Require(Intermediate[i] >= 1 && Intermediate[i] <= parent.IntermediateOf(l),
                $"layer {l}: intermediate_size {Intermediate[i]}, the parent has {parent.IntermediateOf(l)}");
        }
        return this;
    }
}
