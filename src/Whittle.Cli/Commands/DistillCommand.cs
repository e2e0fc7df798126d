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
        arch.AddTo(cmd); arch.AddFamilyTo(cmd);
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
            var teacherConfig = ModelConfig.Load(teacherDir);
            teacherConfig.RequireContext(options.SeqLen, "the teacher's");
            TrainingCli.RequireModelFitsData(teacherDir, teacherConfig, "teacher", data);
            var studentConfig = StudentConfig(
                p, student, initSubnet, arch, teacherDir, teacherConfig, teacherConfig.VocabSize, teacherConfig.BosTokenId,
                teacherConfig.EosTokenId, data, options);
            using var backend = Backends.Create(p.GetValue(t.Device)!);
            using var teacherModel = ModelCheckpoint.Load(teacherConfig, teacherDir, backend);
            options = t.WithTeacherPrecision(p, teacherModel, options);
            using var studentModel = BuildStudent(p, student, initSubnet, studentConfig, teacherModel, data, backend, options.Seed);
            if (k > studentModel.Config.VocabSize)
                throw new WhittleException($"--top-k {k} exceeds the vocabulary ({studentModel.Config.VocabSize})");
            var lossFn = DistillationLoss.Create(studentModel, teacherModel, settings, k, _ => (settings.Alpha, settings.Beta));

            using var trainer = new Trainer(studentModel, data, options);
            var sc = studentModel.Config.CountParameters(); var tc = teacherModel.Config.CountParameters();
            return t.Train(p, trainer, studentModel, options, backend, "distill",
                $"distill: {Describe(studentModel.Config)} student {sc.Total:N0} parameters, {Describe(teacherModel.Config)} teacher " +
                    $"{tc.Total:N0}; loss {settings.Alpha}·CE + " +
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
        string cacheDir, TokenDataset data, TrainOptions options, DistillSettings settings)
    {
        ModelConfig? teacherConfig = null;
        if (p.GetValue(initSubnet) is not null)
        {
            if (!Directory.Exists(m.Teacher))
                throw new WhittleException($"--init-subnet extracts from the teacher the cache was built from, {m.Teacher}, which no " +
                    "longer exists");
            teacherConfig = ModelConfig.Load(m.Teacher);
        }
        // The cache records the teacher's end-of-text id; a new student's BOS is the dataset's (what its documents start with).
        var studentConfig = StudentConfig(
            p, student, initSubnet, arch, m.Teacher, teacherConfig, m.Vocab, data.Meta.BosId, m.EosId, data, options);
        using var backend = Backends.Create(p.GetValue(t.Device)!);
        LanguageModel studentModel;
        // extraction copies the weights
        using (var teacherForInit = teacherConfig is null ? null : ModelCheckpoint.Load(teacherConfig, m.Teacher, backend))
            studentModel = BuildStudent(p, student, initSubnet, studentConfig, teacherForInit, data, backend, options.Seed);
        using var _ = studentModel;
        var lossFn = DistillationLoss.FromCache(studentModel, cacheDir, m, settings, options.GradAccum);
        using var trainer = new Trainer(studentModel, data, options);
        return t.Train(p, trainer, studentModel, options, backend, "distill",
            $"distill: {Describe(studentModel.Config)} student {studentModel.Config.CountParameters().Total:N0} parameters; loss " +
                $"{settings.Alpha}·CE + {settings.Beta}·top-{m.TopK} (τ = {settings.Temperature}) from the teacher cache {cacheDir} on " +
                $"{backend.Name}", lossFn);
    }

    static string Describe(ModelConfig c) => c is LlamaConfig l ? $"{l.Family} ({l.NumHeads} query / {l.NumKeyValueHeads} kv heads)"
        : c.ModelType;

    /// <summary>
    /// The student's config, checked against the teacher's vocabulary (<paramref name="teacherVocab"/>) and the dataset
    /// before any weight is read: that of --student, or a new one from the architecture flags (any family; the teacher's
    /// vocabulary, BOS and end-of-text ids). Null for --init-subnet, whose config follows from the spec and the teacher.
    /// </summary>
    static ModelConfig? StudentConfig(
        ParseResult p, Option<string?> student, Option<string?> initSubnet, ArchitectureOptions arch, string teacherDir,
        ModelConfig? teacherConfig, int teacherVocab, int bos, int eos, TokenDataset data, TrainOptions options)
    {
        if (p.GetValue(student) is { } dir)
        {
            var c = ModelConfig.Load(dir);
            DistillationLoss.RequireSameVocabulary(teacherVocab, c.VocabSize);
            TrainingCli.RequireModelFitsData(dir, c, "student", data);
            c.RequireContext(options.SeqLen, "the student's");
            return c;
        }
        if (p.GetValue(initSubnet) is not null) return null;
        return arch.FamilyConfig(p, teacherVocab, bos, eos, options.SeqLen);
    }

    /// <param name="config">From <see cref="StudentConfig"/>: null for --init-subnet.</param>
    /// <param name="teacher">The teacher; needed (not null) for --init-subnet only.</param>
    static LanguageModel BuildStudent(ParseResult p, Option<string?> student, Option<string?> initSubnet, ModelConfig? config,
        LanguageModel? teacher, TokenDataset data, IBackend backend, ulong seed)
    {
        if (p.GetValue(student) is { } dir) return ModelCheckpoint.Load(config!, dir, backend);
        if (p.GetValue(initSubnet) is { } spec)
        {
            var parent = teacher!;
            return Whittle.Native.Search.Extraction.Extract(parent, Whittle.Native.Search.SubnetSpec.Load(spec, parent.Config));
        }
        return ArchitectureOptions.NewModel(config!, data, backend, seed);
    }
}
