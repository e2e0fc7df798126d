using System.Diagnostics;
using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Distillation;

/// <summary>
/// Training losses with a teacher, for the shared <see cref="Trainer"/>. The teacher runs in no-grad mode on the same
/// batch (nothing recorded, its activations freed layer by layer, its logits freed as soon as the fused loss has
/// produced the student's gradient). <paramref name="weightsAt"/> gives (α, β) per step, or null for a step that is
/// plain cross-entropy (then the teacher is not run at all): the same function serves distillation (constant weights)
/// and SALT (weights that decay and stop after n_KD steps). Each loss reports the wall-clock of the teacher's part (its
/// forward pass and top-k summary, or the cache read): the backend is synchronised before the clock is read, so on CUDA
/// the queued kernels are counted rather than their launches, at the cost of one host wait per measurement.
/// </summary>
public static class DistillationLoss
{
    public static LossFunction Create(
        LanguageModel student, LanguageModel teacher, DistillSettings settings, int topK, Func<int, (float Alpha, float Beta)?> weightsAt)
    {
        if (student.Config.VocabSize != teacher.Config.VocabSize)
            throw new WhittleException($"teacher and student vocabularies differ ({teacher.Config.VocabSize} vs " +
                $"{student.Config.VocabSize}): they must share the tokenizer");
        if (topK < 0 || topK > student.Config.VocabSize)
            throw new WhittleException($"--top-k must be in [1, {student.Config.VocabSize}], got {topK}");
        settings.Validate();
        return (tape, inputs, targets, step) =>
        {
            if (weightsAt(step) is not { } w)
                return (student.Loss(tape, inputs, targets), new Dictionary<string, double>(), null);
            var s = settings with { Alpha = w.Alpha, Beta = w.Beta };
            if (student.ChunksLoss((int)targets.Count)) return Chunked(tape, student, teacher, inputs, targets, s, topK);
            var logits = student.Forward(tape, inputs);
            long start = Stopwatch.GetTimestamp();
            using var teacherTape = new Tape(teacher.Backend, recording: false);
            var t = teacher.Forward(teacherTape, inputs);
            if (topK > 0)
            {
                var summary = TeacherTopK.FromLogits(t.Data, topK, settings.Temperature);   // read to the host: synchronous
                var (l, p) = TopK(tape, student, logits, summary, targets, s);
                return (l, p, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            double seconds = TeacherSeconds(teacher.Backend, start);
            var loss = tape.Distillation(logits, DistillTeacher.Full(t.Data), targets, s, out var parts);
            tape.Release(logits);
            return (loss, Parts(parts), seconds);
        };
    }

    /// <summary>Seconds since <paramref name="start"/> once the backend has finished the work queued so far.</summary>
    static double TeacherSeconds(IBackend backend, long start)
    {
        backend.Synchronize();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>
    /// Distillation from a teacher-logit cache (`whittle cache-teacher`) instead of a live teacher: the same top-k loss,
    /// with the summary read from the micro-batch's file. The trainer calls the loss for micro-batches 0..accum−1 of each
    /// step in order, so step s, micro-batch i reads file (s−1)·accum + i, also after a resume. A file whose token hash
    /// differs from the batch being trained on is refused (TeacherCache.Read names the file and both hashes).
    /// <paramref name="weightsAt"/> (SALT) gives (α, β) per step or null for a plain cross-entropy step, which reads no
    /// file; without it every step uses the settings' α and β (distill).
    /// </summary>
    public static LossFunction FromCache(GptNeoX student, string cacheDir, TeacherCacheManifest cache, DistillSettings settings,
        int gradAccum, Func<int, (float Alpha, float Beta)?>? weightsAt = null)
    {
        if (student.Config.VocabSize != cache.Vocab)
            throw new WhittleException($"{cacheDir}: the cache is for a vocabulary of {cache.Vocab}, the student has " +
                $"{student.Config.VocabSize}");
        settings.Validate();
        int lastStep = -1, micro = 0;
        return (tape, inputs, targets, step) =>
        {
            micro = step == lastStep ? micro + 1 : 0;
            lastStep = step;
            var weights = weightsAt is null ? (settings.Alpha, settings.Beta) : weightsAt(step);
            if (weights is not { } w) return (student.Loss(tape, inputs, targets), new Dictionary<string, double>(), null);
            var s = settings with { Alpha = w.Alpha, Beta = w.Beta };
            long index = (long)(step - 1) * gradAccum + micro;
            long start = Stopwatch.GetTimestamp();
            var tokens = TeacherCache.BatchTokens(inputs.ToIntArray(), targets.ToIntArray());
            var summary = TeacherCache.Read(cacheDir, index, tokens, settings.Temperature, cache.Vocab);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (summary.Ids.Size(1) != cache.TopK)
            {
                summary.LogProbs.Dispose(); summary.Ids.Dispose(); summary.Tail.Dispose();
                throw new InvalidFileException(
                    TeacherCache.BatchPath(cacheDir, index), $"top-{summary.Ids.Size(1)} rows, but the manifest says top-{cache.TopK}");
            }
            if (!student.ChunksLoss((int)targets.Count))
            {
                var (l, p) = TopK(tape, student, student.Forward(tape, inputs), summary, targets, s);
                return (l, p, seconds);
            }
            var (lp, ids, tail) = summary;
            using (lp) using (ids) using (tail)
            {
                var loss = student.ChunkedDistillationLoss(tape, student.ForwardHidden(tape, inputs), (r0, rows, use) =>
                {
                    using var dlp = student.Backend.FromHost(lp.Narrow(0, r0, rows));
                    using var dids = student.Backend.FromHost(ids.Narrow(0, r0, rows));
                    using var dtail = student.Backend.FromHost(tail.Narrow(0, r0, rows));
                    use(DistillTeacher.TopK(dlp, dids, dtail));
                }, targets, s, out var parts);
                return (loss, Parts(parts), seconds);
            }
        };
    }

    /// <summary>
    /// The chunked form (<see cref="GptNeoX.LossChunkRows"/>): the teacher's final hidden state is computed whole (N, d_T),
    /// its logits one chunk of rows at a time, right before the student's chunk, so neither model's (N, V) logits exist.
    /// </summary>
    static (Var, IReadOnlyDictionary<string, double>, double?) Chunked(Tape tape, LanguageModel student, LanguageModel teacher,
        Tensor inputs, Tensor targets, DistillSettings s, int topK)
    {
        var final = student.ForwardHidden(tape, inputs);
        long start = Stopwatch.GetTimestamp();
        using var teacherTape = new Tape(teacher.Backend, recording: false);
        var teacherFinal = teacher.ForwardHidden(teacherTape, inputs).Data;                    // (N, d_T)
        double seconds = TeacherSeconds(teacher.Backend, start);
        int v = teacher.Config.VocabSize;
        var loss = student.ChunkedDistillationLoss(tape, final, (r0, rows, use) =>
        {
            long chunk = Stopwatch.GetTimestamp();
            using var logits = teacher.Backend.Empty(DType.F32, rows, v);                       // (R, V)
            teacher.HeadLogits(teacherFinal.Narrow(0, r0, rows), logits);
            if (topK == 0) { seconds += TeacherSeconds(teacher.Backend, chunk); use(DistillTeacher.Full(logits)); return; }
            var (lp, ids, tail) = TeacherTopK.FromLogits(logits, topK, s.Temperature);
            seconds += Stopwatch.GetElapsedTime(chunk).TotalSeconds;
            using (lp) using (ids) using (tail)
            using (var dlp = student.Backend.FromHost(lp)) using (var dids = student.Backend.FromHost(ids))
                using (var dtail = student.Backend.FromHost(tail))
                use(DistillTeacher.TopK(dlp, dids, dtail));
        }, targets, s, out var parts);
        return (loss, Parts(parts), seconds);
    }

    /// <summary>The loss against a top-k summary held on the host (freed here), moved to the student's device for the fused op.</summary>
    static (Var, IReadOnlyDictionary<string, double>) TopK(
        Tape tape, LanguageModel student, Var logits, (Tensor LogProbs, Tensor Ids, Tensor Tail) summary, Tensor targets, DistillSettings s)
    {
        var (lp, ids, tail) = summary;
        Var loss;
        DistillParts parts;
        using (lp) using (ids) using (tail)
        using (var dlp = student.Backend.FromHost(lp)) using (var dids = student.Backend.FromHost(ids))
            using (var dtail = student.Backend.FromHost(tail))
            loss = tape.Distillation(logits, DistillTeacher.TopK(dlp, dids, dtail), targets, s, out parts);
        tape.Release(logits);
        return (loss, Parts(parts));
    }

    static Dictionary<string, double> Parts(DistillParts p) => new() { ["ce"] = p.CrossEntropy, ["kd"] = p.Distillation };
}

public enum SaltSchedule { Step, Linear, LinearRatio }

/// <summary>
/// SALT's loss weights (arXiv 2410.18779): for the first n_KD steps the large model learns from
/// (1−ω)·CE + ω·KL(p_small‖p_large) at τ = 1, then from plain CE. Schedules for ω over steps s = 1..n_KD:
/// <list type="bullet">
/// <item>step: ω throughout, then 0 abruptly (the paper's main recipe);</item>
/// <item>linear: ω_s = ω·(1 − (s−1)/n_KD), so the KD weight reaches 0 at n_KD and CE's weight rises to 1;</item>
/// <item>linear-ratio: CE keeps weight 1 and only the KD weight decays, ω_s = ω·(1 − (s−1)/n_KD): the KD:CE ratio falls linearly.</item>
/// </list>
/// </summary>
public static class SaltWeights
{
    public static Func<int, (float Alpha, float Beta)?> Create(SaltSchedule schedule, float omega, int kdSteps, int totalSteps)
    {
        if (omega is < 0 or > 1 || float.IsNaN(omega)) throw new WhittleException($"--omega must be in [0, 1], got {omega}");
        if (kdSteps < 0 || kdSteps > totalSteps)
            throw new WhittleException($"--kd-steps ({kdSteps}) must be in [0, {totalSteps}] (the run's total steps)");
        return step =>
        {
            if (step > kdSteps || omega == 0) return null;
            float decay = 1f - (step - 1f) / kdSteps;
            return schedule switch
            {
                SaltSchedule.Step => (1 - omega, omega),
                SaltSchedule.Linear => (1 - omega * decay, omega * decay),
                SaltSchedule.LinearRatio => (1f, omega * decay),
                _ => throw new ArgumentOutOfRangeException(nameof(schedule)),
            };
        };
    }

    public static SaltSchedule Parse(string s) => s switch
    {
        "step" => SaltSchedule.Step,
        "linear" => SaltSchedule.Linear,
        "linear-ratio" => SaltSchedule.LinearRatio,
        _ => throw new WhittleException($"unknown --schedule '{s}' for salt (expected step, linear or linear-ratio)"),
    };
}
