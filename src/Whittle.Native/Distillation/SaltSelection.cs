using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Evaluation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;

namespace Whittle.Native.Distillation;

/// <summary>One training window's SALT_DS score: the median loss over its kept tokens.</summary>
public sealed record WindowScore(long Window, double Score, int KeptTokens);

/// <summary>
/// SALT_DS data selection: which training windows the KD phase should use, scored by a small model.
/// Definitions (the policy of this file):
///  - windows: the training split cut into consecutive non-overlapping windows of T + 1 tokens, window i =
///    tokens [i (T+1), (i+1)(T+1)) (<see cref="WindowStart"/>); a trailing remainder is dropped. Position t of a window
///    predicts token t + 1 from tokens 0..t, so each window has T predictions.
///  - per token: ℓ_t = −log p_small(x_{t+1} | x_≤t) = logsumexp(row) − row[target], in double.
///  - kept: the true next token is in the small model's top-k, i.e. fewer than k ids have a logit strictly greater than
///    the target's (ties count in the target's favour, so equal logits never push it out).
///  - score: the median of the kept losses; with an even count the mean of the two middle values. A window with no kept
///    token has no score and is dropped.
///  - selection: the ⌈f · S⌉ highest-scoring windows, S = windows with a score (at least one when S &gt; 0); equal scores
///    go to the lower window index. The result lists them by window index.
/// </summary>
public static class SaltSelection
{
    public const string Format = "whittle-salt-selection";
    public const int Version = 1;

    public static long WindowStart(long window, int seqLen) => window * (seqLen + 1);

    /// <summary>ℓ for one prediction from its logits row, and whether the target is in the row's top-k (ties favour the target).</summary>
    public static (double Loss, bool InTopK) Token(ReadOnlySpan<float> row, int target, int k)
    {
        if ((uint)target >= (uint)row.Length)
            throw new ArgumentOutOfRangeException(nameof(target), $"target {target} is outside the vocabulary [0, {row.Length})");
        double max = double.NegativeInfinity;
        foreach (var x in row) max = Math.Max(max, x);
        double z = 0; int above = 0; float t = row[target];
        foreach (var x in row) { z += Math.Exp(x - max); if (x > t) above++; }
        return (max + Math.Log(z) - t, above < k);
    }

    /// <summary>Median of the kept losses (mean of the middle two for an even count); null when none is kept.</summary>
    public static double? Median(IEnumerable<double> keptLosses)
    {
        var a = keptLosses.ToArray();
        if (a.Length == 0) return null;
        Array.Sort(a);
        int m = a.Length / 2;
        return a.Length % 2 == 1 ? a[m] : 0.5 * (a[m - 1] + a[m]);
    }

    /// <summary>Scores one window from its logits (T, V) row-major and its T targets.</summary>
    public static WindowScore? ScoreWindow(long window, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab, int k)
    {
        if (logits.Length != targets.Length * vocab)
            throw new ArgumentException($"logits hold {logits.Length} values for {targets.Length} targets of vocabulary {vocab}");
        var kept = new List<double>();
        for (int t = 0; t < targets.Length; t++)
        {
            var (loss, inTopK) = Token(logits.Slice(t * vocab, vocab), targets[t], k);
            if (inTopK) kept.Add(loss);
        }
        return Median(kept) is { } score ? new WindowScore(window, score, kept.Count) : null;
    }

    /// <summary>The ⌈keep · scored⌉ best windows (score descending, lower index first on ties), returned by window index.</summary>
    public static IReadOnlyList<WindowScore> Select(IEnumerable<WindowScore> scored, double keep)
    {
        CheckKeep(keep);
        var all = scored.ToList();
        if (all.Count == 0) return [];
        int count = Math.Clamp((int)Math.Ceiling(keep * all.Count - 1e-9), 1, all.Count);   // 1e-9: 0.3 · 10 must not become 4
        return all.OrderByDescending(w => w.Score).ThenBy(w => w.Window).Take(count).OrderBy(w => w.Window).ToList();
    }

    public static void CheckKeep(double keep)
    {
        if (!(keep > 0 && keep <= 1)) throw new WhittleException($"--keep must be a fraction in (0, 1], got {keep}");
    }

    public static void CheckTopK(int k, int vocab)
    {
        if (k <= 0 || k > vocab) throw new WhittleException($"--top-k must be in [1, {vocab}] (the model's vocabulary), got {k}");
    }

    /// <summary>The dataset hash a selection records: SHA-256 of the first <paramref name="windows"/> (T+1)-token windows' ids (int32,
    /// little-endian).</summary>
    public static string DatasetHash(ITokenSource tokens, int seqLen, long windows)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var window = new int[seqLen + 1];
        for (long w = 0; w < windows; w++)
        {
            tokens.Read(WindowStart(w, seqLen), window);
            hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(window.AsSpan()));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>
    /// Scores every window of <paramref name="tokens"/> (at most maxWindows) with the small model (of any family), B windows per forward
    /// in no-grad mode, logits read to the host 64 rows at a time. progress(windows done, total).
    /// </summary>
    public static SaltResult Run(LanguageModel small, ITokenSource tokens, int seqLen, int k, double keep, long maxWindows = long.MaxValue,
        int batchSize = 4, Action<long, long>? progress = null)
    {
        int vocab = small.Config.VocabSize;
        CheckTopK(k, vocab); CheckKeep(keep);
        if (seqLen < 1) throw new WhittleException($"--seq-len must be at least 1, got {seqLen}");
        if (batchSize < 1) throw new WhittleException($"batch size must be at least 1, got {batchSize}");
        if (maxWindows < 1) throw new WhittleException($"--max-sequences must be at least 1, got {maxWindows}");
        long windows = Math.Min(tokens.Length / (seqLen + 1), maxWindows);
        if (windows == 0)
            throw new WhittleException($"the training split has {tokens.Length} tokens, fewer than one window of {seqLen} + 1");
        var backend = small.Backend;
        var sw = Stopwatch.StartNew();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var scores = new List<WindowScore>();
        var window = new int[seqLen + 1];
        const int RowChunk = 64;
        for (long w0 = 0; w0 < windows; w0 += batchSize)
        {
            int b = (int)Math.Min(batchSize, windows - w0);
            var inputs = new int[b * seqLen]; var targets = new int[b * seqLen];
            for (int i = 0; i < b; i++)
            {
                tokens.Read(WindowStart(w0 + i, seqLen), window);
                hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(window.AsSpan()));
                foreach (var id in window)
                    if ((uint)id >= (uint)vocab)
                        throw new WhittleException($"token id {id} in window {w0 + i} is outside the model's vocabulary of {vocab}");
                window.AsSpan(0, seqLen).CopyTo(inputs.AsSpan(i * seqLen));
                window.AsSpan(1).CopyTo(targets.AsSpan(i * seqLen));
            }
            using var hIn = Tensor.FromArray(inputs, b, seqLen);
            using var dIn = backend.FromHost(hIn);
            using var tape = new Tape(backend, recording: false);
            var logits = small.Forward(tape, dIn).Data;      // (b·T, V)
            var host = new float[b * seqLen * (long)vocab];
            for (int r0 = 0; r0 < b * seqLen; r0 += RowChunk)
            {
                int rows = Math.Min(RowChunk, b * seqLen - r0);
                logits.Narrow(0, r0, rows).ToFloatArray().CopyTo(host.AsSpan(r0 * vocab, rows * vocab));
            }
            for (int i = 0; i < b; i++)
                if (ScoreWindow(
                    w0 + i, host.AsSpan(i * seqLen * vocab, seqLen * vocab), targets.AsSpan(i * seqLen, seqLen), vocab, k) is { } s)
                    scores.Add(s);
            progress?.Invoke(w0 + b, windows);
        }
        return new SaltResult(
            Convert.ToHexStringLower(hash.GetHashAndReset()), seqLen, k, keep, windows, scores.Count, Select(scores, keep),
            sw.Elapsed.TotalSeconds);
    }
}

/// <summary>
/// A SALT_DS selection as written to disk (JSON): the hash of the token windows scored (SHA-256 of their ids as
/// little-endian int32, in window order), the settings, and the selected windows with their scores.
/// </summary>
public sealed record SaltResult(
    string DatasetSha256, int SeqLen, int TopK, double Keep, long Windows, int Scored, IReadOnlyList<WindowScore> Selected, double Seconds)
{
    public JsonObject ToJson(string? model = null, string? dataset = null) => new()
    {
        ["format"] = SaltSelection.Format,
        ["version"] = SaltSelection.Version,
        ["model"] = model,
        ["dataset"] = dataset,
        ["dataset_sha256"] = DatasetSha256,
        ["seq_len"] = SeqLen,
        ["top_k"] = TopK,
        ["keep"] = Keep,
        ["windows"] = Windows,
        ["scored"] = Scored,
        ["selected_count"] = Selected.Count,
        ["seconds"] = Math.Round(Seconds, 3),
        ["selected"] = new JsonArray(
            Selected.Select(
            w => (JsonNode)new JsonObject { ["window"] = w.Window, ["score"] = w.Score, ["kept_tokens"] = w.KeptTokens }).ToArray()),
    };

    public void Save(string path, string? model = null, string? dataset = null) =>
        AtomicFile.WriteAllText(path, ToJson(model, dataset).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    public static SaltResult Load(string path)
    {
        if (!File.Exists(path)) throw new WhittleException($"{path}: no such selection file (create one with `whittle salt-select`)");
        var o = JsonField.Load(path).RequireObject();
        if (o["format"].StringOrNull() != SaltSelection.Format)
            throw new InvalidFileException(path, $"not a SALT selection (format is not \"{SaltSelection.Format}\")");
        if (o["version"].Int() is var v && v != SaltSelection.Version)
            throw new InvalidFileException(path, $"selection version {v}; this build reads version {SaltSelection.Version}");
        var selected = o["selected"].Items().Select(
            e => new WindowScore(e["window"].Long(0), e["score"].Double(), e["kept_tokens"].Int(0))).ToList();
        return new SaltResult(
            o["dataset_sha256"].String(), o["seq_len"].Int(1), o["top_k"].Int(0), o["keep"].Double(), o["windows"].Long(0),
            o["scored"].Int(0),
            selected, o["seconds"].DoubleOr(0));
    }
}
