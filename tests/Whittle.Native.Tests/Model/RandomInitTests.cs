using Whittle.Native.Cpu;
using Whittle.Native.Model;

namespace Whittle.Native.Tests.Model;

/// <summary>
/// Random initialisation runs in parallel (issue 21: a 410M model took 25 s on one thread) and must stay a function of
/// the seed alone: the same bits for any thread count, because each block of each matrix has its own generator.
/// </summary>
public class RandomInitTests
{
    // 3 layers, V·d = 70k-element embeddings and an MLP of 2·d·m = 2·(256·1024): several blocks are shared by no tensor
    static readonly GptNeoXConfig Config = new() { VocabSize = 300, HiddenSize = 256, NumLayers = 3, NumHeads = 4,
        IntermediateSize = 1024 };

    static float[] Init(ulong seed, int threads)
    {
        using var cpu = new CpuBackend();
        using var model = new GptNeoX(Config, cpu);
        using var host = GptNeoX.RandomInit(model.Parameters, Config, seed, threads);
        return host.ToFloatArray();
    }

    [Test]
    public void TheSameSeedGivesTheSameBitsForAnyThreadCount()
    {
        var one = Init(7, 1);
        Assert.That(Init(7, 4), Is.EqualTo(one));
        Assert.That(Init(7, -1), Is.EqualTo(one));
        Assert.That(Init(8, 4), Is.Not.EqualTo(one), "another seed, other weights");
    }

    [Test]
    public void EachTensorAndBlockDrawsItsOwnValues()
    {
        using var cpu = new CpuBackend();
        using var model = new GptNeoX(Config, cpu);
        var flat = GptNeoX.RandomInit(model.Parameters, Config, 7).ToFloatArray();
        float[] Of(string name) { var p = model.Parameters.Entries.Single(e => e.Name == name);
        return flat.AsSpan((int)p.Offset, (int)p.Count).ToArray(); }
        // two matrices of one shape in different layers must not repeat each other's stream
        var a = Of("gpt_neox.layers.0.attention.query_key_value.weight");
        var b = Of("gpt_neox.layers.1.attention.query_key_value.weight");
        Assert.That(a.Take(16), Is.Not.EqualTo(b.Take(16)));
        // the statistics of the GPT-2/Pythia init: std 0.02, the residual projections 0.02/sqrt(2·layers), norms 1, biases 0
        double Std(float[] x) => Math.Sqrt(x.Select(v => (double)v * v).Average());
        Assert.That(
            Std(a), Is.EqualTo(0.02).Within(0.02 * 0.02), "196k samples: the std's relative error is ~1/sqrt(2n) = 0.16%, 2% allowed");
        Assert.That(
            Std(Of("gpt_neox.layers.2.mlp.dense_4h_to_h.weight")), Is.EqualTo(0.02 / Math.Sqrt(6)).Within(0.02 / Math.Sqrt(6) * 0.02));
        Assert.That(Of("gpt_neox.layers.0.input_layernorm.weight"), Is.All.EqualTo(1f));
        Assert.That(Of("gpt_neox.layers.0.attention.query_key_value.bias"), Is.All.EqualTo(0f));
    }

    [Test]
    public void CreateRandomKeepsTheSequentialDrawForSmallModelsAndGoesParallelAboveTheLimit()
    {
        using var cpu = new CpuBackend();
        using (var small = GptNeoX.CreateRandom(Config, cpu, 7))
        using (var sequential = GptNeoX.SequentialInit(small.Parameters, Config, 7))
        {
            Assert.That(small.Parameters.Count, Is.LessThanOrEqualTo(GptNeoX.SequentialInitLimit));
            Assert.That(
                small.Parameters.Flat.ToFloatArray(), Is.EqualTo(sequential.ToFloatArray()), "the weights existing runs were made with");
        }
        // V·d alone: 66000·256 = 16.9M > 16 Mi parameters
        var large = Config with { VocabSize = 66000 };
        using var model = GptNeoX.CreateRandom(large, cpu, 7);
        Assert.That(model.Parameters.Count, Is.GreaterThan(GptNeoX.SequentialInitLimit));
        using var parallel = GptNeoX.RandomInit(model.Parameters, large, 7, 1);
        Assert.That(model.Parameters.Flat.ToFloatArray(), Is.EqualTo(parallel.ToFloatArray()));
    }
}
