using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Whittle.Native.Autograd;
using Whittle.Native.Cpu;
using Whittle.Native.Distillation;
using Whittle.Native.Model;
using Whittle.Native.Tensors;
using Whittle.Native.Training;

namespace Whittle.Native.Bench;

// Policy: times whole CPU training steps on demo-sized models, the unit the demo's wall-clock budget is spent in:
//  - TrainStep: zero grads, GptNeoX.Loss on a recording tape, Backward, grad norm and AdamW (what Trainer.Run does per micro-batch);
//  - EvalForward: the same loss on a no-grad tape (Perplexity.Evaluate's inner loop);
//  - DistillFull / DistillTopK: a student step through DistillationLoss (teacher of the same shape, no-grad forward,
//    fused forward-KL loss against full teacher logits or its top-64 summary).
// Random weights and tokens (fixed seeds): the time of a step does not depend on the values. A tokens/s column
// (B·T / mean time) is added. Short job (one launch, 2 warm-up and 6 measured iterations of one step each) so that
// a full run takes about two minutes on two cores.
//   dotnet run -c Release --project bench/Whittle.Native.Bench -- --filter '*TrainStepBench*'
[Config(typeof(TrainStepBenchConfig))]
public class TrainStepBench
{
    /// <summary>A model shape and batch: V vocab, d width, L layers, H heads, m MLP width, T sequence length, B batch.</summary>
    public sealed record Shape(int V, int D, int L, int H, int M, int T, int B)
    {
        public int Tokens => B * T;
        public GptNeoXConfig Config =>
            new() { VocabSize = V, HiddenSize = D, NumLayers = L, NumHeads = H, IntermediateSize = M, MaxPositionEmbeddings = T };
        public override string ToString() => $"d{D} L{L} H{H} T{T} B{B}";   // V is always 4096 here; BDN cuts longer names
    }

    public static IEnumerable<Shape> Shapes =>
    [
        new(4096, 64, 2, 4, 256, 64, 8),      // the quick preset's size (0.6M parameters)
        new(4096, 128, 4, 8, 512, 128, 8),    // the default preset's upper end
    ];

    [ParamsSource(nameof(Shapes))]
    public Shape S { get; set; } = Shapes.First();

    GptNeoX _model = null!, _teacher = null!;
    AdamWOptimizer _opt = null!;
    Tensor _inputs = null!, _targets = null!;
    LossFunction _distillFull = null!, _distillTopK = null!;
    int _step;

    [GlobalSetup]
    public void Setup()
    {
        var backend = CpuBackend.Instance;
        _model = GptNeoX.CreateRandom(S.Config, backend, 1);
        _model.Parameters.EnsureGrad();
        _teacher = GptNeoX.CreateRandom(S.Config, backend, 2);
        _opt = new AdamWOptimizer(_model.Parameters, new AdamWSettings(1e-3f));
        var rng = new Random(3);
        var ids = new int[S.Tokens]; var next = new int[S.Tokens];
        for (int i = 0; i < ids.Length; i++) { ids[i] = rng.Next(S.V); next[i] = rng.Next(S.V); }
        _inputs = Tensor.FromArray(ids, S.B, S.T);
        _targets = Tensor.FromArray(next, S.Tokens);
        var kd = new DistillSettings(DistillKind.ForwardKl, 2f, 0.5f, 0.5f);
        _distillFull = DistillationLoss.Create(_model, _teacher, kd, 0, _ => (0.5f, 0.5f));
        _distillTopK = DistillationLoss.Create(_model, _teacher, kd, 64, _ => (0.5f, 0.5f));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _opt.Dispose(); _model.Dispose(); _teacher.Dispose(); _inputs.Dispose(); _targets.Dispose();
    }

    double Step(LossFunction? loss)
    {
        _model.Parameters.ZeroGrad();
        double value;
        using (var tape = new Tape(CpuBackend.Instance))
        {
            var l = loss is null ? _model.Loss(tape, _inputs, _targets) : loss(tape, _inputs, _targets, ++_step).Loss;
            value = l.Data.ToFloatArray()[0];
            tape.Backward(l);
        }
        _opt.Update(1e-4f, 1f);
        return value;
    }

    [Benchmark(Baseline = true)]
    public double TrainStep() => Step(null);

    [Benchmark]
    public double EvalForward()
    {
        using var tape = new Tape(CpuBackend.Instance, recording: false);
        return _model.Loss(tape, _inputs, _targets).Data.ToFloatArray()[0];
    }

    [Benchmark]
    public double DistillFull() => Step(_distillFull);

    [Benchmark]
    public double DistillTopK() => Step(_distillTopK);
}

/// <summary>One launch, 2 warm-up and 6 measured iterations of one step each (a step is 10 ms to seconds), plus tokens/s.</summary>
public sealed class TrainStepBenchConfig : ManualConfig
{
    public TrainStepBenchConfig()
    {
        AddJob(Job.Default.WithStrategy(RunStrategy.Monitoring)
            .WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(6).WithInvocationCount(1).WithUnrollFactor(1).WithId("short"));
        AddColumn(new TokensPerSecondColumn());
        AddColumn(StatisticColumn.Median);
    }
}

/// <summary>B·T / mean time, from the Shape parameter of each case.</summary>
public sealed class TokensPerSecondColumn() : RateColumn("tok/s", "B*T tokens / mean time of one step")
{
    protected override string? Rate(BenchmarkCase c, double meanNs) =>
        c.Parameters["S"] is TrainStepBench.Shape shape ? (shape.Tokens / (meanNs * 1e-9)).ToString("F0") : null;
}
