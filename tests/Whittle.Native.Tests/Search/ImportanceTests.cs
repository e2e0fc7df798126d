using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// Importance scores on models built so the answer is known: a layer whose output projections are zero is the identity
/// (block influence 0); a head whose value rows are zero has a zero context; a neuron whose input row and bias are zero
/// has GELU(0) = 0. Those units must score 0 and rank last, and the importance-permuted model must compute the same logits.
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class ImportanceTests
{
    [Test]
    public void KnownDeadUnitsScoreZeroAndTheRankedModelIsTheSameFunction()
    {
        var c = Shapes().ElementAt(1);   // 3 layers, 3 heads × 8, 40 neurons, sequential residual
        using var model = RandomModel(c, 5);
        int D = c.HeadSize, C = c.HiddenSize;
        var w = model.Parameters.Flat.ToFloatArray();
        void Zero(string name, int start, int count) { var p = model.Parameters.Info(name); Array.Clear(w, (int)p.Offset + start, count); }
        string L(int l) => GptNeoX.LayerPrefix(l);
        // Layer 1 becomes the identity.
        foreach (var n in new[] { "attention.dense.weight", "attention.dense.bias", "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias" })
            Zero(L(1) + n, 0, (int)model.Parameters.Info(L(1) + n).Count);
        // Layer 0, head 1: value rows (and bias) zero.
        Zero(L(0) + "attention.query_key_value.weight", (1 * 3 * D + 2 * D) * C, D * C);
        Zero(L(0) + "attention.query_key_value.bias", 1 * 3 * D + 2 * D, D);
        // Layer 2, neuron 5: input row and bias zero.
        Zero(L(2) + "mlp.dense_h_to_4h.weight", 5 * C, C);
        Zero(L(2) + "mlp.dense_h_to_4h.bias", 5, 1);
        using (var host = Tensor.FromArray(w, w.Length)) model.LoadFlat(host);

        var batches = new[] { RandomIds(c.VocabSize, 2, 8, 1), RandomIds(c.VocabSize, 2, 8, 2) };
        var s = Importance.Score(model, batches);
        Assert.That(s.Tokens, Is.EqualTo(32));
        // Zeroed projections make layer 1 an exact identity in f32 (x + 0 = x), so its block influence 1 − cos is 0 up to
        // the double cosine's rounding (~1e-16); live layers score > 1e-3. The dead head and neuron contribute exact zeros.
        Assert.That(s.Layers[1], Is.LessThan(1e-6));
        Assert.That(s.Layers[0], Is.GreaterThan(1e-3));
        Assert.That(s.Layers[2], Is.GreaterThan(1e-3));
        Assert.That(s.LayerRanking[^1], Is.EqualTo(1));
        Assert.That(s.Heads[0][1], Is.EqualTo(0).Within(1e-9));
        Assert.That(s.Neurons[2][5], Is.EqualTo(0).Within(1e-9));

        var ids = RandomIds(c.VocabSize, 2, 7, 9);
        var before = Logits(model, ids);
        var p = s.ToPermutation();
        Assert.That(p.Heads[0][^1], Is.EqualTo(1), "the dead head goes last");
        Assert.That(p.Neurons[2][^1], Is.EqualTo(5), "the dead neuron goes last");
        Permutation.Apply(model, p);
        Assert.That(ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(1e-5));

        // Scoring the permuted model again finds every family already in descending order. Permuting changes only the
        // order of f32 additions (relative ~sqrt(k)·2^-24 ≲ 5e-7 for k ≤ 40), so ties may reorder by that much: 1e-6.
        var again = Importance.Score(model, batches);
        static void Descending(double[] v, string what)
        {
            for (int i = 1; i < v.Length; i++) Assert.That(v[i], Is.LessThanOrEqualTo(v[i - 1] * (1 + 1e-6) + 1e-12), what);
        }
        Descending(again.Embed, "embed");
        for (int l = 0; l < c.NumLayers; l++) { Descending(again.Heads[l], $"heads {l}"); Descending(again.Neurons[l], $"neurons {l}"); }
        Assert.That(again.Layers, Is.EqualTo(s.Layers).Within(1e-6), "permuting units does not change block influence");
    }
}
