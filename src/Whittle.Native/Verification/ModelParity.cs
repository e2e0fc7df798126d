using Whittle.Native.Autograd;
using Whittle.Native.Model;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Verification;

/// <summary>One whole-model parity case: a small random model of any family (GPT-NeoX, optionally run as a sub-network of
/// itself; Llama family). <see cref="MatrixStd"/> is the weight matrices' standard deviation (0.2, the PyTorch fixtures').</summary>
public sealed record ModelParityCase(string Name, ModelConfig Config, ActiveArchitecture? Active, int Batch, int SeqLen,
    Precision Precision = Precision.F32, double MatrixStd = 0.2)
{
    /// <summary>f32 GEMMs and norms, bf16 tensor-core attention only (<see cref="LanguageModel.Attention"/>).</summary>
    public bool AttentionOnly { get; init; }
}

/// <summary>
/// Whole-model parity of two backends (the CPU reference and a candidate): the same random model weights and tokens
/// on both, then logits, loss, every parameter's gradient and one AdamW step compared — what <see cref="ParityHarness"/>
/// does per op, for the composition of the ops through the autograd tape. It is the device check that needs no test
/// runner: <c>whittle doctor --model</c> runs it on a GPU machine without .NET, and the CUDA tests call it too.
/// Policy:
///  - errors are max-norm relative (<see cref="ParityHarness.RelativeError"/>) per tensor: the logits, each parameter's
///    gradient (whole, so a sub-network's inactive rows must stay exactly 0 on both sides), each parameter after the
///    AdamW step; the loss as |candidate / reference − 1|;
///  - tolerances are those the CPU-vs-PyTorch fixture tests hold the CUDA backend to (CudaFixtureTests): logits and
///    loss 1e-5, gradients 1e-4, AdamW 1e-6, ×10 for logits, loss and gradients when TF32 matmuls are on;
///  - weights are drawn as the PyTorch fixtures draw them (matrices 0.2·N(0,1), biases 0.1·N(0,1), norm weights
///    1 + 0.1·N(0,1)), so biases and norm weights matter; about one target in seven is the ignore index;
///  - the Llama family (RMSNorm, SwiGLU, grouped-query attention, full-head rotary with scaled frequencies, QK-norm) runs
///    with GQA (KV = H/2, a llama with tied embeddings, biases and llama3 rope scaling) and MQA (KV = 1, a qwen3 with
///    QK-norm and head_dim ≠ hidden/heads), in f32 at the f32 tolerances, and a qwen3 at head size 64 whose attention
///    (only) runs on the bf16 tensor cores (<see cref="ModelParityCase.AttentionOnly"/>), at the bf16 attention bounds:
///    its QK-norm makes q and k rows of RMS ≈ 1 whatever the weights, so scores q·k/√D have a spread of about 1, as the
///    bounds assume. Its GEMMs stay f32: with bf16 GEMMs too, each bf16 rounding of an activation that the attention's
///    error moves across a rounding boundary adds a whole bf16 ulp, and the gated MLP multiplies two such GEMM outputs,
///    so that difference is not the attention's alone (measured on the software GPU: logits 1.1–1.5e-2 whatever KV, with
///    or without QK-norm, against 5.5–7e-3 with f32 GEMMs) and no bound for it is derived here;
///  - the AdamW step starts from the reference's gradients on both sides (isolating the optimizer), with clipping at
///    global norm 1 so the clip scale is exercised too;
///  - a bf16 case at Pythia's head size (64) runs the mixed-precision model on both sides: the CPU emulates the bf16
///    GEMMs exactly (so they differ only in summation order) but runs attention in f32, while CUDA runs the tensor-core
///    attention (forward and backward). The difference is therefore the attention's, bounded per op by
///    <see cref="ParityHarness.Bf16AttentionTolerance"/> (forward) and <see cref="ParityHarness.Bf16AttentionBackwardTolerance"/>;
///    the model's layers are layernormed and residual, so they carry that relative error on rather than amplify it:
///    logits and loss are held to the forward bound, gradients to the backward one. Those bounds were derived for
///    attention inputs whose scores have a spread of about 1 (the op harness's), so this case draws its matrices with
///    std 0.1 = 1.15/√d (d = 128): layernormed activations give q and k entries of std ≈ 1.15 and scores of std ≈ 1.3,
///    as there. (With the f32 cases' 0.2 the scores' spread is 4× larger and so is the bf16 score rounding, |s|·2⁻⁸.)
/// </summary>
public sealed class ModelParity(IBackend reference, IBackend candidate, bool tf32 = false)
{
    public const double LogitsTolerance = 1e-5, LossTolerance = 1e-5, GradientTolerance = 1e-4, AdamWTolerance = 1e-6, Tf32Factor = 10;

    /// <summary>Both residual forms, both GELUs, partial rotary at 25% and 50%, sizes off the multiples of 32, and a sub-network that skips
    /// a layer.</summary>
    public static IReadOnlyList<ModelParityCase> Cases { get; } =
    [
        new("parallel residual, exact GELU, rotary 25%",
            new GptNeoXConfig { VocabSize = 131, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 72, RotaryPct = 0.25f,
                MaxPositionEmbeddings = 64 }, null, 2, 37),
        new("sequential residual, tanh GELU, rotary 50%",
            new GptNeoXConfig { VocabSize = 131, HiddenSize = 64, NumLayers = 2, NumHeads = 4, IntermediateSize = 72, RotaryPct = 0.5f,
                UseParallelResidual = false, HiddenAct = "gelu_new", MaxPositionEmbeddings = 64 }, null, 2, 37),
        new("sub-network d48 of 64, layers [2,0] of 3, heads [3,2], MLP [50,72]",
            new GptNeoXConfig { VocabSize = 131, HiddenSize = 64, NumLayers = 3, NumHeads = 4, IntermediateSize = 72, RotaryPct = 0.25f,
                MaxPositionEmbeddings = 64 },
            new ActiveArchitecture(48, [2, 0], [3, 2], [50, 72]), 3, 19),
        new("bf16 mixed precision, head size 64 (Pythia's), tensor-core attention, T=130",
            new GptNeoXConfig { VocabSize = 131, HiddenSize = 128, NumLayers = 2, NumHeads = 2, IntermediateSize = 200, RotaryPct = 0.25f,
                MaxPositionEmbeddings = 256 }, null, 1, 130, Precision.Bf16, MatrixStd: 0.1),
        new("llama GQA KV=2 of H=4, tied embeddings, biases, llama3 rope scaling",
            new LlamaConfig
            {
                Family = "llama", VocabSize = 131, HiddenSize = 64, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 2,
                IntermediateSize = 72, MaxPositionEmbeddings = 64, TieWordEmbeddings = true, AttentionBias = true, MlpBias = true,
                RmsNormEps = 1e-5f, RopeTheta = 500000, RopeScaling = new RopeScaling(RopeScalingKind.Llama3, 8, 1, 4, 16),
            }, null, 2, 37),
        new("qwen3 MQA KV=1 of H=4, QK-norm, head_dim 24 (not 64/4), linear rope scaling",
            new LlamaConfig
            {
                Family = "qwen3", VocabSize = 131, HiddenSize = 64, NumLayers = 2, NumHeads = 4, NumKeyValueHeads = 1,
                ExplicitHeadDim = 24,
                IntermediateSize = 72, MaxPositionEmbeddings = 64, RopeScaling = new RopeScaling(RopeScalingKind.Linear, 2),
            }, null, 2, 37),
        new("qwen3 bf16 tensor-core attention (f32 GEMMs), head_dim 64, GQA KV=1 of H=2, T=130",
            new LlamaConfig
            {
                Family = "qwen3", VocabSize = 131, HiddenSize = 128, NumLayers = 2, NumHeads = 2, NumKeyValueHeads = 1,
                ExplicitHeadDim = 64,
                IntermediateSize = 200, MaxPositionEmbeddings = 256,
            }, null, 1, 130, MatrixStd: 0.1) { AttentionOnly = true },
    ];

    /// <summary>Called with each result as soon as it exists.</summary>
    public Action<ParityResult>? Progress { get; init; }

    double Tol(double t) => tf32 ? t * Tf32Factor : t;

    /// <summary>The bound for one check of a case: f32 (×10 with TF32), or the attention's bf16 bounds (see the policy).</summary>
    double Tol(ModelParityCase pc, string check) => pc.Precision == Precision.Bf16 || pc.AttentionOnly
        ? check is "logits" or "loss" ? ParityHarness.Bf16AttentionTolerance : ParityHarness.Bf16AttentionBackwardTolerance
        : Tol(check switch { "logits" => LogitsTolerance, "loss" => LossTolerance, _ => GradientTolerance });

    public IReadOnlyList<ParityResult> Run(IEnumerable<ModelParityCase>? cases = null)
    {
        var results = new List<ParityResult>();
        int seed = 11;
        foreach (var c in cases ?? Cases)
            foreach (var r in RunCase(c, seed++)) { results.Add(r); Progress?.Invoke(r); }
        return results;
    }

    IEnumerable<ParityResult> RunCase(ModelParityCase pc, int seed)
    {
        var rng = new Rng((ulong)seed);
        using var r = Create(pc.Config, reference);
        using var c = Create(pc.Config, candidate);
        r.Precision = pc.Precision; c.Precision = pc.Precision;
        if (pc.AttentionOnly) { r.Attention = AttentionPrecision.Bf16; c.Attention = AttentionPrecision.Bf16; }
        using (var weights = RandomWeights(r.Parameters, rng, pc.MatrixStd)) { r.LoadFlat(weights); c.LoadFlat(weights); }
        r.Parameters.EnsureGrad(); c.Parameters.EnsureGrad();
        r.Parameters.ZeroGrad(); c.Parameters.ZeroGrad();

        int n = pc.Batch * pc.SeqLen;
        var ids = new int[n]; var targets = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = rng.NextInt(pc.Config.VocabSize);
            targets[i] = i % 7 == 3 ? -100 : rng.NextInt(pc.Config.VocabSize);
        }
        using var hIds = Tensor.FromArray(ids, pc.Batch, pc.SeqLen); using var hTargets = Tensor.FromArray(targets, n);

        var (rLogits, rLoss) = ForwardBackward(r, hIds, hTargets, pc.Active);
        var (cLogits, cLoss) = ForwardBackward(c, hIds, hTargets, pc.Active);
        yield return new ParityResult(pc.Name, "logits", ParityHarness.RelativeError(rLogits, cLogits), Tol(pc, "logits"));
        yield return new ParityResult(pc.Name, "loss", LossError(rLoss, cLoss), Tol(pc, "loss"));

        var rGrad = r.Parameters.FlatGrad!.ToFloatArray();
        var cGrad = c.Parameters.FlatGrad!.ToFloatArray();
        foreach (var p in r.Parameters.Entries)
            yield return new ParityResult(
                pc.Name, "grad." + p.Name, ParityHarness.RelativeError(Slice(rGrad, p), Slice(cGrad, p)), Tol(pc, "grad"));

        using (var g = Tensor.FromArray(rGrad, rGrad.Length)) using (var dg = candidate.FromHost(g))
            candidate.Copy(dg, c.Parameters.FlatGrad!);
        var settings = new AdamWSettings(1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f);
        using var rOpt = new AdamWOptimizer(r.Parameters, settings);
        using var cOpt = new AdamWOptimizer(c.Parameters, settings);
        rOpt.Update(settings.LearningRate, 1f);
        cOpt.Update(settings.LearningRate, 1f);
        var rAfter = r.Parameters.Flat.ToFloatArray();
        var cAfter = c.Parameters.Flat.ToFloatArray();
        foreach (var p in r.Parameters.Entries)
            yield return new ParityResult(
                pc.Name, "adamw." + p.Name, ParityHarness.RelativeError(Slice(rAfter, p), Slice(cAfter, p)), AdamWTolerance);
    }

    static double LossError(double r, double c) => double.IsFinite(r) && double.IsFinite(c) ? Math.Abs(c / r - 1) : double.PositiveInfinity;

    static float[] Slice(float[] flat, ParameterInfo p) => flat.AsSpan((int)p.Offset, (int)p.Count).ToArray();

    static LanguageModel Create(ModelConfig config, IBackend backend) => config switch
    {
        GptNeoXConfig g => new GptNeoX(g, backend),
        LlamaConfig l => new Llama(l, backend),
        _ => throw new ArgumentException($"no model for {config.GetType().Name}"),
    };

    static (float[] Logits, double Loss) ForwardBackward(LanguageModel model, Tensor hostIds, Tensor hostTargets,
        ActiveArchitecture? active)
    {
        var be = model.Backend;
        using var ids = be.FromHost(hostIds); using var targets = be.FromHost(hostTargets);
        using var tape = new Tape(be);
        var logits = model.Forward(tape, ids, active);
        var logitsHost = logits.Data.ToFloatArray();
        var loss = tape.CrossEntropy(logits, targets);
        double value = loss.Data.ToFloatArray()[0];
        tape.Backward(loss);
        be.Synchronize();
        return (logitsHost, value);
    }

    /// <summary>A host (P) vector: matrices matrixStd·N(0,1), biases 0.1·N(0,1), norm weights 1 + 0.1·N(0,1).</summary>
    static Tensor RandomWeights(ParameterSet parameters, Rng rng, double matrixStd)
    {
        var host = Tensor.Zeros(DType.F32, checked((int)parameters.Count));
        var all = host.AsSpan<float>();
        foreach (var p in parameters.Entries)
        {
            var span = all.Slice((int)p.Offset, (int)p.Count);
            if (p.Shape.Length >= 2) rng.FillNormal(span, 0, matrixStd);
            else if (p.Name.EndsWith("norm.weight")) rng.FillNormal(span, 1, 0.1);
            else rng.FillNormal(span, 0, 0.1);
        }
        return host;
    }

    /// <summary>
    /// Driver allocations (cuMemAlloc calls) made by <paramref name="steps"/> training steps (forward, backward, AdamW) of
    /// the first case's model after <paramref name="warmup"/> steps: the caching allocator's promise is 0.
    /// </summary>
    public static ParityResult SteadyStateAllocations(CudaBackend gpu, int warmup = 2, int steps = 3)
    {
        var pc = Cases[0];
        using var model = LanguageModel.CreateRandom(pc.Config, gpu, 5);
        model.Parameters.EnsureGrad();
        using var opt = new AdamWOptimizer(model.Parameters, new AdamWSettings(1e-3f));
        var rng = new Rng(6);
        int n = pc.Batch * pc.SeqLen;
        var ids = Enumerable.Range(0, n).Select(_ => rng.NextInt(pc.Config.VocabSize)).ToArray();
        using var hIds = Tensor.FromArray(ids, pc.Batch, pc.SeqLen);
        using var hTargets = Tensor.FromArray(Enumerable.Reverse(ids).ToArray(), n);
        using var dIds = gpu.FromHost(hIds); using var dTargets = gpu.FromHost(hTargets);
        void Step()
        {
            model.Parameters.ZeroGrad();
            using var tape = new Tape(gpu);
            tape.Backward(model.Loss(tape, dIds, dTargets));
            opt.Update(1e-3f, 1f);
        }
        for (int i = 0; i < warmup; i++) Step();
        gpu.Synchronize();
        long before = gpu.Allocator.DriverAllocations;
        for (int i = 0; i < steps; i++) Step();
        gpu.Synchronize();
        return new ParityResult("allocator", $"driver allocations in {steps} training steps after {warmup} warm-up steps",
            gpu.Allocator.DriverAllocations - before, 0);
    }
}
