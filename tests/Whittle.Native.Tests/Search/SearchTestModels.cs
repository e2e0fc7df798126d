using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Search;

/// <summary>Random GPT-NeoX models of several shapes with EVERY parameter random (biases and layernorms too, so
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

    public static GptNeoX RandomModel(GptNeoXConfig c, ulong seed)
    {
        var model = new GptNeoX(c, Host);
        var values = new float[model.Parameters.Count];
        new Rng(seed).FillNormal(values, 0, 0.3);
        foreach (var p in model.Parameters.Entries)
            if (p.Name.EndsWith("layernorm.weight") || p.Name == GptNeoX.FinalNormWeight)
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

    public static float[] Logits(GptNeoX model, int[,] ids, ActiveArchitecture? active = null)
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
