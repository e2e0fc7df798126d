// Policy: a sub-network's latency is measured on the EXTRACTED dense model (Extraction.Extract), not the sliced parent
// (slicing reads strided prefix views, which a deployed model never does), on the search's device, with a fixed batch
// × sequence of token ids: warm-up forward passes (kernel compilation, allocator), then the median of k timed passes,
// each ended by a device synchronisation. Measurements are cached per architecture: the key is the sub-network's
// canonical spec key (SubnetSpec.Key) + device + batch × sequence, so the same sub-network on the same shape is measured
// once per run directory (the cache is a JSON file rewritten atomically after each new measurement, so a resume reuses
// it). What measures is a function passed in, so tests count calls instead of timing anything.
using System.Diagnostics;
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Search;

/// <summary>Where a latency is measured: device name and the forward pass's batch × sequence.</summary>
public sealed record LatencyShape(string Device, int Batch, int SeqLen)
{
    public string Describe => $"{Device}, batch {Batch} × seq {SeqLen}";
}

public sealed class LatencyCache
{
    readonly Dictionary<string, double> _ms = new();
    readonly string? _path;
    readonly Func<ActiveArchitecture, double> _measureMs;

    /// <param name="path">The cache file (read if present, rewritten after each measurement), or null for memory only.</param>
    /// <param name="measureMs">Measures one sub-network in milliseconds at <paramref name="shape"/>.</param>
    public LatencyCache(string? path, LatencyShape shape, Func<ActiveArchitecture, double> measureMs)
    {
        _path = path; Shape = shape; _measureMs = measureMs;
        if (path is null || !File.Exists(path)) return;
        InputFile.RequireRegular(path);
        try
        {
            foreach (var e in JsonNode.Parse(File.ReadAllText(path))!["entries"]!.AsArray())
            {
                double ms = e!["ms"]!.GetValue<double>();
                if (!double.IsFinite(ms) || ms < 0) throw new FormatException($"latency {ms} ms");
                _ms[e["key"]!.GetValue<string>()] = ms;
            }
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or InvalidOperationException or NullReferenceException
                                       or FormatException)
        {
            throw new InvalidFileException(path, $"not a latency cache ({ex.Message}); delete it to measure again");
        }
    }

    public LatencyShape Shape { get; }
    /// <summary>Sub-networks measured by this instance (cache misses).</summary>
    public int Measured { get; private set; }
    /// <summary>Requests answered from the cache.</summary>
    public int Hits { get; private set; }

    public string KeyOf(ActiveArchitecture a) => $"{SubnetSpec.Key(a)}|{Shape.Device}|{Shape.Batch}x{Shape.SeqLen}";

    /// <summary>The sub-network's latency in milliseconds: cached, or measured now and cached.</summary>
    public double Milliseconds(ActiveArchitecture a)
    {
        string key = KeyOf(a);
        if (_ms.TryGetValue(key, out double ms)) { Hits++; return ms; }
        ms = _measureMs(a);
        if (!double.IsFinite(ms) || ms < 0) throw new InvalidOperationException($"a latency measurement returned {ms} ms");
        _ms[key] = ms;
        Measured++;
        if (_path is not null)
            SearchLog.WriteJson(_path, new JsonObject
            {
                ["entries"] = new JsonArray(_ms.Select(kv => (JsonNode)new JsonObject { ["key"] = kv.Key, ["ms"] = kv.Value }).ToArray()),
            });
        return ms;
    }
}

public static class LatencyProbe
{
    /// <summary>The median of <paramref name="runs"/> timed calls after <paramref name="warmup"/> untimed ones, in milliseconds.</summary>
    public static double MedianMs(Action run, int warmup, int runs)
    {
        if (warmup < 0 || runs < 1) throw new WhittleException($"latency needs warm-up ≥ 0 and runs ≥ 1, got {warmup} and {runs}");
        for (int i = 0; i < warmup; i++) run();
        var ms = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            run();
            ms[i] = sw.Elapsed.TotalMilliseconds;
        }
        return Median(ms);
    }

    /// <summary>The middle value; the mean of the two middle values for an even count.</summary>
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("the median of no values");
        var s = values.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>
    /// Extracts the sub-network into a dense model on the parent's backend and times its no-grad forward pass (logits)
    /// over fixed pseudo-random ids (batch × seq), each pass ended by a device synchronisation.
    /// </summary>
    public static double ExtractedForwardMs(LanguageModel parent, ActiveArchitecture a, int batch, int seqLen, int warmup, int runs)
    {
        using var child = Extraction.Extract(parent, a);
        var rng = new Rng(0x1a7e);
        var ids = new int[batch * seqLen];
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.NextInt(child.Config.VocabSize);
        using var host = Tensor.FromArray(ids, batch, seqLen);
        using var device = child.Backend.FromHost(host);
        return MedianMs(() =>
        {
            using var tape = new Tape(child.Backend, recording: false);
            child.Forward(tape, device);
            child.Backend.Synchronize();
        }, warmup, runs);
    }
}
