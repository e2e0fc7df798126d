// Policy: every evaluated candidate is appended to history.jsonl as soon as it is known (one JSON object per line,
// flushed), so an interrupted search loses at most the candidate in flight; --resume reads the file back and answers
// those candidates from it instead of evaluating them again. A candidate is evaluated at most once per output directory,
// whichever strategy asks first. A truncated last line (a crash mid-write) is ignored; any other bad line is an error.
using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Model;

namespace Whittle.Native.Search;

public sealed record HistoryEntry(
    string Strategy, string Key, JsonObject Spec, ParameterCount Parameters, FlopCount Flops, double Loss, double Seconds,
    LatencyRecord? Latency = null)
{
    public double Perplexity => Math.Exp(Loss);

    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["strategy"] = Strategy,
            ["spec"] = JsonNode.Parse(Spec.ToJsonString()),
            ["params"] = new JsonObject { ["embedding"] = Parameters.Embedding, ["non_embedding"] = Parameters.NonEmbedding,
                ["total"] = Parameters.Total },
            ["flops_per_token"] = new JsonObject { ["embedding"] = Flops.Embedding, ["non_embedding"] = Flops.NonEmbedding,
                ["total"] = Flops.Total },
            ["loss"] = Loss,
            ["perplexity"] = Perplexity,
            ["seconds"] = Seconds,
        };
        if (Latency is { } l)
            o["latency"] = new JsonObject
            {
                ["ms"] = l.Ms, ["device"] = l.Shape.Device, ["batch"] = l.Shape.Batch, ["seq_len"] = l.Shape.SeqLen,
            };
        return o;
    }
}

/// <summary>A measured latency and where it was measured (Latency.cs).</summary>
public sealed record LatencyRecord(double Ms, LatencyShape Shape);

public sealed class SearchLog
{
    readonly Dictionary<string, HistoryEntry> _byKey = new();
    readonly List<HistoryEntry> _entries = new();
    readonly string _path;

    public SearchLog(string path, bool resume)
    {
        _path = path;
        if (!File.Exists(path)) return;
        if (!resume) throw new WhittleException($"{path} already exists; pass --resume to continue that search or choose another --out");
        var lines = File.ReadAllLines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            try
            {
                var o = JsonNode.Parse(lines[i])!.AsObject();
                var spec = o["spec"]!.AsObject();
                var p = o["params"]!.AsObject(); var f = o["flops_per_token"]!.AsObject();
                var e = new HistoryEntry(o["strategy"]!.GetValue<string>(), spec.ToJsonString(), spec,
                    new ParameterCount(p["embedding"]!.GetValue<long>(), p["non_embedding"]!.GetValue<long>()),
                    new FlopCount(f["embedding"]!.GetValue<long>(), f["non_embedding"]!.GetValue<long>()),
                    o["loss"]!.GetValue<double>(), o["seconds"]!.GetValue<double>(),
                    o["latency"] is JsonObject l ? new LatencyRecord(l["ms"]!.GetValue<double>(), new LatencyShape(
                        l["device"]!.GetValue<string>(), l["batch"]!.GetValue<int>(), l["seq_len"]!.GetValue<int>())) : null);
                _byKey.TryAdd(e.Key, e);
                _entries.Add(e);
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or NullReferenceException or FormatException)
            {
                if (i == lines.Length - 1) break;   // the line a crash cut short
                throw new InvalidFileException(path, $"line {i + 1} is not a history entry ({ex.Message})");
            }
        }
    }

    public IReadOnlyList<HistoryEntry> Entries => _entries;
    public int Resumed { get; private set; }
    public int Evaluated { get; private set; }
    public double EvaluationSeconds { get; private set; }

    /// <summary>
    /// The fitness function strategies see: the cached loss, or evaluate, record and append. With a latency cache the
    /// new entry also records the candidate's latency (history.jsonl then holds every objective of it).
    /// </summary>
    public double Fitness(
        ActiveArchitecture a, string strategy, ModelConfig parent, int context, Func<ActiveArchitecture, double> evaluateLoss,
        Action<HistoryEntry, bool>? report = null, LatencyCache? latency = null)
    {
        string key = SubnetSpec.Key(a);
        if (_byKey.TryGetValue(key, out var known)) { Resumed++; report?.Invoke(known, true); return known.Loss; }
        var sw = System.Diagnostics.Stopwatch.StartNew();
        double loss = evaluateLoss(a);
        double seconds = sw.Elapsed.TotalSeconds;
        var cost = SubnetCosts.Of(parent, a, context);
        var measured = latency is null ? null : new LatencyRecord(latency.Milliseconds(a), latency.Shape);
        var e = new HistoryEntry(strategy, key, SubnetSpec.ToJson(a), cost.Parameters, cost.Flops, loss, seconds, measured);
        _byKey[key] = e;
        _entries.Add(e);
        Evaluated++;
        EvaluationSeconds += seconds;
        File.AppendAllText(_path, e.ToJson().ToJsonString() + "\n");
        report?.Invoke(e, false);
        return loss;
    }

    public HistoryEntry Get(string key) => _byKey[key];

    public static void WriteJson(string path, JsonNode node) =>
        AtomicFile.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
