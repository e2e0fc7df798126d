using System.Diagnostics;
using Whittle.Native.Verification;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Cuda;

namespace Whittle.Cli;

/// <summary>
/// `whittle bench train|eval|kd`: steps of a randomly initialised model of a named shape (Pythia-70M/160M/410M, or the
/// small CPU config) on random tokens, timed after warm-up, with tokens/s, MFU on a known GPU and peak tensor memory.
/// `whittle bench kernels`: every backend op at that shape's training-step sizes against the device's measured ceilings
/// (<see cref="KernelBench"/>).
/// FLOPs per token (for MFU): training 6N + 6·L·T·d, evaluation 2N + 2·L·T·d, N = non-embedding + output-projection parameters.
/// The kd mode times a distillation step (teacher forward in no-grad + student forward/backward + fused KD loss + AdamW)
/// next to a plain cross-entropy step of the same student, and compares their peak memory.
/// Every timed mode also reports the loss of its last step and checks it (<see cref="LossCheck"/>): a speed measured on
/// a step that computes garbage is no measurement, so a non-finite loss, or one far from a random model's, prints the
/// JSON with the verdict and exits 2 (a bug in the engine or the device, not the user's).
/// </summary>
static class BenchCommand
{
    /// <summary>--loss-chunk-rows of the running command (one bench per process).</summary>
    static int ChunkRows;

    static GptNeoXConfig Shape(string name) => name switch
    {
        "pythia-70m" => new() { VocabSize = 50304, HiddenSize = 512, NumLayers = 6, NumHeads = 8, IntermediateSize = 2048 },
        "pythia-160m" => new() { VocabSize = 50304, HiddenSize = 768, NumLayers = 12, NumHeads = 12, IntermediateSize = 3072 },
        "pythia-410m" => new() { VocabSize = 50304, HiddenSize = 1024, NumLayers = 24, NumHeads = 16, IntermediateSize = 4096 },
        "small" => new() { VocabSize = 4096, HiddenSize = 256, NumLayers = 4, NumHeads = 8, IntermediateSize = 1024 },
        "tiny" => new() { VocabSize = 4096, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 256 },
        _ when File.Exists(name) => GptNeoXConfig.Load(name),
        _ => throw new WhittleException($"unknown --config '{name}' (pythia-70m, pythia-160m, pythia-410m, small, tiny, or a config.json)"),
    };

    public static Command Create()
    {
        var mode = new Argument<string>("mode") { Description = "train | eval | kd | kernels (every backend op at the shape's " +
            "training-step sizes, against the device's measured copy bandwidth and GEMM rates)." };
        var config = new Option<string>("--config") { Description = "Model shape: pythia-70m | pythia-160m | pythia-410m | small (V " +
            "4096, d 256, 4 layers) | tiny | a config.json.", DefaultValueFactory = _ => "small" };
        var teacher = new Option<string>("--teacher-config") { Description = "kd: the teacher's shape.",
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
            Description = $"cpu: the GEMM MatMul runs: ours | openblas | auto (OpenBLAS when installed) | ours-scalar | ours-avx2 | " +
                $"ours-avx512 (our GEMM on one micro-kernel). Default: ${CpuGemmChoice.Variable}, else auto. " +
                          "Threads: the .NET processor count (set DOTNET_PROCESSOR_COUNT=N to change it); OpenBLAS is given the same.",
        };
        var profile = new Option<bool>("--profile") { Description = "Also report each backend op's time per timed step (ops synchronised " +
            "one by one, so the step itself is slightly slower)." };
        var tf32 = new Option<bool>("--tf32") { Description = "CUDA: let f32 matmuls use TF32 tensor cores (about 1e-3 relative error)." };
        var cmd = new Command("bench",
            "Time training, evaluation or distillation steps of a model shape on random tokens (tokens/s, MFU on a known GPU, peak " +
            "memory), or every backend op at that shape (kernels).")
            { mode, config, teacher, batch, seqLen, steps, warmup, device, precision, teacherPrecision, lossChunkRows, gemm, profile, tf32,
                CliCommon.Json };
        cmd.SetAction(p =>
        {
            string m = p.GetValue(mode)!;
            if (m is not ("train" or "eval" or "kd" or "kernels"))
                throw new WhittleException($"mode must be train, eval, kd or kernels, got '{m}'");
            int B = p.GetValue(batch), T = p.GetValue(seqLen), n = p.GetValue(steps), w = p.GetValue(warmup);
            if (B < 1 || T < 2 || n < 1 || w < 0)
                throw new WhittleException("--batch-size, --steps must be ≥ 1, --seq-len ≥ 2, --warmup ≥ 0");
            var shape = Shape(p.GetValue(config)!) with { MaxPositionEmbeddings = Math.Max(2048, T) };
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
            var teacherShape = m == "kd" ? Shape(p.GetValue(teacher)!) with { MaxPositionEmbeddings = Math.Max(2048, T) } : null;
            var result = m switch
            {
                "kernels" => KernelsReport.Run(backend, shape, B, T, n, w),
                "kd" => BenchKd(backend, shape, teacherShape!, B, T, n, w, pr, teacherPr),
                _ => BenchOne(backend, shape, m == "train", B, T, n, w, pr),
            };
            result["precision"] = pr.Name();
            result["loss_chunk_rows"] = ChunkRows;
            result["device"] = backend.Name;
            result["threads"] = Environment.ProcessorCount;
            if (created is CpuBackend cpu) result["gemm"] = CpuGemmChoice.Name(cpu.GemmChoice);
            if (created is CpuBackend { GemmChoice: CpuGemm.OpenBlas })
                result["openblas"] = $"{OpenBlas.LoadedPath}: {OpenBlas.Config}, {OpenBlas.Threads} threads";
            if (backend is ProfilingBackend prof && result["step_seconds"] is { } stepSeconds)
                result["profile"] = prof.Report(n, stepSeconds.GetValue<double>());
            result["config"] = p.GetValue(config);
            result["batch"] = B; result["seq_len"] = T; result["steps"] = n;
            string? lossProblem = m == "kernels" ? null : LossCheck.Apply(result, shape, teacherShape, (long)B * T);
            if (p.GetValue(CliCommon.Json)) Console.WriteLine(result.ToJsonString(CliCommon.JsonOptions));
            else if (m == "kernels") KernelsReport.Print(result);
            else foreach (var (k, v) in result) Console.WriteLine($"{k,-26} {v}");
            if (lossProblem is null) return 0;
            Console.Error.WriteLine($"error: bench {m}: {lossProblem}");
            return 2;
        });
        return cmd;
    }

    static long FlopsPerToken(GptNeoXConfig c, int t, bool train)
    {
        long n = ParameterCount.Of(c).NonEmbedding + (long)c.VocabSize * c.HiddenSize;
        long attention = (long)c.NumLayers * t * c.HiddenSize;
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

    /// <summary>Median seconds of <paramref name="n"/> timed calls after <paramref name="warmup"/> untimed ones.</summary>
    static double Median(IBackend backend, int n, int warmup, Action step)
    {
        for (int i = 0; i < warmup; i++) step();
        backend.Synchronize();
        (backend as ProfilingBackend)?.Reset();   // count the timed steps only
        var times = new double[n];
        for (int i = 0; i < n; i++)
        {
            var sw = Stopwatch.StartNew();
            step();
            backend.Synchronize();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[n / 2];
    }

    static JsonObject BenchOne(IBackend backend, GptNeoXConfig c, bool train, int b, int t, int n, int w, Precision precision)
    {
        using var model = GptNeoX.CreateRandom(c, backend, 1);
        CliCommon.SetPrecision(model, precision);
        model.LossChunkRows = ChunkRows;
        var (inputs, targets) = RandomBatch(backend, c.VocabSize, b, t, 2);
        using var _i = inputs; using var _t = targets;
        AdamWOptimizer? opt = null;
        if (train) { model.Parameters.EnsureGrad(); opt = new AdamWOptimizer(model.Parameters, new AdamWSettings(1e-4f)); }
        using var __ = opt;
        MemoryMeter.Reset(backend);
        using var last = new LastLoss(backend);
        double s = Median(backend, n, w, () =>
        {
            if (train)
            {
                model.Parameters.ZeroGrad();
                using var tape = new Tape(backend);
                var loss = model.Loss(tape, inputs, targets);
                last.Keep(loss);
                tape.Backward(loss);
                opt!.Update(1e-4f, 1f);
            }
            else
            {
                using var tape = new Tape(backend, recording: false);
                last.Keep(model.Loss(tape, inputs, targets));
            }
        });
        var r = Report(backend, train ? "train" : "eval", c, b, t, s, FlopsPerToken(c, t, train), MemoryMeter.Peak(backend));
        r["loss"] = last.Value();
        return r;
    }

    static JsonObject BenchKd(
        IBackend backend, GptNeoXConfig student, GptNeoXConfig teacher, int b, int t, int n, int w, Precision precision,
        Precision teacherPrecision)
    {
        if (teacher.VocabSize != student.VocabSize) throw new WhittleException("the teacher's and student's vocabularies differ");
        var (inputs, targets) = RandomBatch(backend, student.VocabSize, b, t, 2);
        using var _i = inputs; using var _t = targets;
        using var s = GptNeoX.CreateRandom(student, backend, 1);
        CliCommon.SetPrecision(s, precision);
        s.LossChunkRows = ChunkRows;
        s.Parameters.EnsureGrad();
        using var opt = new AdamWOptimizer(s.Parameters, new AdamWSettings(1e-4f));
        MemoryMeter.Reset(backend);
        double ce = Median(backend, n, w, () =>
        {
            s.Parameters.ZeroGrad();
            using var tape = new Tape(backend);
            tape.Backward(s.Loss(tape, inputs, targets));
            opt.Update(1e-4f, 1f);
        });
        long cePeak = MemoryMeter.Peak(backend);

        using var teach = GptNeoX.CreateRandom(teacher, backend, 3);
        CliCommon.SetPrecision(teach, teacherPrecision);
        // f32 masters (embeddings, norms and biases are read in f32 even in bf16 mode) plus the bf16 copy of the matrices.
        long teacherBytes = teach.Parameters.Count * 4 + (teach.Parameters.LowPrecision?.Count ?? 0) * 2;
        var loss = Whittle.Native.Distillation.DistillationLoss.Create(
            s, teach, new DistillSettings(DistillKind.ForwardKl, 1f, 0.5f, 0.5f), 0, _ => (0.5f, 0.5f));
        MemoryMeter.Reset(backend);
        using var last = new LastLoss(backend);
        double kd = Median(backend, n, w, () =>
        {
            s.Parameters.ZeroGrad();
            using var tape = new Tape(backend);
            var l = loss(tape, inputs, targets, 1);
            last.Keep(l.Loss);
            tape.Backward(l.Loss);
            opt.Update(1e-4f, 1f);
        });
        long kdPeak = MemoryMeter.Peak(backend);
        var r = Report(backend, "kd", student, b, t, kd, FlopsPerToken(student, t, true) + FlopsPerToken(teacher, t, false), kdPeak);
        r["loss"] = last.Value();
        r["ce_step_seconds"] = Math.Round(ce, 5);
        r["ce_peak_bytes"] = cePeak;
        r["teacher_weight_bytes"] = teacherBytes;
        r["teacher_precision"] = teacherPrecision.Name();
        // The goal: peak(KD) ≤ 1.15 × peak(CE) + the teacher's weights.
        r["kd_over_ce_peak_excluding_teacher_weights"] = Math.Round((double)(kdPeak - teacherBytes) / cePeak, 3);
        return r;
    }

    static JsonObject Report(IBackend backend, string what, GptNeoXConfig c, int b, int t, double seconds, long flopsPerToken, long peak)
    {
        var count = ParameterCount.Of(c);
        double tps = b * t / seconds;
        double peakFlops = DevicePeak.Flops(backend);
        var o = new JsonObject
        {
            ["mode"] = what,
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
/// The loss of the last timed step, copied on the device inside the step (no host synchronisation in the timed loop)
/// and read once after it.
/// </summary>
sealed class LastLoss(IBackend backend) : IDisposable
{
    Tensor? _buffer;

    public void Keep(Var loss)
    {
        _buffer ??= backend.Empty(DType.F32, loss.Data.ShapeArray);
        backend.Copy(loss.Data, _buffer);
    }

    public double Value()
    {
        backend.Synchronize();
        return _buffer is null ? double.NaN : _buffer.ToFloatArray()[0];
    }

    public void Dispose() => _buffer?.Dispose();
}

/// <summary>
/// What a bench step's loss must be. The models are freshly initialised (GptNeoX.CreateRandom: output projection
/// N(0, 0.02²), final layernorm weight 1 and bias 0) on uniformly random targets, so each logit is a sum of d unit-variance
/// normalised activations times N(0, 0.02²) weights: Gaussian with σ² = 0.02²·d. For Gaussian logits, E[CE] = E[logsumexp]
/// − E[logit_target] ≈ ln V + σ²/2. The loss is a mean over N = B·T tokens, each of which spreads by about σ (the target's
/// logit), so it lies within 4σ/√N of that with overwhelming probability; the timed steps (lr 1e-4, a few dozen at most)
/// move each weight by ≤ 1e-4 per step against 0.02, for which <see cref="DriftAllowance"/> (0.5 nats) leaves room. At
/// the GPU kit's 8 × 2048 tokens the bound is 0.52 nats; a wrong kernel gives NaN, 0, or a loss off by whole nats.
/// (Measured: pythia-410m at B·T = 2 gave 11.58 against 11.03, 1.2σ/√2 off, inside the 2.3-nat bound there.) kd's loss
/// is 0.5·CE + 0.5·KL(teacher ‖ student), two random models: the same CE half, plus a KL of about (σ_t² + σ_s²)/2.
/// </summary>
static class LossCheck
{
    public const double DriftAllowance = 0.5;

    /// <summary>Adds loss_expected, loss_tolerance and loss_check to the report; the problem, or null when the loss is as
    /// expected.</summary>
    public static string? Apply(JsonObject report, GptNeoXConfig student, GptNeoXConfig? teacher, long tokens)
    {
        double loss = report["loss"]?.GetValue<double>() ?? double.NaN;
        double sigma2 = 0.02 * 0.02 * student.HiddenSize;
        double expected = Math.Log(student.VocabSize) + sigma2 / 2;
        if (report["mode"]?.ToString() == "kd")
        {
            double teacherSigma2 = 0.02 * 0.02 * (teacher?.HiddenSize ?? student.HiddenSize);
            expected = 0.5 * expected + 0.5 * (sigma2 + teacherSigma2) / 2;
        }
        double tolerance = DriftAllowance + 4 * Math.Sqrt(sigma2 / tokens);
        report["loss_expected"] = Math.Round(expected, 4);
        report["loss_tolerance"] = Math.Round(tolerance, 4);
        string? problem = !double.IsFinite(loss) ? $"loss is {loss}, not finite"
            : Math.Abs(loss - expected) > tolerance ? $"loss {loss:0.0000} is not within {tolerance:0.00} of {expected:0.0000} (ln V + " +
                $"σ²/2 of a random model)"
            : null;
        report["loss_check"] = problem ?? "ok";
        return problem;
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
