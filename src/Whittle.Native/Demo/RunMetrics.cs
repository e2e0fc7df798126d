// Policy: reads what the report needs from a run's metrics.jsonl (the Trainer's log, one JSON object a line): the
// validation curve (the lines with val_loss) and the training wall-clock (the step lines: ms, elapsed_s, and kd and
// teacher_ms on the steps that consulted a teacher). The files are the demo's own, from this build or an earlier one;
// a run logged before elapsed_s existed gets no clock and no seconds on its curve (null), never made-up ones.
using System.Text.Json.Nodes;

namespace Whittle.Native.Demo;

public static class RunMetrics
{
    /// <summary>The validation points of a run, in the order logged, with the training seconds at each where logged.</summary>
    public static List<CurvePoint> Curve(string metricsPath) =>
        Lines(metricsPath).Where(o => o["val_loss"] is not null)
            .Select(o => new CurvePoint(o["step"]!.GetValue<int>(), o["tokens"]!.GetValue<long>(), o["val_loss"]!.GetValue<double>(),
                o["elapsed_s"]?.GetValue<double>()))
            .ToList();

    /// <summary>
    /// The run's training wall-clock: elapsed_s at its last step, and the median step time of the KD steps (those logging
    /// kd) and of the others; null when the run has no step lines or any of them lacks elapsed_s.
    /// </summary>
    public static RunClock? Clock(string metricsPath)
    {
        var steps = Lines(metricsPath).Where(o => o["loss"] is not null && o["ms"] is not null).ToList();
        if (steps.Count == 0 || steps.Any(o => o["elapsed_s"] is null)) return null;
        var kd = steps.Where(o => o["kd"] is not null).ToList();
        var plain = steps.Where(o => o["kd"] is null).ToList();
        static double Ms(JsonNode o) => o["ms"]!.GetValue<double>();
        double last = steps.MaxBy(o => o["step"]!.GetValue<int>())!["elapsed_s"]!.GetValue<double>();
        double teacher = steps.Sum(o => o["teacher_ms"]?.GetValue<double>() ?? 0) / 1000;
        return new RunClock(last, kd.Count, DemoAnalysis.Median(kd.Select(Ms)), DemoAnalysis.Median(plain.Select(Ms)), teacher);
    }

    static IEnumerable<JsonNode> Lines(string path) =>
        File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Select(l => JsonNode.Parse(l)!);
}
