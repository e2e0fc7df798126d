using System.Diagnostics;
using Whittle.Native.Verification;
using Whittle.Native.Autograd;
using Whittle.Native.Evaluation;
using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Cli;

/// <summary>
/// `whittle bench train|eval|kd`: steps of a randomly initialised model of a named shape (Pythia-70M/160M/410M, SmolLM2-135M,
/// Qwen3-0.6B, the small CPU configs, or any family's config.json) on random tokens, timed after warm-up, with tokens/s,
/// MFU on a known GPU and peak tensor memory. `whittle bench kernels`: every backend op at a GPT-NeoX shape's training-step
/// sizes against the device's measured ceilings (<see cref="KernelBench"/>). `whittle bench gemm`: the f32 GEMM ceiling alone
/// (<see cref="KernelBench.MeasureGemmCeiling"/>: a square GEMM and the shape's linear-layer GEMMs through the backend's MatMul);
/// `bench train|eval --ceiling` measures it in the same process after the timed steps and reports the step's fraction of it.
/// FLOPs per token (for MFU): training 6N + 6·L·T·a, evaluation 2N + 2·L·T·a, N = non-embedding + output-projection
/// parameters, a = heads × head size (the attention width: d for GPT-NeoX, 2d for Qwen3-0.6B).
/// The kd mode times a distillation step (teacher forward in no-grad + student forward/backward + fused KD loss + AdamW)
/// next to a plain cross-entropy step of the same student, and checks their peak memory against the rule
/// peak(KD) ≤ 1.15 × peak(CE) + the teacher's weights (<see cref="KdMemoryRule"/>); teacher and student may be of
/// either family (same vocabulary).
/// Every timed mode also reports the loss of its last step and checks it (<see cref="LossCheck"/>): a speed measured on
/// a step that computes garbage is no measurement, so a non-finite loss, or one far from a random model's, prints the
/// JSON with the verdict and exits 2 (a bug in the engine or the device, not the user's).
/// </summary>
static class BenchCommand
{
    /// <summary>--loss-chunk-rows of the running command (one bench per process).</summary>
    static int ChunkRows;

    /// <summary>The named shapes (Hugging Face's published config.json values), or a config.json of any supported family.</summary>
    internal static ModelConfig Shape(string name) => name switch
    {
        "pythia-70m" => new GptNeoXConfig { VocabSize = 50304, HiddenSize = 512, NumLayers = 6, NumHeads = 8, IntermediateSize = 2048 },
        "pythia-160m" => new GptNeoXConfig
            { VocabSize = 50304, HiddenSize = 768, NumLayers = 12, NumHeads = 12, IntermediateSize = 3072 },
        "pythia-410m" => new GptNeoXConfig
            { VocabSize = 50304, HiddenSize = 1024, NumLayers = 24, NumHeads = 16, IntermediateSize = 4096 },
        // HuggingFaceTB/SmolLM2-135M's config.json (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/eba0825/config.json,
        // the same architecture as the base model's): LlamaForCausalLM, hidden 576, 30 layers, 9 heads (head_dim 64), 3 kv
        // heads, intermediate 1536, vocab 49152, tied embeddings, rope_theta 100000, rms_norm_eps 1e-5, 8192 positions.
        "smollm2-135m" => new LlamaConfig
        {
            Family = "llama", VocabSize = 49152, HiddenSize = 576, NumLayers = 30, NumHeads = 9, NumKeyValueHeads = 3,
            IntermediateSize = 1536, TieWordEmbeddings = true, RopeTheta = 100000, RmsNormEps = 1e-5f, MaxPositionEmbeddings = 8192,
        },
        // Qwen/Qwen3-0.6B's config.json (huggingface.co/Qwen/Qwen3-0.6B, config.json of 726 bytes): Qwen3ForCausalLM, hidden
        // 1024, 28 layers, 16 heads of head_dim 128 (heads × head_dim = 2048 ≠ hidden), 8 kv heads, intermediate 3072, vocab
        // 151936, tied embeddings, rope_theta 1000000, rms_norm_eps 1e-6, 40960 positions, no attention bias, QK-norm.
        "qwen3-0.6b" => new LlamaConfig
        {
            Family = "qwen3", VocabSize = 151936, HiddenSize = 1024, NumLayers = 28, NumHeads = 16, NumKeyValueHeads = 8,
            ExplicitHeadDim = 128, IntermediateSize = 3072, TieWordEmbeddings = true, RopeTheta = 1000000, RmsNormEps = 1e-6f,
            MaxPositionEmbeddings = 40960,
        },
        "small" => new GptNeoXConfig { VocabSize = 4096, HiddenSize = 256, NumLayers = 4, NumHeads = 8, IntermediateSize = 1024 },
        "tiny" => new GptNeoXConfig { VocabSize = 4096, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 256 },
        // tiny's Llama counterpart (grouped-query attention, tied head as SmolLM2's), for trying the kit on the software GPU
        "tiny-llama" => new LlamaConfig
        {
            Family = "llama", VocabSize = 4096, HiddenSize = 64, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2,
            IntermediateSize = 176, TieWordEmbeddings = true,
        },
        _ when File.Exists(name) => ModelConfig.Load(name),
        _ => throw new WhittleException($"unknown --config '{name}' ({ShapeNames}, or a config.json)"),
    };

    const string ShapeNames = "pythia-70m, pythia-160m, pythia-410m, smollm2-135m, qwen3-0.6b, small, tiny, tiny-llama";

    public static Command Create()
    {
        var mode = new Argument<string>("mode") { Description = "train | eval | kd | kernels (every backend op at the shape's " +
            "training-step sizes, against the device's measured copy bandwidth and GEMM rates) | gemm (the f32 GEMM ceiling: a " +
            "square GEMM and the shape's linear-layer GEMMs; the larger rate is the ceiling)." };
        var config = new Option<string>("--config") { Description = "Model shape: pythia-70m | pythia-160m | pythia-410m | " +
            "smollm2-135m | qwen3-0.6b (Hugging Face's shapes, random weights) | small (GPT-NeoX, V 4096, d 256, 4 layers) | tiny | " +
            "tiny-llama | a config.json of any supported family.", DefaultValueFactory = _ => "small" };
        var teacher = new Option<string>("--teacher-config") { Description = "kd: the teacher's shape (any family; the same " +
            "vocabulary as the student's).",
            DefaultValueFactory = _ => "small" };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 8, Description = "Sequences per step (B)." };
        var seqLen = new Option<int>("--seq-len") { DefaultValueFactory = _ => 256, Description = "Tokens per sequence (T)." };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 5, Description = "Timed steps (the median is reported)." };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 2,
            Description = "Untimed steps first (kernel compilation, allocator warm-up)." };
        var device = CliCommon.DeviceOption();
        var precision = TrainingCli.PrecisionOption("--precision",
            "fp32 | bf16: the (student) model's precision (bf16: Linear GEMMs on bf16 inputs, f32 accumulation and master " +
            "weights).", "fp32");
        var teacherPrecision = TrainingCli.PrecisionChoices(
            new Option<string?>("--teacher-precision") { Description = "kd: the teacher's precision, fp32 | bf16 (default: bf16 on cuda, " +
            "fp32 on cpu, as in distill)." });
        var lossChunkRows = new Option<int>("--loss-chunk-rows") { DefaultValueFactory = _ => 0,
            Description = "LM head + loss this many rows at a time (0: all at once), as the training commands' option." };
        var gemm = new Option<string?>("--gemm")
        {
            Description = "cpu: the GEMM MatMul runs: ours | openblas | auto (OpenBLAS when installed, unless it runs AVX2 kernels " +
                "where ours runs AVX-512) | ours-scalar | ours-avx2 | ours-avx512 (our GEMM on one micro-kernel; bf16 widened to f32, " +
                "the same bits on every CPU) | ours-avx512bf16 (bf16 on AVX512-BF16 dot products, which auto and ours also pick " +
                $"where the CPU has them). Default: ${CpuGemmChoice.Variable}, else auto. " +
                          "Threads: the .NET processor count (set DOTNET_PROCESSOR_COUNT=N to change it); OpenBLAS is given the same.",
        };
        var profile = new Option<bool>("--profile") { Description = "Also report each backend op's time per timed step (ops synchronised " +
            "one by one, so the step itself is slightly slower)." };
        var ceiling = new Option<bool>("--ceiling") { Description = "train | eval: also measure the f32 GEMM ceiling (as `bench gemm`) " +
            "after the timed steps and report the step's fraction of it (tokens/s × FLOPs per token / ceiling)." };
        var square = new Option<int>("--square") { DefaultValueFactory = _ => 2048,
            Description = "gemm, --ceiling: the square GEMM's size n (n×n×n)." };
        var tf32 = new Option<bool>("--tf32") { Description = "CUDA: let f32 matmuls use TF32 tensor cores (about 1e-3 relative error)." };
        var cmd = new Command("bench",
            "Time training, evaluation or distillation steps of a model shape on random tokens (tokens/s, MFU on a known GPU, peak " +
            "memory), or every backend op at that shape (kernels).")
            { mode, config, teacher, batch, seqLen, steps, warmup, device, precision, teacherPrecision, lossChunkRows, gemm, profile,
                ceiling, square, tf32, CliCommon.Json };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(mode)!;
            if (m is not ("train" or "eval" or "kd" or "kernels" or "gemm"))
                throw new WhittleException($"mode must be train, eval, kd, kernels or gemm, got '{m}'");
            if (p.GetValue(square) is < 1 or > 16384)
                throw new WhittleException($"--square must be in [1, 16384], got {p.GetValue(square)}");
            if (p.GetValue(ceiling) && m is not ("train" or "eval")) throw new WhittleException("--ceiling applies to train and eval only");
            int B = p.GetValue(batch), T = p.GetValue(seqLen), n = p.GetValue(steps), w = p.GetValue(warmup);
            if (B < 1 || T < 2 || n < 1 || w < 0)
                throw new WhittleException("--batch-size, --steps must be ≥ 1, --seq-len ≥ 2, --warmup ≥ 0");
            var shape = WithContext(Shape(p.GetValue(config)!), T);
            string dev = p.GetValue(device)!;
            if (p.GetValue(gemm) is { } g && dev != "cpu") throw new WhittleException("--gemm applies to --device cpu only");
            if (p.GetValue(lossChunkRows) < 0)
                throw new WhittleException($"--loss-chunk-rows must be >= 0, got {p.GetValue(lossChunkRows)}");
            IBackend created = Backends.Create(dev, p.GetValue(gemm) ?? Environment.GetEnvironmentVariable(CpuGemmChoice.Variable));
            using var backend = p.GetValue(profile) ? new ProfilingBackend(created) : created;
            var pr = PrecisionNames.Parse(p.GetValue(precision)!, "--precision");
            var teacherPr = p.GetValue(teacherPrecision) is { } tp ? PrecisionNames.Parse(tp, "--teacher-precision")
                : backend.Device == Device.Cuda ? Precision.Bf16 : Precision.F32;
            ChunkRows = p.GetValue(lossChunkRows);
            if (created is CudaBackend cuda) cuda.AllowTf32 = p.GetValue(tf32);
            var teacherShape = m == "kd" ? WithContext(Shape(p.GetValue(teacher)!), T) : null;
            var result = m switch
            {
                "kernels" => KernelsReport.Run(backend, shape as GptNeoXConfig ?? throw new WhittleException(
                    $"bench kernels: --config must be a GPT-NeoX shape so far, got model_type {shape.ModelType}"), B, T, n, w),
                "kd" => BenchKd(backend, shape, teacherShape!, B, T, n, w, pr, teacherPr),
                "gemm" => new JsonObject { ["mode"] = "gemm", ["gemm_ceiling"] = Ceiling(created, shape, B, T, p.GetValue(square)) },
                _ => BenchOne(backend, shape, m == "train", B, T, n, w, pr),
            };
            result["precision"] = pr.Name();
            if (!result.ContainsKey("loss_chunk_rows")) result["loss_chunk_rows"] = ChunkRows;   // eval reports the rows it used
            result["device"] = backend.Name;
            result["threads"] = Environment.ProcessorCount;
            if (created is CpuBackend cpu)
            {
                result["gemm"] = CpuGemmChoice.Name(cpu.GemmChoice);
                if (pr == Precision.Bf16) result["bf16_gemm"] = CpuGemmChoice.Name(cpu.Bf16Gemm);
            }
            if (created is CpuBackend { GemmChoice: CpuGemm.OpenBlas })
                result["openblas"] = $"{OpenBlas.LoadedPath}: {OpenBlas.Config}, {OpenBlas.Threads} threads";
            if (backend is ProfilingBackend prof && result["step_seconds"] is { } stepSeconds)
                result["profile"] = prof.Report(n, stepSeconds.GetValue<double>());
            if (p.GetValue(ceiling))
            {
                var measured = Ceiling(created, shape, B, T, p.GetValue(square));
                result["gemm_ceiling"] = measured;
                double achieved = result["tokens_per_second"]!.GetValue<double>() * result["flops_per_token"]!.GetValue<long>() / 1e9;
                result["fraction_of_gemm_ceiling"] = Math.Round(achieved / measured["gflops"]!.GetValue<double>(), 4);
            }
            result["peak_rss_bytes"] = Process.GetCurrentProcess().PeakWorkingSet64;
            result["config"] = p.GetValue(config);
            result["batch"] = B; result["seq_len"] = T; result["steps"] = n;
            string? lossProblem = m is "kernels" or "gemm" ? null : LossCheck.Apply(result, shape, teacherShape, (long)B * T);
            if (p.GetValue(CliCommon.Json)) Console.WriteLine(result.ToJsonString(CliCommon.JsonOptions));
            else if (m == "kernels") KernelsReport.Print(result);
            else foreach (var (k, v) in result) Console.WriteLine($"{k,-26} {v}");
            if (lossProblem is null) return 0;
            Console.Error.WriteLine($"error: bench {m}: {lossProblem}");
            return 2;
        });
        return cmd;
    }

    /// <summary>The f32 GEMM ceiling at <paramref name="shape"/>'s step (<see cref="KernelBench.MeasureGemmCeiling"/>), as JSON:
    /// gflops (the ceiling), source, square_gflops, model_shapes_gflops and each shape's rate. On the software GPU speed means
    /// nothing, so the square is 128³ there (a check that the path runs).</summary>
    static JsonObject Ceiling(IBackend backend, ModelConfig shape, int b, int t, int square)
    {
        var neox = shape as GptNeoXConfig
            ?? throw new WhittleException(
                $"bench gemm / --ceiling: --config must be a GPT-NeoX shape so far, got model_type {shape.ModelType}");
        using var bench = new KernelBench(backend, repeats: 5, warmup: 1);
        var c = bench.MeasureGemmCeiling(KernelShape.Of(neox, b, t), SoftwareGpu.IsActive ? Math.Min(square, 128) : square);
        var shapes = new JsonArray();
        foreach (var r in c.Shapes)
            shapes.Add((JsonNode)new JsonObject
                {
                    ["case"] = r.Case, ["calls_per_train_step"] = r.Calls, ["ms"] = Math.Round(r.Milliseconds, 3),
                    ["gflops"] = Math.Round(r.Gflops, 1),
                });
        return new JsonObject
        {
            ["gflops"] = Math.Round(c.Gflops, 1),
            ["source"] = c.Source,
            ["square_gflops"] = Math.Round(c.SquareGflops, 1),
            ["square_size"] = c.SquareSize,
            ["model_shapes_gflops"] = Math.Round(c.ModelShapesGflops, 1),
            ["shapes"] = shapes,
        };
    }

    /// <summary>The shape with room for <paramref name="t"/> positions (random weights: the context is only the rotary tables'
    /// length).</summary>
    static ModelConfig WithContext(ModelConfig c, int t) => c with { MaxPositionEmbeddings = Math.Max(2048, t) };

    /// <summary>6N + 6·L·T·a (training) or 2N + 2·L·T·a (evaluation); see the type's summary.</summary>
    internal static long FlopsPerToken(ModelConfig c, int t, bool train)
    {
        long n = c.CountParameters().NonEmbedding + (long)c.VocabSize * c.HiddenSize;
        long attention = Enumerable.Range(0, c.NumLayers).Sum(l => (long)t * c.HeadsOf(l) * c.HeadSize);
        return train ? 6 * n + 6 * attention : 2 * n + 2 * attention;
    }

    static (Tensor Inputs, Tensor Targets) RandomBatch(IBackend backend, int vocab, int b, int t, ulong seed)
    {
        var rng = new Rng(seed);
        var ids = new int[b * t]; var tg = new int[b * t];
        for (int i = 0; i < ids.Length; i++) { ids[i] = rng.NextInt(vocab); tg[i] = rng.NextInt(vocab); }
        using var hi = Tensor.FromArray(ids, b, t); using var ht = Tensor.FromArray(tg, b * t);
        return (backend.FromHost(hi), backend.FromHost(ht));
    }

    /// <summary>
    /// Median wall seconds of <paramref name="n"/> timed calls after <paramref name="warmup"/> untimed ones, and the process's
    /// CPU seconds (all threads) per timed call: on a shared machine a step's wall time grows with the other jobs' load,
    /// its CPU time much less, so comparisons between runs are made on both.
    /// </summary>
    static (double Wall, double Cpu, long AllocatedBytes) Median(IBackend backend, int n, int warmup, Action step)
    {
        for (int i = 0; i < warmup; i++) step();
        backend.Synchronize();
        (backend as ProfilingBackend)?.Reset();   // count the timed steps only
        var process = Process.GetCurrentProcess();
        var cpu0 = process.TotalProcessorTime;
        var times = new double[n];
        var allocatedBytes = new long[n];
        for (int i = 0; i < n; i++)
        {
            long allocated0 = GC.GetTotalAllocatedBytes(precise: true);
            var sw = Stopwatch.StartNew();
            step();
            backend.Synchronize();
            times[i] = sw.Elapsed.TotalSeconds;
            allocatedBytes[i] = GC.GetTotalAllocatedBytes(precise: true) - allocated0;
        }
        // Managed bytes a step allocates (all threads), the median step: a thread-pool thread that joins mid-run allocates
        // its GEMM pack buffers once (~2.3 MB), a per-thread cost that lands in whichever step it joins.
        Array.Sort(allocatedBytes);
        long allocated = allocatedBytes[n / 2];
        process.Refresh();
        double cpu = (process.TotalProcessorTime - cpu0).TotalSeconds / n;
        Array.Sort(times);
        return (times[n / 2], cpu, allocated);
    }

    static JsonObject BenchOne(IBackend backend, ModelConfig c, bool train, int b, int t, int n, int w, Precision precision)
    {
        using var model = LanguageModel.CreateRandom(c, backend, 1);
        CliCommon.SetPrecision(model, precision);
        model.LossChunkRows = ChunkRows;
        var (inputs, targets) = RandomBatch(backend, c.VocabSize, b, t, 2);
        using var _i = inputs; using var _t = targets;
        AdamWOptimizer? opt = null;
        if (train) { model.Parameters.EnsureGrad(); opt = new AdamWOptimizer(model.Parameters, new AdamWSettings(1e-4f)); }
        using var __ = opt;
        MemoryMeter.Reset(backend);
        using var losses = new StepLosses(backend);
        // eval: what `whittle eval` runs (Evaluation/EvalForward.cs): buffers made here, once, as eval makes them per run
        using var eval = train || !EvalForward.Supports(model) ? null
            : new EvalForward(model, b, t, chunkRows: ChunkRows > 0 ? ChunkRows : EvalForward.DefaultChunkRows);
        var evalSteps = new List<double>(n + w);
        var (s, cpu, allocated) = Median(backend, n, w, () =>
        {
            if (train)
            {
                model.Parameters.ZeroGrad();
                using var tape = new Tape(backend);
                var loss = model.Loss(tape, inputs, targets);
                losses.Keep(loss);
                tape.Backward(loss);
                opt!.Update(1e-4f, 1f);
            }
            else if (eval is not null) evalSteps.Add(eval.LossSum(inputs, targets, -100) / ((long)b * t));
            else
            {
                using var tape = new Tape(backend, recording: false);   // bf16: the tape's no-grad forward
                losses.Keep(model.Loss(tape, inputs, targets));
            }
        });
        var r = Report(backend, train ? "train" : "eval", c, b, t, s, FlopsPerToken(c, t, train), MemoryMeter.Peak(backend));
        r["step_cpu_seconds"] = Math.Round(cpu, 5);
        r["allocated_bytes_per_step"] = allocated;
        if (eval is not null) r["loss_chunk_rows"] = eval.ChunkRows;
        r["loss_initial"] = eval is null ? losses.First() : evalSteps[0];
        r["loss"] = eval is null ? losses.Last() : evalSteps[^1];
        return r;
    }

    static JsonObject BenchKd(
        IBackend backend, ModelConfig student, ModelConfig teacher, int b, int t, int n, int w, Precision precision,
        Precision teacherPrecision)
    {
        if (teacher.VocabSize != student.VocabSize) throw new WhittleException("the teacher's and student's vocabularies differ");
        var (inputs, targets) = RandomBatch(backend, student.VocabSize, b, t, 2);
        using var _i = inputs; using var _t = targets;
        using var s = LanguageModel.CreateRandom(student, backend, 1);
        CliCommon.SetPrecision(s, precision);
        s.LossChunkRows = ChunkRows;
        s.Parameters.EnsureGrad();
        using var opt = new AdamWOptimizer(s.Parameters, new AdamWSettings(1e-4f));
        using var ceLosses = new StepLosses(backend);   // the first CE step's is the student's loss at initialisation
        MemoryMeter.Reset(backend);
        var (ce, ceCpu, _) = Median(backend, n, w, () =>
        {
            s.Parameters.ZeroGrad();
            using var tape = new Tape(backend);
            var l = s.Loss(tape, inputs, targets);
            ceLosses.Keep(l);
            tape.Backward(l);
            opt.Update(1e-4f, 1f);
        });
        long cePeak = MemoryMeter.Peak(backend);

        using var teach = LanguageModel.CreateRandom(teacher, backend, 3);
        CliCommon.SetPrecision(teach, teacherPrecision);
        // f32 masters (embeddings, norms and biases are read in f32 even in bf16 mode) plus the bf16 copy of the matrices.
        long teacherBytes = teach.Parameters.Count * 4 + (teach.Parameters.LowPrecision?.Count ?? 0) * 2;
        var loss = Whittle.Native.Distillation.DistillationLoss.Create(
            s, teach, new DistillSettings(DistillKind.ForwardKl, 1f, 0.5f, 0.5f), 0, _ => (0.5f, 0.5f));
        MemoryMeter.Reset(backend);
        using var kdLosses = new StepLosses(backend);
        var (kd, kdCpu, _) = Median(backend, n, w, () =>
        {
            s.Parameters.ZeroGrad();
            using var tape = new Tape(backend);
            var l = loss(tape, inputs, targets, 1);
            kdLosses.Keep(l.Loss);
            tape.Backward(l.Loss);
            opt.Update(1e-4f, 1f);
        });
        long kdPeak = MemoryMeter.Peak(backend);
        var r = Report(backend, "kd", student, b, t, kd, FlopsPerToken(student, t, true) + FlopsPerToken(teacher, t, false), kdPeak);
        r["loss_initial"] = ceLosses.First();
        r["loss"] = kdLosses.Last();
        r["step_cpu_seconds"] = Math.Round(kdCpu, 5);
        r["ce_step_seconds"] = Math.Round(ce, 5);
        r["ce_step_cpu_seconds"] = Math.Round(ceCpu, 5);
        r["ce_peak_bytes"] = cePeak;
        r["teacher_weight_bytes"] = teacherBytes;
        r["teacher_precision"] = teacherPrecision.Name();
        KdMemoryRule.Apply(r, kdPeak, cePeak, teacherBytes);
        return r;
    }

    static JsonObject Report(IBackend backend, string what, ModelConfig c, int b, int t, double seconds, long flopsPerToken, long peak)
    {
        var count = c.CountParameters();
        double tps = b * t / seconds;
        double peakFlops = DevicePeak.Flops(backend);
        var o = new JsonObject
        {
            ["mode"] = what,
            ["model_type"] = c.ModelType,
            ["parameters"] = count.Total,
            ["step_seconds"] = Math.Round(seconds, 5),
            ["tokens_per_second"] = Math.Round(tps, 1),
            ["flops_per_token"] = flopsPerToken,
            ["achieved_tflops"] = Math.Round(tps * flopsPerToken / 1e12, 4),
            ["peak_bytes"] = peak,
        };
        if (peakFlops > 0) o["mfu"] = Math.Round(tps * flopsPerToken / peakFlops, 4);
        return o;
    }
}

/// <summary>
/// The loss of the first step (warm-up included: the model as initialised) and of the last timed step, each copied on the
/// device inside the step (no host synchronisation in the timed loop) and read once after it.
/// </summary>
sealed class StepLosses(IBackend backend) : IDisposable
{
    Tensor? _first, _last;

    public void Keep(Var loss)
    {
        if (_first is null)
        {
            _first = backend.Empty(DType.F32, loss.Data.ShapeArray);
            backend.Copy(loss.Data, _first);
        }
        _last ??= backend.Empty(DType.F32, loss.Data.ShapeArray);
        backend.Copy(loss.Data, _last);
    }

    public double First() => Read(_first);
    public double Last() => Read(_last);

    double Read(Tensor? t)
    {
        backend.Synchronize();
        return t is null ? double.NaN : t.ToFloatArray()[0];
    }

    public void Dispose() { _first?.Dispose(); _last?.Dispose(); }
}

/// <summary>
/// What a bench step's loss must be. The models are freshly initialised (LanguageModel.CreateRandom; both families draw the
/// LM head, GPT-NeoX's embed_out or Llama's lm_head / tied embed_tokens, from N(0, 0.02²), and end in a norm of weight 1:
/// GPT-NeoX's layernorm, Llama's RMSNorm) on uniformly random targets, so each logit is a sum of d unit-variance normalised
/// activations times N(0, 0.02²) weights: Gaussian with σ² = 0.02²·d, whatever the layers did (the final norm undoes their
/// scale, so neither the residual scaling of an init nor its absence enters). For Gaussian logits, E[CE] = E[logsumexp] −
/// E[logit_target] ≈ ln V + σ²/2. The loss is a mean over N = B·T tokens, each of which spreads by about σ (the target's
/// logit), so it lies within 4σ/√N of that with overwhelming probability; <see cref="Slack"/> (0.5 nats) covers the
/// Gaussian approximation. (Measured: pythia-410m at B·T = 2 gave 11.58 against 11.03, 1.2σ/√2 off.) A wrong kernel
/// gives NaN, 0, or a loss off by whole nats.
/// That is the loss of the model as initialised: the first step's (loss_initial; in kd the student's first CE step).
/// The timed steps then train on one fixed batch, which the model partly memorises (at d 384, B·T 1024, 7 steps of lr
/// 1e-4 the loss fell by 2.2 nats, either family), so the last step's loss (loss) is only required to be finite and no
/// higher than the initial bound: a broken backward pass or optimizer makes it NaN or makes it climb.
/// A tied head (tie_word_embeddings) adds one logit that is not independent of the hidden state: the input token's own,
/// h·e_in, since e_in is in the residual stream. It only raises logsumexp, by at most ln(1 + e^(a − σ²/2)/V) with a the
/// largest it can be, |h|·|e_in| ≤ √d · 0.02·√(d + 4√(2d)) (Cauchy–Schwarz; |h| = √d after the norm, |e_in|² = 0.02²·χ²_d
/// at 4 standard deviations): a one-sided allowance above the expected loss (<see cref="TiedHeadAllowance"/>; 0.0013 nats
/// for a d = 64, V = 4096 model, 2.03 for SmolLM2-135M, whose layers in fact dilute e_in far below the bound).
/// kd's loss is 0.5·CE + 0.5·KL(teacher ‖ student), two random models: the same CE half, plus a KL of about
/// (σ_t² + σ_s²)/2 (loss_expected, the bound of its last step); a tied student's bump raises it as it raises CE, a tied
/// teacher's puts up to its probability mass (≤ its allowance) on a logit up to a above the student's.
/// </summary>
static class LossCheck
{
    public const double Slack = 0.5;

    /// <summary>How far a tied head may raise the loss above ln V + σ²/2 (0 when untied), and the bound a it uses.</summary>
    public static (double Allowance, double MaxInputLogit) TiedHeadAllowance(ModelConfig c)
    {
        bool tied = c is LlamaConfig { TieWordEmbeddings: true };
        if (!tied) return (0, 0);
        double d = c.HiddenSize, sigma2 = 0.02 * 0.02 * d;
        double a = Math.Sqrt(d) * 0.02 * Math.Sqrt(d + 4 * Math.Sqrt(2 * d));
        return (Math.Log(1 + Math.Exp(a - sigma2 / 2) / c.VocabSize), a);
    }

    /// <summary>Adds loss_expected (the last step's bound), loss_initial_expected, loss_tolerance, loss_tied_head_allowance
    /// (tied heads) and loss_check to the report; the problem, or null when both losses are as expected.</summary>
    public static string? Apply(JsonObject report, ModelConfig student, ModelConfig? teacher, long tokens)
    {
        double initial = report["loss_initial"]?.GetValue<double>() ?? double.NaN;
        double last = report["loss"]?.GetValue<double>() ?? double.NaN;
        double sigma2 = 0.02 * 0.02 * student.HiddenSize;
        double initialExpected = Math.Log(student.VocabSize) + sigma2 / 2, expected = initialExpected;
        double initialAbove = TiedHeadAllowance(student).Allowance, above = initialAbove;
        if (report["mode"]?.ToString() == "kd")
        {
            double teacherSigma2 = 0.02 * 0.02 * (teacher?.HiddenSize ?? student.HiddenSize);
            expected = 0.5 * initialExpected + 0.5 * (sigma2 + teacherSigma2) / 2;
            var (teacherAllowance, teacherLogit) = TiedHeadAllowance(teacher ?? student);
            above = 0.5 * initialAbove + 0.5 * (initialAbove + teacherAllowance * (1 + teacherLogit));
        }
        double tolerance = Slack + 4 * Math.Sqrt(sigma2 / tokens);
        report["loss_expected"] = Math.Round(expected, 4);
        report["loss_initial_expected"] = Math.Round(initialExpected, 4);
        report["loss_tolerance"] = Math.Round(tolerance, 4);
        if (above > 0) report["loss_tied_head_allowance"] = Math.Round(above, 4);
        string? problem = !double.IsFinite(initial) ? $"initial loss is {initial}, not finite"
            : initial < initialExpected - tolerance || initial > initialExpected + tolerance + initialAbove
                ? $"initial loss {initial:0.0000} is not within [{initialExpected - tolerance:0.00}, " +
                  $"{initialExpected + tolerance + initialAbove:0.00}] around {initialExpected:0.0000} (ln V + σ²/2 of a random model)"
            : !double.IsFinite(last) ? $"last step's loss is {last}, not finite"
            : last > expected + tolerance + above
                ? $"last step's loss {last:0.0000} is above {expected + tolerance + above:0.00}, the bound of the model as initialised"
            : null;
        report["loss_check"] = problem ?? "ok";
        return problem;
    }
}

/// <summary>
/// The memory goal of distillation: peak(KD) ≤ 1.15 × peak(CE) + the teacher's weights, the CE step being the same student's
/// plain training step (weights, gradients, AdamW moments and activations are in both peaks; the KD step adds the teacher's
/// weights, its no-grad activations, one layer at a time, and the KD loss's buffers, which must stay within 15% of CE's).
/// A measurement, reported beside the speed (kd_memory_rule: ok, or exceeded with the figures); not an exit status.
/// </summary>
static class KdMemoryRule
{
    public const double Factor = 1.15;

    public static void Apply(JsonObject report, long kdPeak, long cePeak, long teacherBytes)
    {
        double ratio = (double)(kdPeak - teacherBytes) / cePeak;
        report["kd_over_ce_peak_excluding_teacher_weights"] = Math.Round(ratio, 3);
        report["kd_memory_rule"] = ratio <= Factor ? $"ok (≤ {Factor})"
            : $"exceeded: peak {kdPeak:N0} B > {Factor} × CE peak {cePeak:N0} B + teacher weights {teacherBytes:N0} B";
    }
}

/// <summary>Peak tensor memory of a backend since the last reset: live CPU tensor bytes, or the CUDA allocator's reserved bytes.</summary>
static class MemoryMeter
{
    public static void Reset(IBackend backend)
    {
        if (backend is ProfilingBackend p) backend = p.Inner;
        if (backend is CudaBackend) return;   // the caching allocator only grows: its reserve is the peak
        CpuStorage.ResetPeak();
    }

    public static long Peak(IBackend backend) =>
        (backend is ProfilingBackend p ? p.Inner : backend) is CudaBackend cuda ? cuda.Allocator.BytesReserved : CpuStorage.PeakBytes;
}
