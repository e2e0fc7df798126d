using Whittle.Native.Model;
using Whittle.Native.Search;
using Whittle.Native.Tensors;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Search;

/// <summary>Sub-network specs, costs, permutation invariance and extraction, against hand-built answers and invariants.</summary>
[Category(TestBackends.GemmSensitive)]
public class SubnetTests
{
    static readonly GptNeoXConfig Parent = Shapes().First();   // C 32, 2 layers, 4 heads × 8, intermediate 48

    [Test]
    public void SpecForms()
    {
        var a = SubnetSpec.Parse("""{"embed_dim": 16, "layers": 1, "heads": 2, "intermediate_size": 24}""", Parent);
        Assert.That((a.EmbedDim, a.Layers, a.Heads, a.Intermediate), Is.EqualTo((16, new[] { 0 }, new[] { 2 }, new[] { 24 })));
        var b = SubnetSpec.Parse("""{"layers": [1, 0], "heads": [1, 3], "intermediate_size": [8, 48]}""", Parent);
        Assert.That((b.EmbedDim, b.Layers, b.Heads, b.Intermediate), Is.EqualTo((32, new[] { 1, 0 }, new[] { 1, 3 }, new[] { 8, 48 })));
        var full = SubnetSpec.Parse("{}", Parent);
        Assert.That(SubnetSpec.Key(full), Is.EqualTo("""{"embed_dim":32,"layers":2,"heads":4,"intermediate_size":48}"""));
        Assert.That(SubnetSpec.Key(b), Is.EqualTo("""{"embed_dim":32,"layers":[1,0],"heads":[1,3],"intermediate_size":[8,48]}"""));
        Assert.That(SubnetSpec.Key(SubnetSpec.Parse(SubnetSpec.Key(b), Parent)), Is.EqualTo(SubnetSpec.Key(b)));
    }

    [TestCase("""{"embed_dim": 33}""", "'embed_dim'")]
    [TestCase("""{"layers": 3}""", "'layers': count 3")]
    [TestCase("""{"layers": [0, 2]}""", "index 2 is outside")]
    [TestCase("""{"layers": [1, 1]}""", "index 1 is repeated")]
    [TestCase("""{"layers": []}""", "empty")]
    [TestCase("""{"heads": 5}""", "'heads': 5 heads in layer 0")]
    [TestCase("""{"heads": [1, 2, 3]}""", "has 3 entries but 2 layers")]
    [TestCase("""{"intermediate_size": 0}""", "'intermediate_size'")]
    [TestCase("""{"heads": "two"}""", "expected an integer")]
    [TestCase("""{"width": 3}""", "unknown field 'width'")]
    [TestCase("""[1]""", "must be a JSON object")]
    public void BadSpecsSayWhatIsWrong(string json, string message)
    {
        var e = Assert.Throws<WhittleException>(() => SubnetSpec.Parse(json, Parent))!;
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void FlopsMatchAHandCount()
    {
        var c = new GptNeoXConfig { VocabSize = 10, HiddenSize = 8, NumLayers = 1, NumHeads = 2, IntermediateSize = 16 };   // D = 4
        var f = SubnetCosts.FlopsPerToken(c, ActiveArchitecture.Full(c), context: 5);
        // projections 2·(3·2·4·8 + 8·2·4 + 2·16·8) = 1024; attention 2·2·5·2·4 = 160; unembedding 2·10·8 = 160.
        Assert.That((f.NonEmbedding, f.Embedding), Is.EqualTo((1184L, 160L)));
        // Halving the width of everything halves the projection FLOPs: 2·(3·1·4·4 + 4·1·4 + 2·8·4) = 256, attention 80.
        var half = SubnetCosts.FlopsPerToken(c, new ActiveArchitecture(4, [0], [1], [8]), context: 5);
        Assert.That((half.NonEmbedding, half.Embedding), Is.EqualTo((336L, 80L)));
    }

    [Test]
    public void PermutingUnitsLeavesLogitsUnchanged()
    {
        ulong seed = 1;
        foreach (var c in Shapes())
            for (int trial = 0; trial < 2; trial++)
            {
                using var model = RandomModel(c, seed++);
                var ids = RandomIds(c.VocabSize, 2, 7, seed++);
                var before = Logits(model, ids);
                var rng = new Rng(seed++);
                var p = new UnitPermutation(RandomPermutation(c.HiddenSize, rng),
                    Enumerable.Range(0, c.NumLayers).Select(l => RandomPermutation(c.HeadsOf(l), rng)).ToArray(),
                    Enumerable.Range(0, c.NumLayers).Select(l => RandomPermutation(c.IntermediateOf(l), rng)).ToArray());
                var weightsBefore = model.Parameters.Flat.ToFloatArray();
                Permutation.Apply(model, p);
                Assert.That(model.Parameters.Flat.ToFloatArray(), Is.Not.EqualTo(weightsBefore), "the permutation moved nothing");
                Assert.That(
                    ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(1e-5), $"{c.HiddenSize}/{c.NumLayers} trial {trial}");
            }
    }

    [Test]
    public void APermutationOfOneFamilyAloneAlsoPreservesLogits()
    {
        // Catches a rule that is wrong in a way another family's permutation would mask.
        var c = Shapes().ElementAt(1);
        var rng = new Rng(7);
        var id = UnitPermutation.Identity(c);
        var only = new[]
        {
            id with { Embed = RandomPermutation(c.HiddenSize, rng) },
            id with { Heads = id.Heads.Select(h => RandomPermutation(h.Length, rng)).ToArray() },
            id with { Neurons = id.Neurons.Select(n => RandomPermutation(n.Length, rng)).ToArray() },
        };
        foreach (var p in only)
        {
            using var model = RandomModel(c, 11);
            var ids = RandomIds(c.VocabSize, 1, 6, 3);
            var before = Logits(model, ids);
            Permutation.Apply(model, p);
            Assert.That(ScaledError(Logits(model, ids), before), Is.LessThanOrEqualTo(1e-5));
        }
    }

    static IEnumerable<(GptNeoXConfig, ActiveArchitecture)> SubnetsOfEveryShape()
    {
        var shapes = Shapes().ToArray();
        yield return (shapes[0], new ActiveArchitecture(16, [0, 1], [2, 2], [24, 24]));       // uniform, 2 heads × 8 = 16: HF-compatible
        yield return (shapes[0], new ActiveArchitecture(24, [1], [1], [40]));                 // uniform, 1 × 8 ≠ 24
        yield return (shapes[1], new ActiveArchitecture(16, [2, 0], [3, 1], [8, 40]));        // ordered subset, per-layer
        yield return (shapes[2], new ActiveArchitecture(12, [1, 0], [3, 1], [33, 7]));        // non-uniform parent
    }

    [Test]
    public void ExtractedModelComputesTheInPlaceSubnetwork()
    {
        ulong seed = 100;
        foreach (var (c, a) in SubnetsOfEveryShape())
        {
            using var parent = RandomModel(c, seed++);
            var ids = RandomIds(c.VocabSize, 2, 6, seed++);
            var inPlace = Logits(parent, ids, a);
            using var child = Extraction.Extract(parent, a);
            Assert.That(
                child.Parameters.Count, Is.EqualTo(ParameterCount.Of(c, a).Total),
                "the parameter count of a sub-network is the size of its dense copy");
            Assert.That(ScaledError(Logits(child, ids), inPlace), Is.LessThanOrEqualTo(1e-5));

            // Through disk: what is saved is what loads, with the right kind of config.
            var dir = Path.Combine(Path.GetTempPath(), "whittle-extract-" + Guid.NewGuid().ToString("N"));
            try
            {
                GptNeoXCheckpoint.Save(child, dir);
                var json = File.ReadAllText(Path.Combine(dir, "config.json"));
                bool hf = a.Heads.Distinct().Count() == 1 && a.Intermediate.Distinct().Count() == 1
                    && a.Heads[0] * c.HeadSize == a.EmbedDim;
                Assert.That(json.Contains("whittle_"), Is.EqualTo(!hf), json);
                using var loaded = GptNeoXCheckpoint.Load(dir, Host);
                Assert.That(ScaledError(Logits(loaded, ids), inPlace), Is.LessThanOrEqualTo(1e-5));
            }
            finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        }
    }
}
