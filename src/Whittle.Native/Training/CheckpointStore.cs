using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Training;

/// <summary>
/// Everything besides the weights that a run needs to continue exactly where it stopped. ElapsedSeconds is the run's
/// training wall-clock up to Step (the steps' own times; see <see cref="StepRecord"/>), so a resumed run's clock goes on
/// from it instead of from 0.
/// </summary>
public sealed record TrainingState(int Step, long TokensSeen, long DataCursor, ulong Seed, double ElapsedSeconds, long SelectedCursor = 0)
{
    public JsonObject ToJson() => new()
    {
        ["version"] = 1, ["step"] = Step, ["tokens_seen"] = TokensSeen, ["data_cursor"] = DataCursor, ["selected_cursor"] = SelectedCursor,
        ["seed"] = Seed.ToString(), ["elapsed_seconds"] = ElapsedSeconds,
    };

    public static TrainingState FromJson(JsonNode o, string path) => FromJson(JsonField.FromNode(o, path));

    /// <summary>Every count is non-negative (a negative step or cursor would index before the data); each field is type-checked.</summary>
    public static TrainingState FromJson(JsonField o)
    {
        o.RequireObject();
        return new TrainingState(o["step"].Int(0), o["tokens_seen"].Long(0), o["data_cursor"].Long(0), o["seed"].ULongString(),
            o["elapsed_seconds"].Double() is var s and >= 0 ? s : throw o["elapsed_seconds"].Error("must be >= 0"),
                o["selected_cursor"].LongOr(0, 0));
    }

    public static TrainingState Load(string path) => FromJson(JsonField.Load(path));
}

/// <summary>
/// The checkpoints of one run: <c>RUN/checkpoints/step-0000100/</c>, each a Hugging Face model directory
/// (config.json + model.safetensors, plus the tokenizer when known) with the optimizer moments
/// (<c>optimizer.safetensors</c>: m, v) and <c>trainer_state.json</c>. Each is written whole under a temporary name and
/// renamed into place (<see cref="AtomicDirectory"/>), so killing the process at any moment, during a save too, leaves
/// the previous checkpoint loadable. The newest <see cref="Keep"/> are kept; pinned ones (milestones such as SALT's
/// switch step) are never pruned.
/// </summary>
public sealed class CheckpointStore(string runDir, int keep = 2, string? tokenizerFile = null)
{
    public const string StateFile = "trainer_state.json";
    public const string OptimizerFile = "optimizer.safetensors";
    const string PinnedMarker = "pinned";

    public string Directory { get; } = Path.Combine(runDir, "checkpoints");
    public int Keep { get; } = Math.Max(1, keep);

    public static string NameOf(int step) => $"step-{step:D7}";

    /// <summary>Complete checkpoints, oldest first (a directory counts once its state file is in it: the rename makes that
    /// all-or-nothing).</summary>
    public IReadOnlyList<(int Step, string Path)> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return System.IO.Directory.EnumerateDirectories(Directory, "step-*")
            .Select(d => (Dir: d, Ok: int.TryParse(Path.GetFileName(d)["step-".Length..], out int s), Step: s))
            .Where(x => x.Ok && File.Exists(Path.Combine(x.Dir, StateFile)))
            .OrderBy(x => x.Step).Select(x => (x.Step, x.Dir)).ToList();
    }

    public (int Step, string Path)? Latest() => List() is { Count: > 0 } l ? l[^1] : null;

    public string Save(LanguageModel model, AdamWOptimizer optimizer, TrainingState state, bool pin = false)
    {
        string dir = Path.Combine(Directory, NameOf(state.Step));
        var extra = tokenizerFile is not null && File.Exists(tokenizerFile) ? new[] { tokenizerFile } : [];
        ModelCheckpoint.SaveWith(model, dir, extraFiles: extra, alsoWrite: tmp =>
        {
            SafeTensorsWriter.Write(Path.Combine(tmp, OptimizerFile), [("m", optimizer.M), ("v", optimizer.V)],
                new Dictionary<string, string> { ["step"] = optimizer.Step.ToString() });
            if (pin) File.WriteAllText(Path.Combine(tmp, PinnedMarker), "kept: a milestone of this run\n");
            FaultInjection.MaybeCrash("checkpoint-save");
            AtomicFile.WriteAllText(
                Path.Combine(tmp, StateFile), state.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        });
        Prune();
        return dir;
    }

    /// <summary>Loads weights, optimizer moments and state from a checkpoint into an existing model/optimizer of the same shape.</summary>
    public static TrainingState Restore(string dir, LanguageModel model, AdamWOptimizer optimizer)
    {
        // The state first: a malformed trainer_state.json is reported before any weights are read.
        var state = TrainingState.Load(Path.Combine(dir, StateFile));
        ModelCheckpoint.LoadInto(dir, model);
        using var opt = new SafeTensorsFile(Path.Combine(dir, OptimizerFile));
        foreach (var (name, dst) in new[] { ("m", optimizer.M), ("v", optimizer.V) })
        {
            using var host = opt.ReadTensor(name);
            if (host.Count != dst.Count)
                throw new InvalidFileException(opt.Path, $"has {host.Count} elements, the model {dst.Count}", name);
            using var dev = optimizer.Parameters.Backend.FromHost(host.Reshape((int)host.Count));
            optimizer.Parameters.Backend.Copy(dev, dst);
        }
        optimizer.Step = state.Step;
        return state;
    }

    void Prune()
    {
        var all = List();
        var unpinned = all.Where(c => !File.Exists(Path.Combine(c.Path, PinnedMarker))).ToList();
        foreach (var (_, path) in unpinned.Take(Math.Max(0, unpinned.Count - Keep)))
            System.IO.Directory.Delete(path, recursive: true);
    }
}

/// <summary>
/// Deterministic crash points for the crash-safety tests: WHITTLE_FAULT=point:n makes the process exit at once
/// (exit code 86, no cleanup) the n-th time it reaches that point — the same as a kill at that moment.
/// </summary>
public static class FaultInjection
{
    static readonly Dictionary<string, int> Hits = new();

    public static void MaybeCrash(string point)
    {
        if (Environment.GetEnvironmentVariable("WHITTLE_FAULT") is not { } spec) return;
        var parts = spec.Split(':');
        if (parts[0] != point) return;
        int hits = Hits[point] = Hits.GetValueOrDefault(point) + 1;
        if (parts.Length < 2 || (int.TryParse(parts[1], out int n) && n == hits)) Environment.Exit(86);
    }
}
