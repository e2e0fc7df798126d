namespace Whittle.Cli;

/// <summary>`whittle distill`: pretrain a student with knowledge distillation from a teacher (Whittle's training half).</summary>
static class DistillCommand
{
    public static Command Create()
    {
        var cmd = new Command("distill",
            "Train a student with loss α·CE + β·KD against a teacher run in no-grad mode on the same batches. Same run directory, " +
            "checkpoints and resume as pretrain.");
        var t = new TrainingCli();
        t.AddTo(cmd);
        var teacher = new Option<string?>("--teacher") { Description = "Teacher model directory (or give --teacher-cache)." };
        var cache = new Option<string?>("--teacher-cache") { Description = "Teacher-logit cache from `whittle cache-teacher`, instead of " +
            "--teacher: the top-k loss against the cached summary (--top-k and --temperature default to the cache's; --seed, " +
            "--batch-size, --seq-len must match it). --init-subnet extracts from the teacher the cache names." };
        var student = new Option<string?>("--student") { Description = "Student model directory to start from (default: a new model from " +
            "the architecture flags)." };
        var initSubnet = new Option<string?>("--init-subnet") { Description = "Start from this sub-network of the teacher (JSON spec), " +
            "extracted as a dense model." };
        var loss = new Option<string>("--loss") { Description = "forward-kl | reverse-kl | symmetric | js (Jensen–Shannon, bounded by " +
            "τ²·ln 2) | top-k (forward KL against the teacher's top-k + tail bucket).", DefaultValueFactory = _ => "forward-kl" };
        var topK = new Option<int>("--top-k") { Description = "k for --loss top-k.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "Softmax temperature τ of the KD term (its gradient is " +
            "scaled by τ²).", DefaultValueFactory = _ => 1f };
        var alpha = new Option<float>("--alpha") { Description = "Weight of the cross-entropy term.", DefaultValueFactory = _ => 0.5f };
        var beta = new Option<float>("--beta") { Description = "Weight of the distillation term.", DefaultValueFactory = _ => 0.5f };
        var arch = new ArchitectureOptions();
        foreach (var o in new Option[] { teacher, cache, student, initSubnet, loss, topK, temperature, alpha, beta, t.TeacherPrecision })
            cmd.Options.Add(o);
        arch.AddTo(cmd);
        cmd.SetAction(p =>
        {
            // Every check before any work.
            string? cacheDir = p.GetValue(cache);
            if ((p.GetValue(teacher) is null) == (cacheDir is null))
                throw new WhittleException("give exactly one of --teacher DIR or --teacher-cache DIR");
            var manifest = cacheDir is null ? null : TeacherCacheManifest.Load(cacheDir);
            if (manifest is not null) RequireCacheSettings(p, manifest, cacheDir!, loss, topK, temperature);
            var (kind, k) = (manifest is null ? p.GetValue(loss) : "top-k") switch
            {
                "forward-kl" => (DistillKind.ForwardKl, 0),
                "reverse-kl" => (DistillKind.ReverseKl, 0),
                "symmetric" => (DistillKind.Symmetric, 0),
                "js" => (DistillKind.JensenShannon, 0),
                "top-k" => (DistillKind.ForwardKl, manifest?.TopK ?? p.GetValue(topK)),
                var other =>
                    throw new WhittleException($"unknown --loss '{other}' (expected forward-kl, reverse-kl, symmetric, js or top-k)"),
            };
            float tau = manifest?.Temperature ?? p.GetValue(temperature);
            if (!(tau > 0) || !float.IsFinite(tau)) throw new WhittleException($"--temperature must be > 0, got {tau}");
            OptionCheck.NonNegative("--alpha", p.GetValue(alpha));
            OptionCheck.NonNegative("--beta", p.GetValue(beta));
            if (p.GetValue(loss) == "top-k" && k <= 0) throw new WhittleException($"--top-k must be at least 1, got {k}");
            if (p.GetValue(student) is not null && p.GetValue(initSubnet) is not null)
                throw new WhittleException("give --student or --init-subnet, not both");
            var options = t.Options(p, tokenizerFile: null);   // every option checked before the dataset is opened
            using var data = TokenDataset.Open(p.GetValue(t.Data)!);
            options = options with { TokenizerFile = TrainingCli.TokenizerOf(data) };
            var settings = new DistillSettings(kind, tau, p.GetValue(alpha), p.GetValue(beta));
            if (manifest is not null)
            {
                manifest.RequireFits(cacheDir!, data, options.MicroBatch, options.SeqLen, options.Seed, options.Steps, options.GradAccum);
                return FromCache(p, t, student, initSubnet, arch, manifest, cacheDir!, data, options, settings);
            }
            string teacherDir = p.GetValue(teacher)!;
            TrainingCli.RequireSameTokenizer(teacherDir, data);
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            GptNeoXConfig.Load(teacherDir).RequireContext(options.SeqLen, "the teacher's");
            using var teacherModel = GptNeoXCheckpoint.Load(teacherDir, backend);
            options = t.WithTeacherPrecision(p, teacherModel, options);
            using var studentModel = BuildStudent(
                p, student, initSubnet, arch, teacherModel.Config.VocabSize, teacherModel.Config.EosTokenId, teacherModel, data,
                backend, options);
            if (k > studentModel.Config.VocabSize)
                throw new WhittleException($"--top-k {k} exceeds the vocabulary ({studentModel.Config.VocabSize})");
            var lossFn = DistillationLoss.Create(studentModel, teacherModel, settings, k, _ => (settings.Alpha, settings.Beta));

            using var trainer = new Trainer(studentModel, data, options);
            var sc = ParameterCount.Of(studentModel.Config); var tc = ParameterCount.Of(teacherModel.Config);
            return t.Train(p, trainer, studentModel, options, backend, "distill",
                $"distill: student {sc.Total:N0} parameters, teacher {tc.Total:N0}; loss {settings.Alpha}·CE + " +
                    $"{settings.Beta}·{p.GetValue(loss)} (τ = {tau}) on {backend.Name}", lossFn);
        });
        return cmd;
    }

    /// <summary>
    /// With --teacher-cache only the top-k loss is available, so it is the loss; k and τ come from the manifest, and
    /// explicit values that differ are refused rather than silently replaced.
    /// </summary>
    static void RequireCacheSettings(
        ParseResult p, TeacherCacheManifest m, string dir, Option<string> loss, Option<int> topK, Option<float> temperature)
    {
        var where = Path.Combine(dir, TeacherCacheManifest.FileName);
        bool Given(Option o) => p.GetResult(o) is { Implicit: false };
        if (Given(loss) && p.GetValue(loss) != "top-k")
            throw new WhittleException($"--teacher-cache holds the teacher's top-k summary only, so the loss is top-k; --loss " +
                $"{p.GetValue(loss)} needs the full teacher (--teacher)");
        if (Given(topK) && p.GetValue(topK) != m.TopK)
            throw new WhittleException($"{where}: the cache holds the top-{m.TopK}, but --top-k {p.GetValue(topK)} was given; rebuild it " +
                $"with `whittle cache-teacher --top-k {p.GetValue(topK)}` or drop --top-k");
        if (Given(temperature) && p.GetValue(temperature) != m.Temperature)
            throw new WhittleException($"{where}: the cache was built at temperature {m.Temperature}, but --temperature " +
                $"{p.GetValue(temperature)} was given; rebuild it or drop --temperature");
    }

    static int FromCache(
        ParseResult p, TrainingCli t, Option<string?> student, Option<string?> initSubnet, ArchitectureOptions arch, TeacherCacheManifest m,
        string cacheDir,
        TokenDataset data, TrainOptions options, DistillSettings settings)
    {
        if (p.GetValue(initSubnet) is not null && !Directory.Exists(m.Teacher))
            throw new WhittleException($"--init-subnet extracts from the teacher the cache was built from, {m.Teacher}, which no longer " +
                $"exists");
        using var backend = Backends.Create(p.GetValue(t.Device)!);
        GptNeoX studentModel;
        // extraction copies the weights
        using (var teacherForInit = p.GetValue(initSubnet) is null ? null : GptNeoXCheckpoint.Load(m.Teacher, backend))
            studentModel = BuildStudent(p, student, initSubnet, arch, m.Vocab, m.EosId, teacherForInit, data, backend, options);
        using var _ = studentModel;
        var lossFn = DistillationLoss.FromCache(studentModel, cacheDir, m, settings, options.GradAccum);
        using var trainer = new Trainer(studentModel, data, options);
        return t.Train(p, trainer, studentModel, options, backend, "distill",
            $"distill: student {ParameterCount.Of(studentModel.Config).Total:N0} parameters; loss {settings.Alpha}·CE + " +
                $"{settings.Beta}·top-{m.TopK} (τ = {settings.Temperature}) from the teacher cache {cacheDir} on {backend.Name}", lossFn);
    }

    /// <param name="teacher">The teacher; needed (not null) for --init-subnet only.</param>
    static GptNeoX BuildStudent(
        ParseResult p, Option<string?> student, Option<string?> initSubnet, ArchitectureOptions arch, int vocab, int eos, GptNeoX? teacher,
        TokenDataset data, IBackend backend, TrainOptions options)
    {
        if (p.GetValue(student) is { } dir)
        {
            TrainingCli.RequireSameTokenizer(dir, data);
            return GptNeoXCheckpoint.Load(dir, backend);
        }
        if (p.GetValue(initSubnet) is { } spec)
            return Whittle.Native.Search.Extraction.Extract(teacher!, Whittle.Native.Search.SubnetSpec.Load(spec, teacher!.Config));
        var c = arch.Config(p, vocab, eos, options.SeqLen);
        return GptNeoX.CreateRandom(c, backend, options.Seed);
    }
}
