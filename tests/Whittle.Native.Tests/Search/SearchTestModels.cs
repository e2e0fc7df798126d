using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Search;

/// <summary>Random GPT-NeoX and Llama-family models of several shapes with EVERY parameter random (biases and norms too, so
/// permutation and extraction mistakes in any tensor change the logits), and a logits helper.</summary>
static class SearchTestModels
{
    public static readonly CpuBackend Host = CpuBackend.Instance;

    public static IEnumerable<GptNeoXConfig> Shapes()
    {
        yield return new GptNeoXConfig { VocabSize = 50, HiddenSize = 32, NumLayers = 2, NumHeads = 4, IntermediateSize = 48,
            MaxPositionEmbeddings = 32 };
        yield return new GptNeoXConfig { VocabSize = 40, HiddenSize = 24, NumLayers = 3, NumHeads = 3, IntermediateSize = 40,
            UseParallelResidual = false, HiddenAct = "gelu_new", RotaryPct = 0.5f, MaxPositionEmbeddings = 32 };
        // A non-uniform parent: per-layer heads and widths, heads × head size ≠ hidden size.
        yield return new GptNeoXConfig { VocabSize = 30, HiddenSize = 20, NumLayers = 2, NumHeads = 3, IntermediateSize = 40,
            ExplicitHeadSize = 8, LayerHeads = [2, 3], LayerIntermediateSizes = [24, 40], UseParallelResidual = false,
            MaxPositionEmbeddings = 32 };
    }

    /// <summary>
    /// Llama-family parents that exercise every permutation and slicing rule: MQA (KV = 1) with a tied head and every bias
    /// llama has; qwen2's q/k/v biases with KV = H/2 and an untied head; qwen3's QK-norm with head_dim ≠ hidden/heads and
    /// a tied head; mistral; and a non-uniform qwen2 parent (per-layer kv heads and widths, as an extracted child has).
    /// </summary>
    public static IEnumerable<LlamaConfig> LlamaShapes()
    {
        yield return new LlamaConfig { Family = "llama", VocabSize = 50, HiddenSize = 32, NumLayers = 2, NumHeads = 4,
            NumKeyValueHeads = 1, IntermediateSize = 40, TieWordEmbeddings = true, AttentionBias = true, MlpBias = true,
            MaxPositionEmbeddings = 32 };
        yield return new LlamaConfig { Family = "qwen2", VocabSize = 40, HiddenSize = 32, NumLayers = 3, NumHeads = 4,
            NumKeyValueHeads = 2, IntermediateSize = 40, RopeTheta = 1e6, MaxPositionEmbeddings = 32 };
        yield return new LlamaConfig { Family = "qwen3", VocabSize = 30, HiddenSize = 24, NumLayers = 2, NumHeads = 4,
            NumKeyValueHeads = 2, ExplicitHeadDim = 10, IntermediateSize = 36, TieWordEmbeddings = true, MaxPositionEmbeddings = 32 };
        yield return new LlamaConfig { Family = "mistral", VocabSize = 30, HiddenSize = 32, NumLayers = 2, NumHeads = 4,
            NumKeyValueHeads = 2, IntermediateSize = 24, MaxPositionEmbeddings = 32 };
        yield return new LlamaConfig { Family = "qwen2", VocabSize = 30, HiddenSize = 24, NumLayers = 2, NumHeads = 6,
            NumKeyValueHeads = 3, ExplicitHeadDim = 6, IntermediateSize = 40, LayerKvHeads = [2, 3], LayerIntermediateSizes = [24, 40],
            MaxPositionEmbeddings = 32 };
    }

    public static GptNeoX RandomModel(GptNeoXConfig c, ulong seed) => Randomised(new GptNeoX(c, Host), seed);

    public static Llama RandomModel(LlamaConfig c, ulong seed) => Randomised(new Llama(c, Host), seed);

    /// <summary>Every parameter ~ N(0, 0.3), norm weights ~ N(1, 0.3).</summary>
    static T Randomised<T>(T model, ulong seed) where T : LanguageModel
    {
        var values = new float[model.Parameters.Count];
        new Rng(seed).FillNormal(values, 0, 0.3);
        foreach (var p in model.Parameters.Entries)
            if (p.Name.EndsWith("norm.weight"))
                for (long i = p.Offset; i < p.Offset + p.Count; i++) values[i] += 1f;
        using var host = Tensor.FromArray(values, values.Length);
        model.LoadFlat(host);
        return model;
    }

    public static int[,] RandomIds(int vocab, int b, int t, ulong seed)
    {
        var rng = new Rng(seed);
        var ids = new int[b, t];
        for (int i = 0; i < b; i++) for (int j = 0; j < t; j++) ids[i, j] = rng.NextInt(vocab);
        return ids;
    }

    public static float[] Logits(LanguageModel model, int[,] ids, ActiveArchitecture? active = null)
    {
        var flat = new int[ids.Length];
        Buffer.BlockCopy(ids, 0, flat, 0, flat.Length * sizeof(int));
        using var t = Tensor.FromArray(flat, ids.GetLength(0), ids.GetLength(1));
        using var tape = new Tape(model.Backend, recording: false);
        return model.Forward(tape, t, active).Data.ToFloatArray();
    }

    /// <summary>max |a − b| / max |b|. The search tests hold it to 1e-5 when the two sides are the same function computed
    /// through different f32 arrangements (in place vs extracted, permuted vs original, vs a float64 reference): the
    /// tiny models' logits come out of ~12 f32 dot products of length ≤ 48, each off by ~sqrt(k)·2^-24 ≈ 4e-7 of its
    /// Σ|terms| in any summation order (GemmTests), ≲ 5e-6 in all; a wrong slice or permutation is an O(1) error.</summary>
    public static double ScaledError(float[] a, float[] b)
    {
        Assert.That(a.Length, Is.EqualTo(b.Length));
        double err = 0, scale = 0;
        for (int i = 0; i < a.Length; i++) { err = Math.Max(err, Math.Abs(a[i] - (double)b[i])); scale = Math.Max(scale, Math.Abs(b[i])); }
        return err / scale;
    }

    public static int[] RandomPermutation(int n, Rng rng)
    {
        var p = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }
}
