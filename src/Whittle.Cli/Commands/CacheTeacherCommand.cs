// Policy: `whittle cache-teacher`: runs a teacher once, in no-grad mode, over exactly the micro-batches `distill` with the
// same --batch-size, --seq-len, --seed, --steps and --grad-accum draws, and stores its top-k summary per micro-batch so
// `distill --teacher-cache` can train without the teacher in memory. Every check before any work; the cache directory
// appears only when complete (Ctrl-C removes the partial one; a killed process leaves only a hidden .NAME.tmp-* beside it).
// Progress goes to stdout, or stderr with --json, one line per micro-batch (at most ~100 lines).

namespace Whittle.Cli;

static class CacheTeacherCommand
{
    public static Command Create()
    {
        var teacher = new Option<string>("--teacher") { Description = "Teacher model directory.", Required = true };
        var data = new Option<string>("--data") { Description = "Token dataset directory (from `whittle tokenize`); batches come from " +
            "its train split as `distill` draws them.", Required = true };
        var topK = new Option<int>("--top-k") { Description = "Teacher log-probabilities kept per token (plus the remaining mass as one " +
            "tail bucket).", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "Temperature τ the log-probabilities are taken at (distill " +
            "must use the same).", DefaultValueFactory = _ => 1f };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per micro-batch (B), as distill's.",
            DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence (T), as distill's.",
            DefaultValueFactory = _ => 128 };
        var gradAccum = new Option<int>("--grad-accum") { Description = "Micro-batches per optimizer step, as distill's.",
            DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps to cover (steps × grad-accum micro-batches are cached).",
            Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Data-order seed, as distill's.", DefaultValueFactory = _ => 1UL };
        var output = new Option<string>("--out") { Description = "Cache directory to create (must not exist): manifest.json and " +
            "batch-NNNNNNNN.kd files.", Required = true };
        var device = CliCommon.DeviceOption();
        var precision = new Option<string?>("--teacher-precision") { Description = "fp32 | bf16: the teacher's forward pass (see " +
            "`distill --teacher-precision`). Default: bf16 on cuda, fp32 on cpu." };
        var cmd = new Command("cache-teacher",
            "Run a teacher once over the batches a `distill` run will see and store its top-k log-probabilities (f16), ids and tail mass " +
            "per token, with a hash of each batch's tokens; then `distill --teacher-cache DIR`.")
            { teacher, data, topK, temperature, batchSize, seqLen, gradAccum, steps, seed, output, device, precision, CliCommon.Json };
        cmd.SetAction(p =>
        {
            string teacherDir = p.GetValue(teacher)!, outDir = p.GetValue(output)!;
            int k = p.GetValue(topK), b = p.GetValue(batchSize), t = p.GetValue(seqLen), accum = p.GetValue(gradAccum),
                n = p.GetValue(steps);
            float tau = p.GetValue(temperature);
            bool json = p.GetValue(CliCommon.Json);

            // every check before any work
            if (!(tau > 0) || !float.IsFinite(tau)) throw new WhittleException($"--temperature must be > 0, got {tau}");
            if (b < 1 || t < 1 || accum < 1)
                throw new WhittleException($"--batch-size ({b}), --seq-len ({t}) and --grad-accum ({accum}) must be positive");
            if (n < 1) throw new WhittleException($"--steps must be at least 1, got {n}");
            Precision? chosen = p.GetValue(precision) is { } ps ? PrecisionNames.Parse(ps, "--teacher-precision") : null;
            if (Directory.Exists(outDir) || File.Exists(outDir))
                throw new WhittleException($"--out {outDir} already exists; a cache is written whole into a new directory (delete it or " +
                $"choose another)");
            if (!Directory.Exists(teacherDir)) throw new WhittleException($"{teacherDir}: no such model directory (--teacher)");
            var config = ModelConfig.Load(teacherDir);
            if (k < 1 || k > config.VocabSize)
                throw new WhittleException($"--top-k must be in [1, {config.VocabSize}] (the teacher's vocabulary), got {k}");
            if (t > config.MaxPositionEmbeddings)
                throw new WhittleException($"--seq-len {t} exceeds the teacher's context ({config.MaxPositionEmbeddings})");
            using var dataset = TokenDataset.Open(p.GetValue(data)!);
            TrainingCli.RequireModelFitsData(teacherDir, config, "teacher", dataset);
            if (dataset.Train.Length < t + 1)
                throw new WhittleException($"{dataset.Directory}: the training split has {dataset.Train.Length} tokens, fewer than one " +
                $"window of {t + 1}");
            var manifest = new TeacherCacheManifest(
                Path.GetFullPath(teacherDir), config.VocabSize, config.EosTokenId, k, tau, Path.GetFullPath(dataset.Directory),
                TeacherCacheManifest.HashDataset(dataset), b, t, p.GetValue(seed), n, accum);

            using var backend = Backends.Create(p.GetValue(device)!);
            using var model = ModelCheckpoint.Load(config, teacherDir, backend);
            CliCommon.SetPrecision(model, chosen ?? (backend.Device == Device.Cuda ? Precision.Bf16 : Precision.F32));
            var log = json ? Console.Error : Console.Out;
            log.WriteLine($"cache-teacher: {manifest.Batches} micro-batches of {b}×{t} tokens, top-{k} at τ = {tau}, " +
                $"{model.Precision.Name()} {config.ModelType} teacher on {backend.Name}");
            using var cancel = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
            Console.CancelKeyPress += onCancel;
            long every = Math.Max(1, manifest.Batches / 100);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                TeacherCacheBuilder.Build(outDir, model, manifest, dataset, (done, total, rate) =>
                {
                    if (done % every == 0 || done == total) log.WriteLine($"batch {done,6}/{total} | {rate:N0} tok/s");
                }, cancel.Token);
            }
            catch (OperationCanceledException) { throw new WhittleException($"interrupted; no cache written to {outDir}"); }
            finally { Console.CancelKeyPress -= onCancel; }
            long bytes = Directory.EnumerateFiles(outDir).Sum(f => new FileInfo(f).Length);
            if (json)
            {
                Console.WriteLine(new JsonObject
                {
                    ["out"] = Path.GetFullPath(outDir), ["batches"] = manifest.Batches, ["tokens"] = manifest.Batches * b * t,
                        ["top_k"] = k, ["temperature"] = tau,
                    ["bytes"] = bytes, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2),
                }.ToJsonString(CliCommon.JsonOptions));
                return 0;
            }
            Console.WriteLine($"wrote {Path.GetFullPath(outDir)}: {manifest.Batches} batches, {bytes / 1048576.0:N1} MiB in " +
                $"{clock.Elapsed.TotalSeconds:N1} s; use it with `whittle distill --teacher-cache {outDir} --seed {manifest.Seed} " +
                $"--batch-size {b} --seq-len {t} --grad-accum {accum} --steps ≤{n}`");
            return 0;
        });
        return cmd;
    }
}
