using Whittle.Native.Model;
using Whittle.Native.Search;
using static Whittle.Native.Tests.Search.SearchTestModels;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// In-place sub-networks and their extracted models against PyTorch: tools/fixtures/make_subnet_reference.py computes
/// each spec's logits in float64 directly on head-structured views of the parent's weights (and checks the uniform
/// ones against an explicitly sliced Hugging Face-shaped child). Uniform, ordered-subset, heads × head size ≠ d and
/// per-layer specs, both residual modes.
/// </summary>
[TestFixture("tiny-neox")]
[TestFixture("tiny-neox-seq")]
[Category(TestBackends.GemmSensitive)]
public class SubnetReferenceTests(string fixture)
{
    [Test]
    public void InPlaceAndExtractedLogitsMatchPyTorch()
    {
        string dir = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", fixture);
        using var parent = GptNeoXCheckpoint.Load(dir, Host);
        using var expected = new SafeTensorsFile(Path.Combine(dir, "expected.safetensors"));
        using var reference = new SafeTensorsFile(Path.Combine(dir, "subnets.safetensors"));
        var tokens = expected.ReadTensor("tokens");                     // (B, T+1)
        int B = tokens.Size(0), T = tokens.Size(1) - 1;
        var all = tokens.ToIntArray();
        var ids = new int[B, T];
        for (int b = 0; b < B; b++) for (int t = 0; t < T; t++) ids[b, t] = all[b * (T + 1) + t];

        var names = reference.Tensors.Keys.Where(k => k.StartsWith("subnet.")).Order().ToList();
        Assert.That(names, Has.Count.EqualTo(5));
        foreach (var name in names)
        {
            var spec = SubnetSpec.Parse(reference.Metadata[name], parent.Config, name);
            var want = reference.ReadFloats(name);
            Assert.That(ScaledError(Logits(parent, ids, spec), want), Is.LessThanOrEqualTo(1e-5), $"in place {reference.Metadata[name]}");
            using var child = Extraction.Extract(parent, spec);
            Assert.That(ScaledError(Logits(child, ids), want), Is.LessThanOrEqualTo(1e-5), $"extracted {reference.Metadata[name]}");
            bool hfShaped = spec.Heads.Distinct().Count() == 1 && spec.Intermediate.Distinct().Count() == 1
                && spec.Heads[0] * parent.Config.HeadSize == spec.EmbedDim;
            Assert.That(child.Config.IsHuggingFaceCompatible, Is.EqualTo(hfShaped));
        }
    }
}
