using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Whittle.Native.Autograd;
using Whittle.Native.Data;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Distillation;

/// <summary>
/// manifest.json of a teacher-logit cache directory: what the cache was built from and for, so `distill
/// --teacher-cache` can refuse a run it does not fit before any work (the per-batch token hashes in the batch files
/// then catch anything the manifest cannot, such as a changed dataset with the same meta.json or a swapped file).
/// <see cref="Batches"/> = steps · grad-accum micro-batches, numbered as the trainer draws them.
/// </summary>
public sealed record TeacherCacheManifest(string Teacher, int Vocab, int EosId, int TopK, float Temperature, string Data, string DataHash,
    int BatchSize, int SeqLen, ulong Seed, int Steps, int GradAccum)
{
    public const string FileName = "manifest.json";
    const string Format = "whittle-teacher-cache";
    const int Version = 1;

    public long Batches => (long)Steps * GradAccum;

    /// <summary>The dataset fingerprint a cache records: SHA-256 of its meta.json (split sizes, shards, tokenizer, seed).</summary>
    public static string HashDataset(TokenDataset data) =>
        Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(data.Directory, "meta.json"))));

    public void Save(string dir)
    {
        var o = new JsonObject
        {
            ["format"] = Format, ["version"] = Version, ["teacher"] = Teacher, ["vocab_size"] = Vocab, ["eos_token_id"] = EosId,
            ["top_k"] = TopK, ["temperature"] = Temperature, ["data"] = Data, ["data_hash"] = DataHash,
            ["batch_size"] = BatchSize, ["seq_len"] = SeqLen, ["seed"] = Seed, ["steps"] = Steps, ["grad_accum"] = GradAccum,
            ["batches"] = Batches,
                ["batch_files"] = "batch-NNNNNNNN.kd, micro-batch index from 0 (see Whittle.Native.Distillation.TeacherCache)",
        };
        AtomicFile.WriteAllText(Path.Combine(dir, FileName), o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    public static TeacherCacheManifest Load(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!Directory.Exists(dir))
            throw new WhittleException($"--teacher-cache {dir}: directory not found (build it with `whittle cache-teacher`)");
        if (!File.Exists(path))
            throw new WhittleException($"--teacher-cache {dir}: no {FileName}; not a complete teacher cache (build it with `whittle " +
            $"cache-teacher`)");
        var o = JsonField.Load(path).RequireObject();
        if (o["format"].StringOrNull() != Format) throw new InvalidFileException(path, $"not a {Format} manifest");
        if (o["version"].Int() is var v && v != Version)
            throw new InvalidFileException(path, $"manifest version {v}; this build reads version {Version}");
        return new TeacherCacheManifest(
            o["teacher"].String(), o["vocab_size"].Int(1), o["eos_token_id"].Int(0), o["top_k"].Int(1), o["temperature"].Float(),
            o["data"].String(), o["data_hash"].Sha256Hex(), o["batch_size"].Int(1), o["seq_len"].Int(1), o["seed"].ULong(),
                o["steps"].Int(0), o["grad_accum"].Int(1));
    }

    /// <summary>
    /// Refuses a distillation run this cache was not built for, naming the setting, the run's value and the cache's
    /// (the student's vocabulary is checked against <see cref="Vocab"/> by DistillationLoss.FromCache).
    /// </summary>
    public void RequireFits(string dir, TokenDataset data, int batchSize, int seqLen, ulong seed, int steps, int gradAccum)
    {
        var where = Path.Combine(dir, FileName);
        void Same<T>(string what, T run, T cached)
        {
            if (!EqualityComparer<T>.Default.Equals(run, cached))
                throw new WhittleException($"{where}: the cache was built with {what} {cached}, but this run uses {run}; rebuild it with " +
                $"`whittle cache-teacher` or match the run");
        }
        Same("--batch-size", batchSize, BatchSize);
        Same("--seq-len", seqLen, SeqLen);
        Same("--seed", seed, Seed);
        var hash = HashDataset(data);
        if (hash != DataHash)
            throw new WhittleException($"{where}: the cache was built from a dataset whose meta.json has sha256 {DataHash[..12]}… " +
                $"({Data}), but --data {data.Directory} has {hash[..12]}…; rebuild the cache for this dataset");
        long need = (long)steps * gradAccum;
        if (need > Batches)
            throw new WhittleException($"{where}: the cache holds {Batches} micro-batches ({Steps} steps × grad-accum {GradAccum}), but " +
                $"this run needs {need} ({steps} steps × {gradAccum}); rebuild it with more --steps");
    }
}

/// <summary>
/// `whittle cache-teacher`'s work: the teacher in no-grad mode over exactly the micro-batches a training run with the
/// same batch shape and seed draws (<see cref="Trainer.TrainingBatches"/>), one <see cref="TeacherCache"/> file per
/// micro-batch, keyed by the SHA-256 of its inputs then targets. The directory appears only when complete
/// (<see cref="AtomicDirectory"/>); a failure or cancellation removes the partial one.
/// </summary>
public static class TeacherCacheBuilder
{
    /// <summary>progress(done, total, tokens/s) after each micro-batch.</summary>
    public static void Build(
        string outDir, LanguageModel teacher, TeacherCacheManifest m, TokenDataset data, Action<long, long, double>? progress = null,
        CancellationToken cancel = default)
    {
        int B = m.BatchSize, T = m.SeqLen;
        var loader = Trainer.TrainingBatches(data, B, T, m.Seed);
        var inputs = new int[B * T]; var targets = new int[B * T];
        var backend = teacher.Backend;
        AtomicDirectory.Write(outDir, tmp =>
        {
            var clock = Stopwatch.StartNew();
            for (long i = 0; i < m.Batches; i++)
            {
                cancel.ThrowIfCancellationRequested();
                loader.TryNext(out var batch);
                Trainer.SplitBatch(batch, B, T, inputs, targets);
                using var hIn = Tensor.FromArray(inputs, B, T);
                using var dIn = backend.FromHost(hIn);
                using var tape = new Tape(backend, recording: false);
                var logits = teacher.Forward(tape, dIn);                                       // (B·T, V)
                var (lp, ids, tail) = TeacherTopK.FromLogits(logits.Data, m.TopK, m.Temperature);
                using (lp) using (ids) using (tail)
                    TeacherCache.Write(tmp, i, TeacherCache.BatchTokens(inputs, targets), lp, ids, tail, m.Temperature, m.Vocab);
                progress?.Invoke(i + 1, m.Batches, (i + 1) * (double)(B * T) / clock.Elapsed.TotalSeconds);
            }
            m.Save(tmp);
        });
    }
}
