using Whittle.Native.Model;
using Whittle.Native.Search;

namespace Whittle.Native.Tests.Search;

/// <summary>
/// The latency cache with an injected measuring function that counts its calls (nothing is timed): a sub-network is
/// measured once per device and batch × sequence, the second request is served from the cache, and the cache file
/// carries over to a new instance (a resumed search). The median and the warm-up / timed-run counts of the probe.
/// </summary>
public class LatencyTests
{
    string _dir = "";

    [SetUp] public void SetUp() { _dir = Path.Combine(Path.GetTempPath(), "whittle-latency-" + Guid.NewGuid().ToString("N"));
    Directory.CreateDirectory(_dir); }
    [TearDown] public void TearDown() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static readonly ActiveArchitecture A = new(16, [0, 1], [2, 2], [24, 24]);
    static readonly ActiveArchitecture B = new(16, [0], [2], [24]);

    [Test]
    public void TheSecondRequestIsServedFromTheCacheNotMeasuredAgain()
    {
        var measured = new List<string>();
        double Measure(ActiveArchitecture a) { measured.Add(SubnetSpec.Key(a)); return 10 + a.Layers.Length; }
        string file = Path.Combine(_dir, "latency-cache.json");
        var cpu = new LatencyCache(file, new LatencyShape("cpu", 8, 32), Measure);

        Assert.That(cpu.Milliseconds(A), Is.EqualTo(12));
        Assert.That(cpu.Milliseconds(new ActiveArchitecture(16, [0, 1], [2, 2], [24, 24])), Is.EqualTo(12), "an equal architecture");
        Assert.That(cpu.Milliseconds(B), Is.EqualTo(11));
        Assert.That(measured, Is.EqualTo(new[] { SubnetSpec.Key(A), SubnetSpec.Key(B) }));
        Assert.That((cpu.Measured, cpu.Hits), Is.EqualTo((2, 1)));

        // Another shape or device is another measurement; the cache file serves a new instance (a resume) without any.
        var longer = new LatencyCache(file, new LatencyShape("cpu", 8, 64), Measure);
        longer.Milliseconds(A);
        Assert.That(measured, Has.Count.EqualTo(3));
        var cuda = new LatencyCache(file, new LatencyShape("cuda", 8, 32), Measure);
        cuda.Milliseconds(A);
        Assert.That(measured, Has.Count.EqualTo(4));
        var resumed = new LatencyCache(file, new LatencyShape("cpu", 8, 32), _ => throw new AssertionException("measured again"));
        Assert.That((resumed.Milliseconds(A), resumed.Milliseconds(B)), Is.EqualTo((12.0, 11.0)));
        Assert.That(cpu.KeyOf(A), Does.StartWith(SubnetSpec.Key(A)).And.EndWith("|cpu|8x32"));
    }

    [Test]
    public void ACorruptCacheFileIsAUserErrorNamingIt()
    {
        string file = Path.Combine(_dir, "latency-cache.json");
        File.WriteAllText(file, """{"entries": [{"key": "x", "ms": -1}]}""");
        var e = Assert.Throws<InvalidFileException>(() => new LatencyCache(file, new LatencyShape("cpu", 1, 2), _ => 1))!;
        Assert.That(e.Message, Does.Contain(file));
        var bad = new LatencyCache(null, new LatencyShape("cpu", 1, 2), _ => double.NaN);
        Assert.Throws<InvalidOperationException>(() => bad.Milliseconds(A));
    }

    [Test]
    public void MedianOfTimedRunsAfterWarmUp()
    {
        Assert.That(LatencyProbe.Median([3, 1, 2]), Is.EqualTo(2));
        Assert.That(LatencyProbe.Median([4, 1, 3, 2]), Is.EqualTo(2.5));
        int calls = 0;
        double ms = LatencyProbe.MedianMs(() => calls++, warmup: 3, runs: 5);
        Assert.That(calls, Is.EqualTo(8));
        Assert.That(ms, Is.GreaterThanOrEqualTo(0));
        Assert.Throws<WhittleException>(() => LatencyProbe.MedianMs(() => { }, warmup: 0, runs: 0));
    }

    [Test]
    public void TheProbeRunsAValidSubNetworkAndRefusesAnInvalidOne()
    {
        // A smoke test only (what it times is not asserted: no timed tests); an embed_dim beyond the parent's fails in
        // Extraction's validation before anything runs.
        var c = new GptNeoXConfig { VocabSize = 20, HiddenSize = 16, NumLayers = 2, NumHeads = 2, IntermediateSize = 24,
            MaxPositionEmbeddings = 16 };
        using var parent = SearchTestModels.RandomModel(c, 1);
        Assert.That(LatencyProbe.ExtractedForwardMs(parent, A, 2, 8, 1, 3), Is.GreaterThanOrEqualTo(0));
        var tooWide = new ActiveArchitecture(32, [0], [2], [24]);
        Assert.Throws<WhittleException>(() => LatencyProbe.ExtractedForwardMs(parent, tooWide, 2, 8, 1, 1));
    }
}
