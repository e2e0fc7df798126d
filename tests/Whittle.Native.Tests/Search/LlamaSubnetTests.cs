using System.Text.RegularExpressions;
using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// Whittle on the Llama family: sub-network specs with kv_heads, permutation invariance (query groups, heads within a
/// group, gated-MLP neurons, channels through RMSNorm) and a wrong rule caught, in-place sub-networks against their
/// extracted dense copies (logits, gradients, disk round trips, HF-compatible or whittle_* configs), parameter counts
/// against an independent enumeration, FLOPs against a hand count, search spaces over query groups, and importance on
/// a model built so the answer is known.
///
/// Tolerance 1e-5 (ScaledError, max |a − b| / max |b|), as for GPT-NeoX (SearchTestModels.ScaledError): both sides are the
/// same function computed through different f32 arrangements; every logit comes out of a chain of ~16 f32 dot products of
/// length ≤ 64 (q/k/v/o, gate/up/down, the head) and RMSNorm sums of squares over ≤ 32 values, each off by
/// ~sqrt(k)·2^-24 ≈ 5e-7 of its Σ|terms| in any summation order (GemmTests), ≲ 1e-5 in all; a wrong slice, a head read from the
/// wrong kv head or an unpermuted tensor is an O(1) error (the wrong-rule test measures it).
/// </summary>
[Category(TestBackends.GemmSensitive)]
public class LlamaSubnetTests
{
    const double Tolerance = 1e-5;
    static readonly LlamaConfig[] Shapes = LlamaShapes().ToArray();
    static readonly LlamaConfig Qwen2 = Shapes[1];   // 3 layers, 4 heads in 2 groups of 2, head size 8, 40 neurons

    // ---------------------------------------------------------------- specs

    [Test]
    public void SpecFormsWithKvHeads()
    {
        var a = SubnetSpec.Parse("""{"kv_heads": 1}""", Qwen2);
        Assert.That((a.Heads, a.KvHeads), Is.EqualTo((new[] { 2, 2, 2 }, new[] { 1, 1, 1 })));
        Assert.That(SubnetSpec.Key(a), Is.EqualTo("""{"embed_dim":32,"layers":3,"heads":2,"kv_heads":1,"intermediate_size":40}"""));
        var b = SubnetSpec.Parse("""{"layers": [2, 0], "heads": [4, 2]}""", Qwen2);   // kv_heads follow from heads
        Assert.That((b.Heads, b.KvHeads), Is.EqualTo((new[] { 4, 2 }, new[] { 2, 1 })));
        var c = SubnetSpec.Parse("""{"layers": [2, 0], "kv_heads": [2, 1], "heads": [4, 2], "intermediate_size": [8, 40]}""", Qwen2);
        Assert.That(SubnetSpec.Key(c), Is.EqualTo(SubnetSpec.Key(b with { Intermediate = [8, 40] })));
        Assert.That(SubnetSpec.Key(SubnetSpec.Parse(SubnetSpec.Key(c), Qwen2)), Is.EqualTo(SubnetSpec.Key(c)));
        Assert.That(SubnetSpec.Key(SubnetSpec.Parse("{}", Qwen2)), Does.Contain("\"heads\":4,\"kv_heads\":2"));
        // GPT-NeoX: groups of one; kv_heads equal to heads is accepted and not written back.
        var neox = SearchTestModels.Shapes().First();
        Assert.That(SubnetSpec.Key(SubnetSpec.Parse("""{"heads": 2, "kv_heads": 2}""", neox)), Does.Not.Contain("kv_heads"));
    }

    [TestCase("""{"heads": 3}""", "'heads': 3 heads in layer 0 is not a multiple")]
    [TestCase("""{"heads": 4, "kv_heads": 1}""", "'heads': 4 heads in layer 0 disagree with kv_heads 1")]
    [TestCase("""{"kv_heads": 3}""", "'kv_heads': 3 kv heads in layer 0, must be in [1, 2]")]
    [TestCase("""{"kv_heads": [1, 2]}""", "'kv_heads': has 2 entries but 3 layers")]
    [TestCase("""{"kv_heads": "one"}""", "'kv_heads': expected an integer")]
    public void BadLlamaSpecsNameTheField(string json, string message)
    {
        var e = Assert.Throws<WhittleException>(() => SubnetSpec.Parse(json, Qwen2))!;
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void GptNeoXRefusesKvHeadsOtherThanHeads()
    {
        var e = Assert.Throws<WhittleException>(() => SubnetSpec.Parse("""{"heads": 2, "kv_heads": 1}""", SearchTestModels.Shapes().First()))!;
        Assert.That(e.Message, Does.Contain("'kv_heads'").And.Contain("equals heads"));
    }

    [Test]
    public void AnArchitectureThatSplitsAGroupIsRefused()
    {
        var split = new ActiveArchitecture(32, [0], [3], [40], [2]);
        Assert.That(() => split.Validate(Qwen2), Throws.TypeOf<WhittleException>().With.Message.Contains("whole query groups"));
        using var model = RandomModel(Qwen2, 1);
        Assert.That(() => Logits(model, RandomIds(Qwen2.VocabSize, 1, 4, 1), split), Throws.TypeOf<WhittleException>());
    }

    // ---------------------------------------------------------------- permutation

    /// <summary>A random permutation of heads that keeps query groups whole: groups shuffled, heads shuffled within each.</summary>
    static int[] GroupedHeadPermutation(int kv, int g, Rng rng) =>
        RandomPermutation(kv, rng).SelectMany(k => RandomPermutation(g, rng).Select(j => k * g + j)).ToArray();

    static UnitPermutation RandomUnitPermutation(LlamaConfig c, Rng rng) => new(
        RandomPermutation(c.HiddenSize, rng),
        Enumerable.Range(0, c.NumLayers).Select(l => GroupedHeadPermutation(c.KvHeadsOf(l), c.GroupSize, rng)).ToArray(),
        Enumerable.Range(0, c.NumLayers).Select(l => RandomPermutation(c.IntermediateOf(l), rng)).ToArray());

    [Test]
    public void PermutingUnitsLeavesLogitsUnchanged()
    {
        ulong seed = 1;
        foreach (var c in Shapes)
        {
            using var model = RandomModel(c, seed++);
            var ids = RandomIds(c.VocabSize, 2, 7, seed++);
            var before = Logits(model, ids);
            var weightsBefore = model.Parameters.Flat.ToFloatArray();
            Permutation.Apply(model, RandomUnitPermutation(c, new Rng(seed++)));
            Assert.That(model.Parameters.Flat.ToFloatArray(), Is.Not.EqualTo(weightsBefore), "the permutation moved nothing");
            Assert.That(ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(Tolerance), c.Family);
        }
    }

    [Test]
    public void APermutationOfOneFamilyAloneAlsoPreservesLogits()
    {
        // Catches a rule that is wrong in a way another family's permutation would mask; groups and heads-within-groups apart.
        foreach (var c in new[] { Shapes[1], Shapes[2] })
        {
            var rng = new Rng(7);
            var id = UnitPermutation.Identity(c);
            int g = c.GroupSize;
            var only = new[]
            {
                id with { Embed = RandomPermutation(c.HiddenSize, rng) },
                id with { Heads = id.Heads.Select(h => RandomPermutation(h.Length / g, rng)
                    .SelectMany(k => Enumerable.Range(k * g, g)).ToArray()).ToArray() },
                id with { Heads = id.Heads.Select(h => Enumerable.Range(0, h.Length / g)
                    .SelectMany(k => RandomPermutation(g, rng).Reverse().Select(j => k * g + j)).ToArray()).ToArray() },
                id with { Neurons = id.Neurons.Select(n => RandomPermutation(n.Length, rng)).ToArray() },
            };
            foreach (var (p, i) in only.Select((p, i) => (p, i)))
            {
                using var model = RandomModel(c, 11);
                var ids = RandomIds(c.VocabSize, 1, 6, 3);
                var before = Logits(model, ids);
                var w = model.Parameters.Flat.ToFloatArray();
                Permutation.Apply(model, p);
                Assert.That(model.Parameters.Flat.ToFloatArray(), Is.Not.EqualTo(w), $"{c.Family} family {i} moved nothing");
                Assert.That(ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(Tolerance), $"{c.Family} family {i}");
            }
        }
    }

    /// <summary>
    /// The invariance check has teeth: moving query heads across groups (q rows and o_proj columns, the GPT-NeoX head rule
    /// applied without regard to groups) changes the logits by far more than the tolerance, and Permutation refuses such a
    /// head order by name.
    /// </summary>
    [Test]
    public void AWrongRuleIsCaught()
    {
        var c = Qwen2;
        int D = c.HeadSize, C = c.HiddenSize, H = c.NumHeads;
        using var model = RandomModel(c, 21);
        var ids = RandomIds(c.VocabSize, 2, 7, 22);
        var before = Logits(model, ids);
        int[] across = [0, 2, 1, 3];   // heads 1 and 2 change groups
        var w = model.Parameters.Flat.ToFloatArray();
        var q = model.Parameters.Info(Llama.LayerPrefix(0) + "self_attn.q_proj.weight");   // (H·D, C)
        var qb = model.Parameters.Info(Llama.LayerPrefix(0) + "self_attn.q_proj.bias");    // (H·D)
        var o = model.Parameters.Info(Llama.LayerPrefix(0) + "self_attn.o_proj.weight");   // (C, H·D)
        var src = (float[])w.Clone();
        for (int h = 0; h < H; h++)
            for (int e = 0; e < D; e++)
            {
                int to = h * D + e, from = across[h] * D + e;
                Array.Copy(src, q.Offset + (long)from * C, w, q.Offset + (long)to * C, C);
                w[qb.Offset + to] = src[qb.Offset + from];
                for (int r = 0; r < C; r++) w[o.Offset + (long)r * H * D + to] = src[o.Offset + (long)r * H * D + from];
            }
        using (var host = Tensor.FromArray(w, w.Length)) model.LoadFlat(host);
        Assert.That(ScaledError(Logits(model, ids), before), Is.GreaterThan(1000 * Tolerance), "query heads read another group's kv head");

        var p = UnitPermutation.Identity(c) with { Heads = [across, [0, 1, 2, 3], [0, 1, 2, 3]] };
        Assert.That(() => Permutation.Apply(model, p), Throws.ArgumentException.With.Message.Contains("one query group"));
    }

    // ---------------------------------------------------------------- sub-networks and extraction

    static IEnumerable<(LlamaConfig, ActiveArchitecture, bool Hf)> Subnets()
    {
        // llama MQA, tied, all biases: uniform, heads × D = 2 × 8 = 16 = d: a plain HF config.
        yield return (Shapes[0], new ActiveArchitecture(16, [0, 1], [4, 4], [24, 24], [1, 1]), true);
        // qwen2: one group of 2 heads × 8 ≠ 24: HF with head_dim written.
        yield return (Shapes[1], new ActiveArchitecture(24, [2, 0], [2, 2], [16, 16], [1, 1]), true);
        // qwen2: per-layer groups and widths, ordered subset: whittle_* fields.
        yield return (Shapes[1], new ActiveArchitecture(16, [1, 2, 0], [4, 2, 2], [40, 8, 24], [2, 1, 1]), false);
        // qwen3: QK-norm, head_dim 10 ≠ 24/4, tied.
        yield return (Shapes[2], new ActiveArchitecture(20, [1], [2], [12], [1]), true);
        yield return (Shapes[3], new ActiveArchitecture(8, [1, 0], [2, 4], [24, 8], [1, 2]), false);
        // non-uniform parent, uniform child.
        yield return (Shapes[4], new ActiveArchitecture(12, [1, 0], [4, 4], [16, 16], [2, 2]), true);
    }

    [Test]
    public void ExtractedModelComputesTheInPlaceSubnetwork()
    {
        ulong seed = 100;
        foreach (var (c, a, hf) in Subnets())
        {
            string what = $"{c.Family} {SubnetSpec.Key(a)}";
            using var parent = RandomModel(c, seed++);
            var ids = RandomIds(c.VocabSize, 2, 6, seed++);
            var inPlace = Logits(parent, ids, a);
            using LanguageModel child = Extraction.Extract((LanguageModel)parent, a);
            Assert.That(child, Is.TypeOf<Llama>());
            Assert.That(child.Parameters.Count, Is.EqualTo(ParameterCount.Of(c, a).Total), what);
            Assert.That(ScaledError(Logits(child, ids), inPlace), Is.LessThanOrEqualTo(Tolerance), what);
            Assert.That(child.Config.IsHuggingFaceCompatible, Is.EqualTo(hf), what);

            var dir = Path.Combine(Path.GetTempPath(), "whittle-llama-extract-" + Guid.NewGuid().ToString("N"));
            try
            {
                ModelCheckpoint.Save(child, dir);
                var json = File.ReadAllText(Path.Combine(dir, "config.json"));
                Assert.That(json.Contains("whittle_"), Is.EqualTo(!hf), json);
                var h = a.Heads[0];
                Assert.That(json.Contains("\"head_dim\""), Is.EqualTo(h * c.HeadSize != a.EmbedDim || c.ExplicitHeadDim is not null), json);
                using var loaded = ModelCheckpoint.Load(dir, Host);
                Assert.That(loaded.Config.ToJson().ToJsonString(), Is.EqualTo(child.Config.ToJson().ToJsonString()), what);
                for (int i = 0; i < a.Layers.Length; i++)
                    Assert.That((loaded.Config.HeadsOf(i), loaded.Config.KvHeadsOf(i), loaded.Config.IntermediateOf(i)),
                        Is.EqualTo((a.Heads[i], a.KvHeads[i], a.Intermediate[i])), what);
                Assert.That(ScaledError(Logits(loaded, ids), inPlace), Is.LessThanOrEqualTo(Tolerance), what);
            }
            finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        }
    }

    /// <summary>
    /// Gradients of the in-place sub-network land in exactly the parent's slices the forward read, equal to the extracted
    /// child's gradients there (1e-5 of the largest, as the logits), and every other parent gradient is exactly zero.
    /// </summary>
    [Test]
    public void SubnetworkGradientsLandInTheParentsSlices()
    {
        ulong seed = 300;
        var layerName = new Regex(@"^model\.layers\.(\d+)\.(.+)$");
        foreach (var (c, a, _) in Subnets())
        {
            string what = $"{c.Family} {SubnetSpec.Key(a)}";
            using var parent = RandomModel(c, seed++);
            using var child = Extraction.Extract(parent, a);
            var tokens = RandomIds(c.VocabSize, 2, 7, seed++);
            var parentGrad = Gradients(parent, tokens, a);
            var childGrad = Gradients(child, tokens, null);
            var covered = new bool[parentGrad.Length];
            double scale = childGrad.Max(Math.Abs), err = 0;
            foreach (var e in child.Parameters.Entries)
            {
                var m = layerName.Match(e.Name);
                var pe = parent.Parameters.Info(m.Success ? Llama.LayerPrefix(a.Layers[int.Parse(m.Groups[1].Value)]) + m.Groups[2].Value : e.Name);
                int R = e.Shape[0], C = e.Shape.Length == 2 ? e.Shape[1] : 1, parentCols = pe.Shape.Length == 2 ? pe.Shape[1] : 1;
                for (int r = 0; r < R; r++)
                    for (int col = 0; col < C; col++)
                    {
                        long at = pe.Offset + (long)r * parentCols + col;
                        covered[at] = true;
                        err = Math.Max(err, Math.Abs(parentGrad[at] - childGrad[e.Offset + (long)r * C + col]));
                    }
            }
            Assert.That(err / scale, Is.LessThanOrEqualTo(Tolerance), what);
            int outside = Enumerable.Range(0, parentGrad.Length).Count(i => !covered[i] && parentGrad[i] != 0);
            Assert.That(outside, Is.Zero, $"{what}: gradients outside the sub-network's slices");
        }
    }

    static float[] Gradients(LanguageModel model, int[,] tokens, ActiveArchitecture? a)
    {
        int B = tokens.GetLength(0), T = tokens.GetLength(1) - 1;
        var x = new int[B * T]; var y = new int[B * T];
        for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) { x[b * T + t] = tokens[b, t]; y[b * T + t] = tokens[b, t + 1]; }
        using var xs = Tensor.FromArray(x, B, T);
        using var ys = Tensor.FromArray(y, B * T);
        model.Parameters.EnsureGrad();
        model.Parameters.ZeroGrad();
        using var tape = new Tape(model.Backend);
        tape.Backward(model.Loss(tape, xs, ys, a));
        return model.Parameters.FlatGrad!.ToFloatArray();
    }

    // ---------------------------------------------------------------- costs

    [Test]
    public void ParameterCountsEqualTheExtractedLayout()
    {
        var rng = new Rng(5);
        foreach (var c in Shapes)
        {
            Assert.That(ParameterCount.Of(c), Is.EqualTo(c.CountParameters()), $"{c.Family}: formula vs the layout");
            var space = new SearchSpace(c, SpaceKind.PerLayer, ParameterCount.Of(c).Total, 0.99, new StepSizes(4, 1, 4));
            var layersSpace = new SearchSpace(c, SpaceKind.Layers, ParameterCount.Of(c).Total, 0.99, new StepSizes(4, 1, 4));
            for (int i = 0; i < 20; i++)
            {
                var a = (i % 2 == 0 ? space : layersSpace).ToArchitecture((i % 2 == 0 ? space : layersSpace).Sample(rng));
                long layout = Extraction.ChildConfig(c, a).Layout().Sum(p => Tensor.Numel(p.Shape));
                var count = ParameterCount.Of(c, a);
                Assert.That(count.Total, Is.EqualTo(layout), $"{c.Family} {SubnetSpec.Key(a)}");
                Assert.That(count.Embedding, Is.EqualTo((c.TieWordEmbeddings ? 1L : 2L) * c.VocabSize * a.EmbedDim));
            }
        }
    }

    [Test]
    public void FlopsMatchAHandCount()
    {
        var c = new LlamaConfig { Family = "llama", VocabSize = 10, HiddenSize = 8, NumLayers = 1, NumHeads = 4, NumKeyValueHeads = 2,
            IntermediateSize = 16 };   // D = 2, 2 query heads per group
        var f = SubnetCosts.FlopsPerToken(c, ActiveArchitecture.Full(c), context: 5);
        // q, k, v: 2·(4 + 2 + 2)·2·8 = 256; o: 2·8·8 = 128; gate, up, down: 2·3·16·8 = 768; attention 2·2·5·4·2 = 160; head 2·10·8.
        Assert.That((f.NonEmbedding, f.Embedding), Is.EqualTo((1312L, 160L)));
        // d 4, one group (2 heads), 8 neurons: 2·(2+1+1)·2·4 = 64; o 2·4·4 = 32; MLP 2·3·8·4 = 192; attention 2·2·5·2·2 = 80.
        var half = SubnetCosts.FlopsPerToken(c, new ActiveArchitecture(4, [0], [2], [8], [1]), context: 5);
        Assert.That((half.NonEmbedding, half.Embedding), Is.EqualTo((368L, 80L)));
    }

    // ---------------------------------------------------------------- search spaces

    [TestCase(SpaceKind.Uniform)]
    [TestCase(SpaceKind.PerLayer)]
    [TestCase(SpaceKind.Layers)]
    public void SearchSpacesChooseWholeQueryGroups(SpaceKind kind)
    {
        foreach (var c in Shapes)
        {
            long budget = ParameterCount.Of(c).Total * 6 / 10;
            var space = new SearchSpace(c, kind, budget, 0.2, new StepSizes(4, 1, 4));
            var rng = new Rng(9);
            var kvSeen = new HashSet<int>();
            for (int i = 0; i < 30; i++)
            {
                var g = space.SampleInBudget(rng);
                Assert.That(g, Is.Not.Null, $"{c.Family} {kind}");
                var a = space.ToArchitecture(g!).Validate(c);
                Assert.That(ParameterCount.Of(c, a).Total, Is.InRange(space.Low, space.High));
                for (int j = 0; j < a.Layers.Length; j++)
                {
                    Assert.That(a.Heads[j], Is.EqualTo(a.KvHeads[j] * c.GroupSize));
                    kvSeen.Add(a.KvHeads[j]);
                }
                if (kind != SpaceKind.PerLayer) Assert.That(a.KvHeads.Distinct().Count(), Is.EqualTo(1));
            }
            if (c.NumKeyValueHeads > 1) Assert.That(kvSeen, Has.Count.GreaterThan(1), $"{c.Family} {kind}: the group gene moves");
            var baseline = space.ImportanceBaseline(null);
            Assert.That(baseline, Is.Not.Null, $"{c.Family} {kind}");
            Assert.That(ParameterCount.Of(c, baseline!.Validate(c)).Total, Is.LessThanOrEqualTo(space.High));
        }
    }

    // ---------------------------------------------------------------- importance

    /// <summary>
    /// Known answers, as ImportanceTests does for GPT-NeoX: a layer whose o_proj and down_proj are zero is the identity
    /// (block influence 0); a kv head whose v rows are zero gives its whole query group a zero context (group score 0, ranked
    /// last); a neuron whose gate row is zero has silu(0)·up = 0. Layer 0's o_proj is zero too, so its MLP reads the
    /// normalised embedding and its neuron scores can be recomputed here in double from the weights (mean |silu(g)·u|); the
    /// ranked model is the same function and scores in descending order.
    /// </summary>
    [Test]
    public void KnownDeadUnitsScoreZeroAndTheRankedModelIsTheSameFunction()
    {
        var c = Qwen2;
        using var model = RandomModel(c, 5);
        int D = c.HeadSize, C = c.HiddenSize;
        var w = model.Parameters.Flat.ToFloatArray();
        void Zero(string name, int start, int count) { var p = model.Parameters.Info(name); Array.Clear(w, (int)p.Offset + start, count); }
        string L(int l) => Llama.LayerPrefix(l);
        foreach (var n in new[] { "self_attn.o_proj.weight", "mlp.down_proj.weight" })
            Zero(L(1) + n, 0, (int)model.Parameters.Info(L(1) + n).Count);
        Zero(L(0) + "self_attn.o_proj.weight", 0, (int)model.Parameters.Info(L(0) + "self_attn.o_proj.weight").Count);
        Zero(L(0) + "self_attn.v_proj.weight", 0, D * C);   // kv head 0 of layer 0: its group is heads 0 and 1
        Zero(L(0) + "self_attn.v_proj.bias", 0, D);
        Zero(L(2) + "mlp.gate_proj.weight", 5 * C, C);
        using (var host = Tensor.FromArray(w, w.Length)) model.LoadFlat(host);

        var batches = new[] { RandomIds(c.VocabSize, 2, 8, 1), RandomIds(c.VocabSize, 2, 8, 2) };
        var s = Importance.Score(model, batches);
        Assert.That(s.Layers[1], Is.LessThan(1e-6));
        Assert.That(s.Layers[0], Is.GreaterThan(1e-3));
        Assert.That(s.Groups[0][0], Is.EqualTo(0).Within(1e-9));
        Assert.That(s.Groups[0][1], Is.EqualTo(s.Heads[0][2] + s.Heads[0][3]).Within(1e-12));
        Assert.That(s.Neurons[2][5], Is.EqualTo(0).Within(1e-9));
        Assert.That(s.Neurons[0], Is.EqualTo(GatedNeuronScores(c, w, model, batches)).Within(1e-5 * s.Neurons[0].Max()));

        var ids = RandomIds(c.VocabSize, 2, 7, 9);
        var before = Logits(model, ids);
        var p = s.ToPermutation();
        Assert.That(p.Heads[0][2..], Is.EquivalentTo(new[] { 0, 1 }), "the dead group goes last, whole");
        Assert.That(p.Neurons[2][^1], Is.EqualTo(5));
        Permutation.Apply(model, p);
        Assert.That(ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(Tolerance));
        var json = s.ToJson(p);
        Assert.That(json["query_groups"]!.AsArray()[0]!.AsArray()[1]!.GetValue<double>(), Is.EqualTo(0).Within(1e-9));

        // Permuting reorders f32 additions only (≲ 5e-7 relative), so ties may swap by that much: 1e-6.
        var again = Importance.Score(model, batches);
        static void Descending(IEnumerable<double> v, string what)
        {
            var a = v.ToArray();
            for (int i = 1; i < a.Length; i++) Assert.That(a[i], Is.LessThanOrEqualTo(a[i - 1] * (1 + 1e-6) + 1e-12), what);
        }
        for (int l = 0; l < c.NumLayers; l++)
        {
            Descending(again.Groups[l], $"groups {l}");
            for (int k = 0; k < c.NumKeyValueHeads; k++) Descending(again.Heads[l].Skip(2 * k).Take(2), $"heads of group {k} in {l}");
            Descending(again.Neurons[l], $"neurons {l}");
        }
    }

    /// <summary>
    /// mean over tokens of |silu(gate_k)·up_k| in layer 0, in double from the weights: layer 0's o_proj is zero, so its MLP
    /// reads post_attention_layernorm(embedding) (qwen2: no MLP biases).
    /// </summary>
    static double[] GatedNeuronScores(LlamaConfig c, float[] w, LanguageModel model, int[][,] batches)
    {
        int C = c.HiddenSize, M = c.IntermediateSize;
        float[] P(string name) { var p = model.Parameters.Info(name); return w.AsSpan((int)p.Offset, (int)p.Count).ToArray(); }
        var emb = P(Llama.EmbedTokens); var norm = P(Llama.LayerPrefix(0) + "post_attention_layernorm.weight");
        var gate = P(Llama.LayerPrefix(0) + "mlp.gate_proj.weight"); var up = P(Llama.LayerPrefix(0) + "mlp.up_proj.weight");
        var sums = new double[M];
        long n = 0;
        foreach (var batch in batches)
            foreach (var id in batch)
            {
                var x = Enumerable.Range(0, C).Select(i => (double)emb[id * C + i]).ToArray();
                double rms = Math.Sqrt(x.Sum(v => v * v) / C + c.RmsNormEps);
                var h = x.Select((v, i) => v / rms * norm[i]).ToArray();
                for (int k = 0; k < M; k++)
                {
                    double g = 0, u = 0;
                    for (int i = 0; i < C; i++) { g += gate[k * C + i] * h[i]; u += up[k * C + i] * h[i]; }
                    sums[k] += Math.Abs(g / (1 + Math.Exp(-g)) * u);
                }
                n++;
            }
        return sums.Select(v => v / n).ToArray();
    }
}
