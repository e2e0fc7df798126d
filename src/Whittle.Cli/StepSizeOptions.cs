using Whittle.Native.Search;

namespace Whittle.Cli;

/// <summary>The grid steps of a search space (`search` and `train-supernet` draw sub-networks from the same spaces).</summary>
sealed class StepSizeOptions
{
    public readonly Option<int> Embed = new("--embed-step") { Description = "embed_dim is a multiple of this (or the parent's).",
        DefaultValueFactory = _ => 8 };
    public readonly Option<int> Heads = new("--head-step") { Description = "Head counts (query groups, i.e. kv heads, for " +
        "Llama-family models) are multiples of this (or the parent's).", DefaultValueFactory = _ => 1 };
    public readonly Option<int> Intermediate = new("--intermediate-step") { Description = "MLP widths are multiples of this (or the " +
        "parent's).", DefaultValueFactory = _ => 8 };

    public StepSizes Parse(ParseResult p) => new(p.GetValue(Embed), p.GetValue(Heads), p.GetValue(Intermediate));
}
